// Training worker: nnU-Net's training loop on WebGPU (tfjs) over a dataset in IndexedDB, its cases
// from the site pipeline (src/pipeline: what the Data tab stored is reused), a checkpoint after
// every epoch (a reloaded tab resumes from it), pause, resume and stop; federation sites; and the
// WebGPU-vs-CPU training-step check. Exposed with comlink.
import * as Comlink from 'comlink';
import { openStore, type StoreDB } from '../src/store/db.ts';
import { deleteCheckpoint, loadCheckpoint, saveCheckpoint } from '../src/store/checkpoints.ts';
import { useBackend, type BackendName } from '../src/model/tf-backend.ts';
import { Trainer, TrainingControl, type TrainerEvent } from '../src/train/trainer.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../src/train/train-checkpoint.ts';
import { compareSteps, trainingStep, type StepComparison } from '../src/train/gradient-check.ts';
import { SiteClient } from '../src/fed/client.ts';
import { wsConnect } from '../src/fed/ws-transport.ts';
import type { Connect } from '../src/fed/client.ts';
import type { LinkBridge } from '../src/fed/peer-transport.ts';
import { TrainerSite } from '../src/pipeline/trainer-site.ts';
import { IdbSiteStore } from '../src/pipeline/idb-site-store.ts';
import { prepareTraining, SitePipeline } from '../src/pipeline/site-pipeline.ts';
import {
  encodeModelFolder,
  pseudoDiceProvenance,
  type ModelProvenance,
} from '../src/model/model-folder.ts';
import { checkModelFiles, loadModel, saveModel } from '../src/infer/stored-models.ts';
import { listModels } from '../src/store/models.ts';
import { createEngine } from '../src/infer/engine-choice.ts';
import { heldOutReport } from '../src/eval/held-out-report.ts';
import type { DecodedModelFolder } from '../src/model/model-folder.ts';
import { engineEnv } from './engine-env.ts';
import { pick } from '../src/fed/aggregate.ts';
import {
  federationIdOf,
  loadMembership,
  runningMemberships,
  saveMembership,
  type FedMembership,
} from '../src/store/fed-state.ts';
import { siteKeyStore } from '../src/store/site-key.ts';
import { siteIdentity } from '../src/fed/identity/kept-key.ts';
import { toBase64 } from '../src/fed/identity/site-key.ts';
import type { SitePhaseEvent } from '../src/fed/site-phase.ts';
import { appendEgress, listEgress, type EgressRecord } from '../src/store/egress-log.ts';
import { runFlowerSession, type FlowerMembership } from '../src/fed/flower/session.ts';
import type { FlowerSiteTrainer } from '../src/fed/flower/site.ts';

let dbPromise: Promise<StoreDB> | undefined;
const db = () => (dbPromise ??= openStore());
let control: TrainingControl | undefined;

export interface TrainRequest {
  datasetId: string;
  configuration: '3d_fullres' | '2d';
  epochs: number;
  itersPerEpoch: number;
  valIters: number;
  /** Replace the plan's network by the tiny preset (patch edge, default 24). */
  tiny?: { patch?: number; batchSize?: number } | false;
  seed?: number;
  backend?: BackendName;
  /** webgpu: tfjs' stock kernels instead of ours (slower; the fallback switch). */
  stockKernels?: boolean;
  /** Start over even if a checkpoint of this run exists. */
  restart?: boolean;
  /** Activation checkpointing in every stage (less GPU memory, more compute). */
  checkpointing?: boolean;
  /**
   * Train the plan for this memory budget (MB) instead of nnU-Net's full one: the Train tab's
   * reduced offer where the full plan does not fit the adapter (plan/train-fit.ts).
   */
  memoryBudgetMB?: number;
}

export type TrainEventOut =
  TrainerEvent | { type: 'status'; message: string; resumedFromEpoch?: number; backend?: string };

export const runIdOf = (r: Pick<TrainRequest, 'configuration' | 'tiny' | 'memoryBudgetMB'>) =>
  `local:${r.configuration}${r.tiny ? ':tiny' : r.memoryBudgetMB ? `:budget${r.memoryBudgetMB}` : ''}`;

