// Training worker: nnU-Net's training loop on WebGPU (tfjs) over the preprocessed cases of a
// dataset in IndexedDB, a checkpoint after every epoch (a reloaded tab resumes from it), pause,
// resume and stop; and the WebGPU-vs-CPU training-step check. Exposed with comlink.
import * as Comlink from 'comlink';
import { openStore, type StoreDB } from '../src/store/db.ts';
import { getDataset } from '../src/store/datasets.ts';
import { listPlans, loadPlans } from '../src/store/plans.ts';
import { listPreprocessed, loadPreprocessed } from '../src/store/preprocessed.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/store/checkpoints.ts';
import { useBackend, type BackendName } from '../src/model/tf-backend.ts';
import { Trainer, TrainingControl, trainerCase, type TrainerEvent, type TrainerCase } from '../src/train/trainer.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../src/train/train-checkpoint.ts';
import { tinyConfiguration } from '../src/train/tiny.ts';
import { compareSteps, trainingStep, type StepComparison } from '../src/train/gradient-check.ts';
import type { Plans, ConfigurationPlan, DatasetJson } from '../src/plan/types.ts';
import { SiteClient } from '../src/fed/client.ts';
import { wsConnect } from '../src/fed/ws-transport.ts';
import type { Connect } from '../src/fed/client.ts';
import type { LinkBridge } from '../src/fed/peer-transport.ts';
import { TrainerSite } from '../src/pipeline/trainer-site.ts';
import { listCases, loadCaseVolumes } from '../src/store/datasets.ts';
import { stackChannels } from '../src/io/raw-dataset.ts';
import { encodeModelDir } from '../src/infer/model-dir.ts';
import { saveModel } from '../src/infer/stored-models.ts';
import { pick } from '../src/fed/aggregate.ts';
import { federationIdOf, loadMembership, runningMemberships, saveMembership, type FedMembership } from '../src/store/fed-state.ts';
import { siteKeyStore } from '../src/store/site-key.ts';
import { siteIdentity } from '../src/fed/identity/kept-key.ts';
import { toBase64 } from '../src/fed/identity/site-key.ts';

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
}

export type TrainEventOut = TrainerEvent | { type: 'status'; message: string; resumedFromEpoch?: number; backend?: string };

export const runIdOf = (r: Pick<TrainRequest, 'configuration' | 'tiny'>) => `local:${r.configuration}${r.tiny ? ':tiny' : ''}`;

async function loadCases(d: StoreDB, datasetId: string, plansName: string, configuration: string): Promise<TrainerCase[]> {
  const ids = await listPreprocessed(d, datasetId, plansName, configuration);
  if (ids.length < 2) throw new Error(`only ${ids.length} preprocessed case(s) for ${configuration}: prepare the dataset first (Data tab: "Fingerprint, plan and preprocess")`);
  const out: TrainerCase[] = [];
  for (const id of ids) out.push(trainerCase(id, (await loadPreprocessed(d, datasetId, plansName, configuration, id))!));
  return out;
}

export interface FederateRequest {
  /** ws(s)://host/fed of the relay (the page derives it from its own origin). */
  relayUrl: string;
  token: string;
  datasetId: string;
  siteName: string;
  tiny?: { patch?: number; batchSize?: number } | false;
  backend?: BackendName;
  /** webgpu: tfjs' stock kernels instead of ours (slower; the fallback switch). */
  stockKernels?: boolean;
  seed?: number;
  /** The join link says the federation is secure (…&secure=1): hello carries no case count. */
  hideCaseCount?: boolean;
  /** Workshop mode: the host key fingerprint of the join link, which the host must prove (required). */
  hostKey?: string;
}

export type FederateEvent =
  | { type: 'log'; message: string }
  | { type: 'sent'; message: string; bytes: number; round?: number; tensors?: number }
  | { type: 'round'; round: number; rounds: number; seconds: number; metrics: Record<string, number> }
  | { type: 'done'; rounds: number; shared: number; local: number; modelIds: string[]; globalDigest: string }
  | { type: 'privacy'; round: number; epsilon: number; delta: number };

let fedClient: SiteClient | undefined;