async function sitePipeline(d: StoreDB, datasetId: string): Promise<SitePipeline> {
  const store = await IdbSiteStore.open(d, datasetId);
  if (!store.datasetJson)
    throw new Error(`${store.datasetName} has no dataset.json: loose scans cannot be trained on`);
  return new SitePipeline(store);
}

/** What any federation site in this tab trains on and with (relay, workshop or Flower). */
export interface FederationSiteRequest {
  datasetId: string;
  /** This browser's name for itself (the audit and the stored model). */
  siteName: string;
  tiny?: { patch?: number; batchSize?: number } | false;
  backend?: BackendName;
  /** webgpu: tfjs' stock kernels instead of ours (slower; the fallback switch). */
  stockKernels?: boolean;
  seed?: number;
}

export interface FederateRequest extends FederationSiteRequest {
  /** ws(s)://host/fed of the relay (the page derives it from its own origin). */
  relayUrl: string;
  token: string;
  /** The join link says the federation is secure (…&secure=1): hello carries no case count. */
  hideCaseCount?: boolean;
  /** Workshop mode: the host key fingerprint of the join link, which the host must prove (required). */
  hostKey?: string;
}

export type FederateEvent =
  | { type: 'log'; message: string }
  | { type: 'sent'; message: string; bytes: number; round?: number; tensors?: number }
  | {
      type: 'round';
      round: number;
      rounds: number;
      seconds: number;
      metrics: Record<string, number>;
    }
  | {
      type: 'done';
      rounds: number;
      shared: number;
      local: number;
      modelIds: string[];
      globalDigest: string;
    }
  | { type: 'privacy'; round: number; epsilon: number; delta: number }
  /** Where the site is (src/fed/site-phase.ts turns these into the phase line and progress). */
  | { type: 'phase'; event: SitePhaseEvent }
  /** One training iteration's loss (the live loss chart). */
  | { type: 'iteration'; round: number; iteration: number; loss: number };

/** A Flower federation: the SuperLink's REST Fleet API, reached through the relay's gateway. */
export interface FlowerFederateRequest extends FederationSiteRequest {
  /** The Fleet API's base URL (the page's own origin when the relay runs --flower-superlink). */
  fleetUrl: string;
}

/** The name a Flower reply has in the phase line and the audit (our relay's message names). */
const FLOWER_REPLY: Record<string, string> = {
  'query.fingerprint': 'fingerprint',
  'query.plan': 'spec',
  train: 'update',
  'query.final': 'final-metrics',
};

let fedClient: SiteClient | undefined;
let flowerStop: AbortController | undefined;

function bridgeConnect(link: Comlink.Remote<LinkBridge>): Connect {
  return async (h) => {
    await link.open(
      Comlink.proxy((b: Uint8Array) => h.onMessage(b)),
      Comlink.proxy(() => h.onClose()),
    );
    return {
      send: (b) => void link.send(b).catch(() => undefined),
      close: () => void link.close(),
    };
  };
}

async function digest(w: Map<string, { data: Float32Array }>): Promise<string> {
  const parts = [...w.keys()].sort().map((k) => w.get(k)!.data);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    all.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), o);
    o += p.byteLength;
  }
  const d = await crypto.subtle.digest('SHA-256', all);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The site a federation runs in this tab (relay, workshop host or Flower): progress and phases go
 * to the page, the trainer's state to IndexedDB under `runId` after every round, and it resumes
 * from there when `resumable()` says the federation still knows this site.
 */
function federationSite(
  d: StoreDB,
  req: FederationSiteRequest,
  pipeline: SitePipeline,
  runId: string,
  onEvent: (e: FederateEvent) => void,
  resumable: () => boolean,
): TrainerSite {
  const phase = (event: SitePhaseEvent) => onEvent({ type: 'phase', event });
  const site: TrainerSite = new TrainerSite({
    pipeline,
    tiny: req.tiny || undefined,
    seed: req.seed ?? 0,
    valIters: 2,
    evaluate: false,
    log: (message) => onEvent({ type: 'log', message }),
    onStage: (stage, done, total) =>
      phase(
        stage === 'fingerprint'
          ? { type: 'fingerprinting', done, total }
          : { type: 'preprocessing', done, total },
      ),
    onIteration: (round, e) => {
      const iterations = site.trainer?.options.itersPerEpoch ?? 0;
      phase({ type: 'iteration', round, iteration: e.iteration + 1, iterations });
      onEvent({ type: 'iteration', round, iteration: e.iteration + 1, loss: e.loss });
    },
    saveState: (bytes): Promise<void> =>
      saveCheckpoint(
        d,
        {
          datasetId: req.datasetId,
          runId,
          tag: 'latest',
          epoch: site.trainer?.epoch ?? 0,
          epochs: site.trainer?.options.epochs ?? 0,
          configuration: site.trainer?.configurationName ?? '',
        },
        bytes,
      ),
    loadState: async () =>
      resumable() ? (await loadCheckpoint(d, req.datasetId, runId))?.data : undefined,
  });
  return site;
}

/** GPU memory budget of the held-out evaluation's tile batches (tiny demo networks fit easily). */
const HELD_OUT_BUDGET_MB = 512;

/**
 * The newest model the Train tab trained on `datasetName` (its provenance names the dataset and
 * the cases it trained on): the "local" column of the host's held-out table.
 */
async function localModelOf(
  d: StoreDB,
  datasetName: string,
): Promise<DecodedModelFolder | undefined> {
  const rec = (await listModels(d))
    .filter(
      (m) =>
        m.source === 'local' &&
        (m.provenance?.training_cases as { dataset?: unknown } | undefined)?.dataset ===
          datasetName,
    )
    .sort((a, b) => b.createdAt - a.createdAt)[0];
  return rec && (await loadModel(d, rec.id));
}