function bridgeConnect(link: Comlink.Remote<LinkBridge>): Connect {
  return async (h) => {
    await link.open(Comlink.proxy((b: Uint8Array) => h.onMessage(b)), Comlink.proxy(() => h.onClose()));
    return { send: (b) => void link.send(b).catch(() => undefined), close: () => void link.close() };
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

const api = {
  /**
   * Takes part in a federation as one site: fingerprint (FFE) → plan → preprocess → one epoch per
   * round on this GPU, uploading weight deltas only. The final global model and (AsymFedAvg) the
   * personalised one are stored as models for the Predict tab.
   */
  async federate(req: FederateRequest, onEvent: (e: FederateEvent) => void, link?: LinkBridge): Promise<void> {
    if (fedClient || control) throw new Error('this tab is already training');
    // Never join a workshop host whose key nobody pinned: whoever holds its code could be it.
    if (link && !req.hostKey) throw new Error('a workshop join needs the host key of its link');
    const d = await db();
    const ds = await getDataset(d, req.datasetId);
    if (!ds) throw new Error('dataset not found (deleted?)');
    const dj = ds.datasetJson as DatasetJson | undefined;
    if (!dj) throw new Error(`${ds.name} has no dataset.json: loose scans cannot be trained on`);
    const ids = (await listCases(d, req.datasetId)).map((c) => c.caseId);
    await useBackend(req.backend ?? 'webgpu', { fastKernels: !req.stockKernels });
    // This profile's site key signs every frame; the relay knows the site by it.
    const { identity } = await siteIdentity(siteKeyStore(d));
    onEvent({ type: 'log', message: `this site's key: ${identity.fingerprint}` });
    // Membership and training state persist, so a reloaded tab rejoins as the same site.
    const federationId = federationIdOf(req.relayUrl, req.token);
    const previous = await loadMembership(d, req.datasetId, federationId);
    const membership: Omit<FedMembership, 'updatedAt'> = {
      datasetId: req.datasetId, federationId, relayUrl: req.relayUrl, token: req.token, siteName: req.siteName, ...(req.hostKey ? { hostKey: req.hostKey } : {}),
      siteId: previous?.status === 'running' ? previous.siteId : undefined, tiny: req.tiny ?? false, backend: req.backend ?? 'webgpu', status: 'running', round: previous?.round ?? 0,
    };
    await saveMembership(d, membership);
    const runId = `fed:${federationId}`;
    const site = new TrainerSite({
      datasetName: ds.name,
      datasetJson: dj,
      numCases: ids.length,
      getCase: async (i) => {
        const v = (await loadCaseVolumes(d, req.datasetId, ids[i]))!;
        if (!v.label) throw new Error(`case ${ids[i]} has no label map`);
        return { id: ids[i], image: v.images.length === 1 ? v.images[0] : stackChannels(v.images), label: v.label };
      },
      tiny: req.tiny || undefined,
      seed: req.seed ?? 0,
      valIters: 2,
      evaluate: false,
      log: (m) => onEvent({ type: 'log', message: m }),
      saveState: (bytes) => saveCheckpoint(d, { datasetId: req.datasetId, runId, tag: 'latest', epoch: site.trainer?.epoch ?? 0, epochs: site.trainer?.options.epochs ?? 0, configuration: site.trainer?.configurationName ?? '' }, bytes),
      loadState: async () => (membership.siteId ? (await loadCheckpoint(d, req.datasetId, runId))?.data : undefined),
    });
    const client = new SiteClient({
      // Workshop mode: the page holds the WebRTC connection (none exists in workers) and bridges it.
      connect: link ? bridgeConnect(link as unknown as Comlink.Remote<LinkBridge>) : wsConnect(req.relayUrl),
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
          onEvent({ type: 'log', message: 'fingerprinting the local dataset' });
          return site.localFingerprint();
        },
        prepare: async (agg, cfg) => {
          onEvent({ type: 'log', message: agg ? 'planning on the pooled (FFE) fingerprint' : 'planning on the local fingerprint' });
          await site.prepare(agg, cfg);
        },
        weights: () => site.weights(),
        loadShared: (g) => site.loadShared(g),
        train: async (round, iters) => {
          onEvent({ type: 'log', message: `round ${round}: training ${iters} iteration(s)` });
          const t0 = performance.now();
          const m = await site.train(round);
          const seconds = (performance.now() - t0) / 1000;
          membership.round = round;
          await saveMembership(d, membership);
          onEvent({ type: 'round', round, rounds: site.trainer?.options.epochs ?? round, seconds, metrics: m });
          return m;
        },
        finish: (g, sh) => site.finish(g, sh),
        restore: (cfg) => site.restore(cfg),
      },
      log: (m) => onEvent({ type: 'log', message: m }),
      // Mirror every outgoing message to the page's "What leaves this browser" panel.
      onSent: (m) => onEvent({ type: 'sent', message: m.type, bytes: m.bytes, round: m.round, tensors: m.tensors?.length }),
      hideCaseCount: req.hideCaseCount,
      onPrivacy: (p) => onEvent({ type: 'privacy', round: p.round, epsilon: p.epsilon, delta: p.delta }),
    });
    fedClient = client;
    try {
      const r = await client.run();
      const t = site.trainer!;
      const all = await site.weights();
      const files = encodeModelDir({ plans: site.plans!, datasetJson: dj as never, configuration: t.configurationName, weights: all, meta: { federation: { rounds: r.rounds, shared: r.shared.length } } });
      const local = all.size - r.shared.length;
      const ids: string[] = [];
      ids.push((await saveModel(d, files, { name: `${ds.name} · federation (${r.rounds} rounds)`, source: local ? 'personalised' : 'federation-global', origin: req.relayUrl })).id);
      await saveMembership(d, { ...membership, status: 'done' });
      onEvent({ type: 'done', rounds: r.rounds, shared: r.shared.length, local, modelIds: ids, globalDigest: await digest(pick(all, r.shared)) });
    } catch (e) {
      // A refusal or an error of the federation ends the membership; a closed tab does not get here.
      await saveMembership(d, { ...membership, status: 'failed' }).catch(() => undefined);
      throw e;
    } finally {
      fedClient = undefined;
      site.trainer?.dispose();
    }
  },

  leaveFederation(): void {
    fedClient?.stop();
  },

  /** This browser profile's site key (made now if it has none): what a relay operator registers. */
  async siteKey(): Promise<{ fingerprint: string; createdAt: number; publicKey: string }> {
    const { identity, createdAt } = await siteIdentity(siteKeyStore(await db()));
    return { fingerprint: identity.fingerprint, createdAt, publicKey: toBase64(identity.publicKey) };
  },

  /** Federations this browser was part of and had not finished (offered for rejoining). */
  async unfinishedFederations(): Promise<FedMembership[]> {
    return runningMemberships(await db());
  },

  /** One deep-supervised training step on WebGPU and on the CPU: same seed, weights and batch. */
  async gradientCheck(opts: { stockKernels?: boolean } = {}): Promise<StepComparison & { backend: string }> {
    const gpu = await useBackend('webgpu', { fastKernels: !opts.stockKernels });
    const a = await trainingStep(gpu, 1);
    const cpu = await useBackend('cpu');
    const b = await trainingStep(cpu, 1);
    return { ...compareSteps(a, b), backend: `webgpu (${opts.stockKernels ? 'stock' : 'fast'} kernels) vs cpu` };
  },

  async train(req: TrainRequest, onEvent: (e: TrainEventOut) => void): Promise<{ epoch: number; stopped: boolean; runId: string; modelId?: string }> {
    if (control) throw new Error('training is already running');
    const d = await db();
    const ds = await getDataset(d, req.datasetId);
    if (!ds) throw new Error('dataset not found (deleted?)');
    const plansName = (await listPlans(d, req.datasetId))[0];
    if (!plansName) throw new Error(`${ds.name} has no plans yet: prepare it first (Data tab)`);
    const plans = (await loadPlans(d, req.datasetId, plansName))!;
    const cases = await loadCases(d, req.datasetId, plansName, req.configuration);
    const backend = req.backend ?? 'webgpu';
    await useBackend(backend, { fastKernels: !req.stockKernels });
    const runId = runIdOf(req);
    let trainer: Trainer;
    const saved = req.restart ? undefined : await loadCheckpoint(d, req.datasetId, runId);
    if (saved && saved.info.epoch < saved.info.epochs) {
      trainer = Trainer.fromCheckpoint(decodeCheckpoint(saved.data), cases);
      onEvent({ type: 'status', message: `resumed from the checkpoint of epoch ${saved.info.epoch}`, resumedFromEpoch: saved.info.epoch, backend });
    } else {
      const runPlans: Plans = structuredClone(plans);
      const configs = runPlans.configurations as Record<string, ConfigurationPlan>;
      if (req.tiny) configs[req.configuration] = tinyConfiguration(configs[req.configuration], req.tiny);
      trainer = new Trainer({
        plans: runPlans,
        configuration: req.configuration,
        datasetJson: { labels: ds.labels },
        cases,
        options: { epochs: req.epochs, itersPerEpoch: req.itersPerEpoch, valIters: req.valIters, seed: req.seed ?? 0, checkpointing: req.checkpointing ?? false },
      });
      onEvent({ type: 'status', message: `new run: ${trainer.trainIds.length} training / ${trainer.valIds.length} validation cases, patch ${trainer.config.patch_size.join('×')}`, backend });
    }
    control = new TrainingControl();
    try {
      const r = await trainer.run({
        control,
        onEvent: async (e) => {
          if (e.type === 'epoch') {
            // Checkpoint before telling the page, so "epoch N done" always has its checkpoint.
            await saveCheckpoint(d, { datasetId: req.datasetId, runId, tag: 'latest', epoch: trainer.epoch, epochs: trainer.options.epochs, configuration: req.configuration }, encodeCheckpoint(await trainer.checkpoint()));
          }
          onEvent(e);
        },
      });
      let modelId: string | undefined;
      if (!r.stopped) {
        // A finished run becomes a model on the Predict tab.
        const files = encodeModelDir({ plans: trainer.plans, datasetJson: ds.datasetJson as never, configuration: req.configuration, weights: await trainer.net.namedWeights(), meta: { training: { epochs: r.epoch, itersPerEpoch: trainer.options.itersPerEpoch } } });
        modelId = (await saveModel(d, files, { name: `${ds.name} · trained here (${r.epoch} epochs)`, source: 'local' })).id;
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
    const c = await loadCheckpoint(await db(), datasetId, runIdOf({ configuration: configuration as '2d', tiny: tiny ? {} : false }));
    return c?.info;
  },
};

export type TrainApi = typeof api;
Comlink.expose(api);