const api = {
  /**
   * Takes part in a federation as one site: fingerprint (FFE) → plan → preprocess → one epoch per
   * round on this GPU, uploading weight deltas only. The final global model and (AsymFedAvg) the
   * personalised one are stored as models for the Predict tab.
   */
  async federate(
    req: FederateRequest,
    onEvent: (e: FederateEvent) => void,
    link?: LinkBridge,
  ): Promise<void> {
    if (fedClient || control) throw new Error('this tab is already training');
    // Never join a workshop host whose key nobody pinned: whoever holds its code could be it.
    if (link && !req.hostKey) throw new Error('a workshop join needs the host key of its link');
    const d = await db();
    const pipeline = await sitePipeline(d, req.datasetId);
    const ds = { name: pipeline.store.datasetName };
    const dj = pipeline.store.datasetJson!;
    await useBackend(req.backend ?? 'webgpu', { fastKernels: !req.stockKernels });
    // This profile's site key signs every frame; the relay knows the site by it.
    const { identity } = await siteIdentity(siteKeyStore(d));
    onEvent({ type: 'log', message: `this site's key: ${identity.fingerprint}` });
    // Membership and training state persist, so a reloaded tab rejoins as the same site.
    const federationId = federationIdOf(req.relayUrl, req.token);
    const previous = await loadMembership(d, req.datasetId, federationId);
    const membership: Omit<FedMembership, 'updatedAt'> = {
      datasetId: req.datasetId,
      federationId,
      relayUrl: req.relayUrl,
      token: req.token,
      siteName: req.siteName,
      ...(req.hostKey ? { hostKey: req.hostKey } : {}),
      siteId: previous?.status === 'running' ? previous.siteId : undefined,
      tiny: req.tiny ?? false,
      backend: req.backend ?? 'webgpu',
      status: 'running',
      round: previous?.round ?? 0,
    };
    await saveMembership(d, membership);
    const runId = `fed:${federationId}`;
    const phase = (event: SitePhaseEvent) => onEvent({ type: 'phase', event });
    phase({ type: 'connecting' });
    let method: string | undefined; // the federation's, once it is known (prepare or restore)
    const site = federationSite(d, req, pipeline, runId, onEvent, () => !!membership.siteId);
    const client = new SiteClient({
      // Workshop mode: the page holds the WebRTC connection (none exists in workers) and bridges it.
      connect: link
        ? bridgeConnect(link as unknown as Comlink.Remote<LinkBridge>)
        : wsConnect(req.relayUrl),
      token: req.token,
      siteName: req.siteName,
      siteId: membership.siteId,
      identity,
      hostKey: req.hostKey,
      // A workshop host tab that reloads is back only when its host clicks "Resume": keep trying
      // for half an hour (every 5 s), not the default ~5 minutes.
      ...(link ? { reconnect: { initialMs: 200, maxMs: 5000, maxTries: 360 } } : {}),
      onSiteId: (siteId) => {
        if (membership.siteId === siteId) return;
        membership.siteId = siteId;
        void saveMembership(d, membership);
      },
      trainer: {
        numCases: site.numCases,
        localFingerprint: async () => {
          phase({ type: 'fingerprinting' });
          onEvent({
            type: 'log',
            message: 'fingerprinting the local dataset (or reading the stored fingerprint)',
          });
          return site.localFingerprint();
        },
        prepare: async (agg, cfg) => {
          method = cfg.method;
          phase({ type: 'planning' });
          onEvent({
            type: 'log',
            message: agg
              ? 'planning on the pooled (FFE) fingerprint'
              : 'planning on the local fingerprint',
          });
          await site.prepare(agg, cfg);
        },
        weights: () => site.weights(),
        loadShared: (g) => site.loadShared(g),
        train: async (round, iters) => {
          onEvent({ type: 'log', message: `round ${round}: training ${iters} iteration(s)` });
          phase({ type: 'iteration', round, iteration: 0, iterations: iters });
          const t0 = performance.now();
          const m = await site.train(round);
          const seconds = (performance.now() - t0) / 1000;
          phase({ type: 'trained', round });
          membership.round = round;
          await saveMembership(d, membership);
          onEvent({
            type: 'round',
            round,
            rounds: site.trainer?.options.epochs ?? round,
            seconds,
            metrics: m,
          });
          return m;
        },
        finish: (g, sh) => site.finish(g, sh),
        // Only a workshop host shows the held-out table; a relay has no use for the numbers.
        ...(link && {
          heldOutReport: async () => {
            const t = site.trainer!;
            onEvent({
              type: 'log',
              message: `scoring the final model on ${t.valIds.length} held-out case(s) (and the Train tab's model of ${ds.name}, if any)`,
            });
            const t0 = performance.now();
            const report = await heldOutReport({
              datasetName: ds.name,
              heldOutIds: t.valIds,
              readCase: (id) => pipeline.store.readCase(id),
              federated: await checkModelFiles(
                encodeModelFolder({
                  plans: site.plans!,
                  datasetJson: dj as never,
                  configuration: t.configurationName,
                  weights: await site.weights(),
                }),
                'federation',
              ),
              local: await localModelOf(d, ds.name),
              open: (md) => createEngine(md, 'auto', HELD_OUT_BUDGET_MB, engineEnv),
              log: (message) => onEvent({ type: 'log', message }),
            });
            onEvent({
              type: 'log',
              message: report
                ? `held-out Dice on ${report.cases} case(s): federation ${report.federated.toFixed(4)}, local ${report.local?.toFixed(4) ?? '— (no local run)'} (${((performance.now() - t0) / 1000).toFixed(1)} s); sending these numbers to the host`
                : 'no held-out Dice to report',
            });
            return report;
          },
        }),
        restore: (cfg) => {
          method = cfg.method;
          return site.restore(cfg);
        },
      },
      log: (m) => onEvent({ type: 'log', message: m }),
      // Mirror every outgoing message to the page's "What leaves this browser" panel, and keep it
      // in IndexedDB so the audit survives a reload (store/egress-log.ts).
      onSent: (m) => {
        onEvent({
          type: 'sent',
          message: m.type,
          bytes: m.bytes,
          round: m.round,
          tensors: m.tensors?.length,
        });
        phase({ type: 'sent', message: m.type, round: m.round });
        void appendEgress(d, {
          federationId,
          siteName: req.siteName,
          message: m.type,
          ...(m.round === undefined ? {} : { round: m.round }),
          ...(m.tensors ? { tensors: m.tensors.length } : {}),
          bytes: m.bytes,
          at: Date.now(),
        }).catch((e) => onEvent({ type: 'log', message: `privacy audit not saved: ${String(e)}` }));
      },
      onReceived: (m) => {
        if (m.type === 'welcome')
          phase({
            type: 'welcome',
            phase: m.phase,
            round: m.round,
            rounds: m.config.rounds,
            iters: m.config.itersPerRound,
          });
        else if (m.type === 'final') phase({ type: 'final' });
      },
      hideCaseCount: req.hideCaseCount,
      onPrivacy: (p) =>
        onEvent({ type: 'privacy', round: p.round, epsilon: p.epsilon, delta: p.delta }),
    });
    fedClient = client;
    try {
      const r = await client.run();
      const t = site.trainer!;
      const all = await site.weights();
      const local = all.size - r.shared.length;
      const provenance: ModelProvenance = {
        trained_by: 'browser federation',
        method,
        rounds: r.rounds,
        iterations: r.rounds * t.options.itersPerEpoch,
        ...(local ? { site: membership.siteId } : {}),
        shared_tensors: r.shared.length,
        local_tensors: local,
        ...pseudoDiceProvenance(t.log),
        // Which stored cases this site trained on: the Predict tab marks them (issue 19).
        training_cases: { dataset: ds.name, train: t.trainIds, val: t.valIds },
      };
      const files = encodeModelFolder({
        plans: site.plans!,
        datasetJson: dj as never,
        configuration: t.configurationName,
        weights: all,
        provenance,
      });
      const ids: string[] = [];
      ids.push(
        (
          await saveModel(d, files, {
            name: `${ds.name} · federation (${r.rounds} rounds)`,
            source: local ? 'personalised' : 'federation-global',
            origin: req.relayUrl,
          })
        ).id,
      );
      await saveMembership(d, { ...membership, status: 'done' });
      phase({ type: 'done' });
      onEvent({
        type: 'done',
        rounds: r.rounds,
        shared: r.shared.length,
        local,
        modelIds: ids,
        globalDigest: await digest(pick(all, r.shared)),
      });
    } catch (e) {
      // A refusal or an error of the federation ends the membership; a closed tab does not get here.
      await saveMembership(d, { ...membership, status: 'failed' }).catch(() => undefined);
      phase({ type: 'failed', reason: e instanceof Error ? e.message : String(e) });
      throw e;
    } finally {
      fedClient = undefined;
      site.trainer?.dispose();
    }
  },

  /**
   * Takes part in a Flower federation (our ServerApp, flower/fednnunet_app) as one node, with the
   * same site pipeline and trainer as `federate`; the node's key, id and the rounds it answered are
   * kept in IndexedDB, so a reloaded tab comes back as the same node and continues.
   */
  async federateFlower(
    req: FlowerFederateRequest,
    onEvent: (e: FederateEvent) => void,
  ): Promise<void> {
    if (fedClient || flowerStop || control) throw new Error('this tab is already training');
    const d = await db();
    const pipeline = await sitePipeline(d, req.datasetId);
    const ds = { name: pipeline.store.datasetName };
    const dj = pipeline.store.datasetJson!;
    await useBackend(req.backend ?? 'webgpu', { fastKernels: !req.stockKernels });
    const log = (message: string) => onEvent({ type: 'log', message });
    const phase = (event: SitePhaseEvent) => onEvent({ type: 'phase', event });
    const relayUrl = `flower:${req.fleetUrl}`;
    const federationId = federationIdOf(relayUrl, '');
    const previous = await loadMembership(d, req.datasetId, federationId);
    const saved = previous?.status === 'running' ? previous.flower : undefined;
    const membership: Omit<FedMembership, 'updatedAt'> = {
      datasetId: req.datasetId,
      federationId,
      relayUrl,
      token: '',
      siteName: req.siteName,
      tiny: req.tiny ?? false,
      backend: req.backend ?? 'webgpu',
      status: 'running',
      round: saved?.rounds?.length ?? 0,
      ...(saved ? { flower: saved } : {}),
    };
    const savedSession = saved as FlowerMembership | undefined;
    const runId = `fed:${federationId}`;
    // The message this site was answering when the tab went away (one per federation, beside the
    // training checkpoint): a reload in the middle of a round answers it again (session.ts).
    const MESSAGE_TAG = 'flower-message';
    const savedMessage = saved
      ? (await loadCheckpoint(d, req.datasetId, runId, MESSAGE_TAG))?.data
      : undefined;
    const saveMessage = (bytes: Uint8Array | undefined) =>
      bytes
        ? saveCheckpoint(
            d,
            {
              datasetId: req.datasetId,
              runId,
              tag: MESSAGE_TAG,
              epoch: 0,
              epochs: 0,
              configuration: '',
            },
            bytes,
          )
        : deleteCheckpoint(d, req.datasetId, runId, MESSAGE_TAG);
    phase({ type: 'connecting' });
    const site = federationSite(d, req, pipeline, runId, onEvent, () => true);
    // The FlowerSite drives this; the wrapper only tells the page where the site is.
    const trainer: FlowerSiteTrainer = {
      numCases: site.numCases,
      get plans() {
        return site.plans;
      },
      datasetJson: () => site.datasetJson(),
      useTiny: (on) => site.useTiny(on),
      localFingerprint: () => {
        phase({ type: 'fingerprinting' });
        return site.localFingerprint();
      },
      prepare: async (agg, cfg) => {
        phase({
          type: 'welcome',
          phase: 'plan',
          round: 0,
          rounds: cfg.rounds,
          iters: cfg.itersPerRound,
        });
        phase({ type: 'planning' });
        await site.prepare(agg, cfg);
      },
      weights: () => site.weights(),
      loadShared: (g) => site.loadShared(g),
      train: async (round, iters) => {
        log(`round ${round}: training ${iters} iteration(s)`);
        phase({ type: 'iteration', round, iteration: 0, iterations: iters });
        const t0 = performance.now();
        const m = await site.train(round);
        phase({ type: 'trained', round });
        membership.round = round;
        onEvent({
          type: 'round',
          round,
          rounds: site.trainer?.options.epochs ?? round,
          seconds: (performance.now() - t0) / 1000,
          metrics: m,
        });
        return m;
      },
      finish: (g, sh) => {
        phase({ type: 'final' });
        return site.finish(g, sh);
      },
      savedRound: (round) => site.savedRound(round),
      restore: async (cfg) => {
        const ok = await site.restore(cfg);
        if (ok)
          phase({
            type: 'welcome',
            phase: 'rounds',
            round: membership.round,
            rounds: cfg.rounds,
            iters: cfg.itersPerRound,
          });
        return ok;
      },
    };
    flowerStop = new AbortController();
    try {
      const r = await runFlowerSession({
        superlink: req.fleetUrl,
        trainer,
        saved: savedSession,
        savedMessage,
        saveMessage,
        signal: flowerStop.signal,
        // Training shares this worker's event loop with the heartbeats: leave room for a slow step.
        heartbeatInterval: 60,
        log,
        // Until the ServerApp's first message: waiting for the run (and the other nodes).
        onJoined: (_id, resumed) =>
          resumed || phase({ type: 'welcome', phase: 'join', round: 0, rounds: 0, iters: 0 }),
        persist: (f: FlowerMembership) => {
          membership.flower = f;
          return saveMembership(d, membership);
        },
        onReplied: (m) => {
          const message = FLOWER_REPLY[m.messageType] ?? m.messageType;
          const round = m.messageType === 'train' ? membership.round : undefined;
          onEvent({ type: 'sent', message, bytes: m.bytes, round });
          if (!m.error) phase({ type: 'sent', message, round });
          void appendEgress(d, {
            federationId,
            siteName: req.siteName,
            message,
            ...(round === undefined ? {} : { round }),
            bytes: m.bytes,
            at: Date.now(),
          }).catch((e) => log(`privacy audit not saved: ${String(e)}`));
        },
      });
      const shared = r.site.state.sharedKeys ?? [];
      const rounds = r.site.state.rounds.length;
      const t = site.trainer!;
      const all = await site.weights();
      const local = all.size - shared.length;
      const cfg = r.site.state.config!;
      const files = encodeModelFolder({
        plans: site.plans!,
        datasetJson: dj as never,
        configuration: t.configurationName,
        weights: all,
        provenance: {
          trained_by: 'browser site in a Flower federation',
          method: cfg.method,
          rounds,
          iterations: rounds * cfg.itersPerRound,
          ...(local ? { site: `flower node ${r.nodeId}` } : {}),
          shared_tensors: shared.length,
          local_tensors: local,
          ...pseudoDiceProvenance(t.log),
          training_cases: { dataset: ds.name, train: t.trainIds, val: t.valIds },
        },
      });
      const model = await saveModel(d, files, {
        name: `${ds.name} · Flower federation (${rounds} rounds)`,
        source: local ? 'personalised' : 'federation-global',
        origin: relayUrl,
      });
      await saveMembership(d, { ...membership, status: 'done' });
      phase({ type: 'done' });
      onEvent({
        type: 'done',
        rounds,
        shared: shared.length,
        local,
        modelIds: [model.id],
        globalDigest: await digest(new Map(shared.map((k) => [k, all.get(k)!]))),
      });
    } catch (e) {
      await saveMembership(d, { ...membership, status: 'failed' }).catch(() => undefined);
      phase({ type: 'failed', reason: e instanceof Error ? e.message : String(e) });
      throw e;
    } finally {
      flowerStop = undefined;
      site.trainer?.dispose();
      // Ended or failed here (a reload never gets here): no message is left to answer.
      await saveMessage(undefined).catch(() => undefined);
    }
  },

  leaveFederation(): void {
    fedClient?.stop();
    flowerStop?.abort();
  },

  /** The privacy audit kept in IndexedDB: every message this profile sent, oldest first. */
  async egressLog(): Promise<EgressRecord[]> {
    return listEgress(await db());
  },

  /** This browser profile's site key (made now if it has none): what a relay operator registers. */
  async siteKey(): Promise<{ fingerprint: string; createdAt: number; publicKey: string }> {
    const { identity, createdAt } = await siteIdentity(siteKeyStore(await db()));
    return {
      fingerprint: identity.fingerprint,
      createdAt,
      publicKey: toBase64(identity.publicKey),
    };
  },

  /** Federations this browser was part of and had not finished (offered for rejoining). */
  async unfinishedFederations(): Promise<FedMembership[]> {
    return runningMemberships(await db());
  },

  /** One deep-supervised training step on WebGPU and on the CPU: same seed, weights and batch. */
  async gradientCheck(
    opts: { stockKernels?: boolean } = {},
  ): Promise<StepComparison & { backend: string }> {
    const gpu = await useBackend('webgpu', { fastKernels: !opts.stockKernels });
    const a = await trainingStep(gpu, 1);
    const cpu = await useBackend('cpu');
    const b = await trainingStep(cpu, 1);
    return {
      ...compareSteps(a, b),
      backend: `webgpu (${opts.stockKernels ? 'stock' : 'fast'} kernels) vs cpu`,
    };
  },

  async train(
    req: TrainRequest,
    onEvent: (e: TrainEventOut) => void,
  ): Promise<{ epoch: number; stopped: boolean; runId: string; modelId?: string }> {
    if (control) throw new Error('training is already running');
    const d = await db();
    const pipeline = await sitePipeline(d, req.datasetId);
    const ds = { name: pipeline.store.datasetName, datasetJson: pipeline.store.datasetJson! };
    const backend = req.backend ?? 'webgpu';
    const runId = runIdOf(req);
    let trainer: Trainer;
    const saved = req.restart ? undefined : await loadCheckpoint(d, req.datasetId, runId);
    // The stages the Data tab stored are reused; whatever is missing is computed (and stored) now.
    const progress = (stage: string) => (p: { done: number; total: number }) =>
      onEvent({ type: 'status', message: `${stage}: ${p.done} of ${p.total} case(s)` });
    if (saved && saved.info.epoch < saved.info.epochs) {
      const ck = decodeCheckpoint(saved.data);
      const cases = await pipeline.trainingCases(ck.plans, ck.configuration, {
        onProgress: progress('preprocessed cases (stored or made now)'),
      });
      await useBackend(backend, { fastKernels: !req.stockKernels });
      trainer = Trainer.fromCheckpoint(ck, cases);
      onEvent({
        type: 'status',
        message: `resumed from the checkpoint of epoch ${saved.info.epoch}`,
        resumedFromEpoch: saved.info.epoch,
        backend,
      });
    } else {
      // The reduced offer: the planner's plan for the budget (same preprocessing, so the stored
      // arrays serve it).
      const plans =
        req.memoryBudgetMB && !req.tiny
          ? pipeline.makePlans(await pipeline.fingerprint({}), {
              memoryBudgetMB: req.memoryBudgetMB,
            })
          : undefined;
      const prep = await prepareTraining(pipeline, {
        ...(plans ? { plans } : {}),
        configuration: req.configuration,
        tiny: req.tiny || false,
        onProgress: (stage, done, total) =>
          progress(
            stage === 'fingerprint' ? 'fingerprinting' : 'preprocessed cases (stored or made now)',
          )({ done, total }),
      });
      if (prep.cases.length < 2)
        throw new Error(`${ds.name} has ${prep.cases.length} case(s): training needs at least 2`);
      await useBackend(backend, { fastKernels: !req.stockKernels });
      trainer = new Trainer({
        plans: prep.plans,
        configuration: req.configuration,
        datasetJson: ds.datasetJson,
        cases: prep.cases,
        options: {
          epochs: req.epochs,
          itersPerEpoch: req.itersPerEpoch,
          valIters: req.valIters,
          seed: req.seed ?? 0,
          checkpointing: req.checkpointing ?? false,
        },
      });
      onEvent({
        type: 'status',
        message: `new run: ${trainer.trainIds.length} training / ${trainer.valIds.length} validation cases, patch ${trainer.config.patch_size.join('×')}`,
        backend,
      });
    }
    control = new TrainingControl();
    try {
      const r = await trainer.run({
        control,
        onEvent: async (e) => {
          if (e.type === 'epoch') {
            // Checkpoint before telling the page, so "epoch N done" always has its checkpoint.
            await saveCheckpoint(
              d,
              {
                datasetId: req.datasetId,
                runId,
                tag: 'latest',
                epoch: trainer.epoch,
                epochs: trainer.options.epochs,
                configuration: req.configuration,
              },
              encodeCheckpoint(await trainer.checkpoint()),
            );
          }
          onEvent(e);
        },
      });
      let modelId: string | undefined;
      if (!r.stopped) {
        // A finished run becomes a model on the Predict tab.
        const provenance: ModelProvenance = {
          trained_by: 'browser training',
          method: 'local',
          sites: 1,
          epochs: r.epoch,
          iterations: r.epoch * trainer.options.itersPerEpoch,
          ...pseudoDiceProvenance(trainer.log),
          training_cases: { dataset: ds.name, train: trainer.trainIds, val: trainer.valIds },
        };
        const files = encodeModelFolder({
          plans: trainer.plans,
          datasetJson: ds.datasetJson as never,
          configuration: req.configuration,
          weights: await trainer.net.namedWeights(),
          provenance,
        });
        modelId = (
          await saveModel(d, files, {
            name: `${ds.name} · trained here (${r.epoch} epochs)`,
            source: 'local',
          })
        ).id;
        onEvent({ type: 'status', message: 'model saved for the Predict tab' });
      }
      return { ...r, runId, modelId };
    } finally {
      control = undefined;
      trainer.dispose();
    }
  },

  pause(): void {
    control?.pause();
  },
  resume(): void {
    control?.resume();
  },
  stop(): void {
    control?.stop();
  },

  /** The saved run of this dataset/configuration, if any (to offer "resume"). */
  async savedRun(datasetId: string, configuration: string, tiny: boolean) {
    const c = await loadCheckpoint(
      await db(),
      datasetId,
      runIdOf({ configuration: configuration as '2d', tiny: tiny ? {} : false }),
    );
    return c?.info;
  },
};

export type TrainApi = typeof api;
Comlink.expose(api);
