// The FednnU-Net paper's experiment on the user's sites (`fednnunet compare`): with equal budgets
// (local and centralised train R epochs of I iterations, a federation R rounds of I iterations),
// train each site alone (local), all sites pooled (centralised: one fingerprint of the pooled
// cases, the paper's upper bound) and one federation per method; hold out K cases per site that
// no model trains on; evaluate every model on every site's held-out cases with the predictor of
// `fednnunet predict` (preprocess with the model's plans, Gaussian sliding window, export to the
// raw geometry) and nnU-Net's Dice (summary.json's foreground mean). Platform-free: the federation
// runner is given (the Node relay in the CLI), so are the stores and the engine.
import type { SiteResult, SiteTrainer } from '../fed/client.ts';
import { methodDefaults, methodSpec, type Method } from '../fed/methods.ts';
import type { FederationConfig } from '../fed/protocol.ts';
import type { PredictorPlans } from '../infer/predictor.ts';
import type { EvaluatedNetwork, ValidationEngine } from '../infer/validation-engine.ts';
import { numInputChannels } from '../model/labels.ts';
import { prepareTraining, SitePipeline, withTiny } from '../pipeline/site-pipeline.ts';
import { MemorySiteStore, type SiteCase, type SiteStore } from '../pipeline/site-store.ts';
import { TrainerSite } from '../pipeline/trainer-site.ts';
import type { ConfigurationPlan, DatasetJson, Plans } from '../plan/types.ts';
import { Trainer } from '../train/trainer.ts';
import type { TinyOptions } from '../train/tiny.ts';
import { meanDice } from './held-out-report.ts';
import { mulberry32 } from '../util/rng.ts';

/** The paper's columns, in its order. */
export const COMPARE_METHODS = ['local', 'asym', 'ffe', 'fedavg', 'centralised'] as const;
export type CompareMethod = (typeof COMPARE_METHODS)[number];
export const COMPARE_LABELS: Record<CompareMethod, string> = {
  local: 'local',
  asym: 'AsymFedAvg',
  ffe: 'FFE',
  fedavg: 'FedAvg',
  centralised: 'centralised',
};

export interface CompareSite {
  /** Shown in the table (e.g. the dataset folder's name). */
  name: string;
  store: SiteStore;
}

export interface CompareOptions {
  rounds: number;
  iters: number;
  /** Cases per site held out of every training (at least 1; every site keeps at least 1 to train). */
  holdout: number;
  methods: readonly CompareMethod[];
  seed: number;
  configuration?: FederationConfig['configuration'];
  tiny?: boolean | TinyOptions;
  /** Runs the predictor over a model (onnxruntime-node in the CLI; tfjs in a pinch). */
  engine: ValidationEngine;
  /** Runs one federation over the given site trainers (the Node relay in the CLI). */
  runFederation: (config: FederationConfig, sites: SiteTrainer[]) => Promise<SiteResult[]>;
  /** Sliding-window step (the predictor's default 0.5). */
  stepSize?: number;
  log?: (line: string) => void;
}

export interface ModelResult {
  /** e.g. 'local SiteA', 'FFE (global)', 'AsymFedAvg SiteB', 'centralised'. */
  name: string;
  /** The site the model belongs to (local and per-site federation models); null: one for all. */
  site: number | null;
  /** Ids of the cases it trained on, `site/case`. */
  trainedOn: string[];
  /** nnU-Net Dice (foreground mean over the held-out cases) per site, in site order. */
  dice: number[];
}

export interface MethodResult {
  method: CompareMethod;
  label: string;
  status: 'done' | 'skipped';
  /** Why it did not run (e.g. FedAvg over sites whose networks differ). */
  reason?: string;
  trainSeconds: number;
  evalSeconds: number;
  models: ModelResult[];
}

export interface ComparisonSummary {
  format: 'fednnunet-compare';
  settings: {
    rounds: number;
    iters: number;
    /** Iterations each model trained for (local, centralised: R×I; each federation site: R×I). */
    budgetIterations: number;
    holdout: number;
    configuration: string;
    tiny: boolean | TinyOptions;
    stepSize: number;
    engine: string;
    methods: CompareMethod[];
  };
  /** Holdout draw, weight init and loaders (Trainer options.seed). */
  seeds: { holdout: number; training: number };
  sites: { name: string; cases: number; holdout: string[]; training: string[] }[];
  methods: MethodResult[];
  /** The paper's table: Dice[site][method] of the model each method gives that site, and the mean. */
  table: {
    sites: string[];
    methods: CompareMethod[];
    dice: (number | null)[][];
    mean: (number | null)[];
  };
}

/** K ids per site drawn with a seeded shuffle of the sorted ids (the same for every method). */
export function drawHoldout(ids: readonly string[], k: number, seed: number): string[] {
  const sorted = [...ids].sort();
  const r = mulberry32(seed >>> 0);
  for (let i = sorted.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [sorted[i], sorted[j]] = [sorted[j], sorted[i]];
  }
  return sorted.slice(0, k).sort();
}

/** The store's cases minus `exclude`; reading an excluded case is an error (it must never train). */
export function withoutCases(store: SiteStore, exclude: readonly string[]): MemorySiteStore {
  const ex = new Set(exclude);
  return new MemorySiteStore({
    datasetName: store.datasetName,
    datasetJson: store.datasetJson,
    caseIds: store.caseIds.filter((id) => !ex.has(id)),
    readCase: (id) => {
      if (ex.has(id))
        throw new Error(`${store.datasetName}: held-out case ${id} read for training`);
      return store.readCase(id);
    },
  });
}

/**
 * All sites' training cases as one dataset (ids `s<i>_<id>`); the sites must agree on labels and
 * input channels. Its pipeline fingerprints the pooled cases once, as the paper's centralised model.
 */
export function pooledStore(sites: readonly CompareSite[]): MemorySiteStore {
  const first = sites[0].store.datasetJson;
  if (!first) throw new Error(`${sites[0].name}: no dataset.json`);
  for (const s of sites.slice(1)) {
    const dj = s.store.datasetJson;
    if (!dj) throw new Error(`${s.name}: no dataset.json`);
    if (JSON.stringify(sortedLabels(dj)) !== JSON.stringify(sortedLabels(first)))
      throw new Error(`${s.name}: labels differ from ${sites[0].name}'s; sites cannot be pooled`);
    if (numInputChannels(dj) !== numInputChannels(first))
      throw new Error(`${s.name}: input channels differ from ${sites[0].name}'s`);
  }
  const owner = new Map<string, { store: SiteStore; id: string }>();
  sites.forEach((s, i) => {
    for (const id of s.store.caseIds) owner.set(`s${i + 1}_${id}`, { store: s.store, id });
  });
  return new MemorySiteStore({
    datasetName: 'Dataset999_Pooled',
    datasetJson: { ...first, numTraining: owner.size },
    caseIds: [...owner.keys()],
    readCase: async (id) => {
      const o = owner.get(id)!;
      const c: SiteCase = await o.store.readCase(o.id);
      return { ...c, id };
    },
  });
}

function sortedLabels(dj: DatasetJson): [string, unknown][] {
  return Object.entries(dj.labels).sort((a, b) => a[0].localeCompare(b[0]));
}

interface TrainedModel {
  name: string;
  site: number | null;
  trainedOn: string[];
  plans: Plans;
  datasetJson: DatasetJson;
  net: EvaluatedNetwork;
  dispose(): void;
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export async function compareMethods(
  sites: readonly CompareSite[],
  o: CompareOptions,
): Promise<ComparisonSummary> {
  if (sites.length < 2) throw new Error('compare needs at least two sites');
  const configuration = o.configuration ?? '3d_fullres';
  const stepSize = o.stepSize ?? 0.5;
  const log = o.log ?? (() => {});
  if (!Number.isInteger(o.holdout) || o.holdout < 1)
    throw new Error(`holdout must be a positive integer, got ${o.holdout}`);
  const unknown = o.methods.filter((m) => !COMPARE_METHODS.includes(m));
  if (unknown.length) throw new Error(`unknown method(s): ${unknown.join(', ')}`);
  const methods = COMPARE_METHODS.filter((m) => o.methods.includes(m));
  if (methods.length === 0) throw new Error('no method to compare');

  // Held-out cases, then each site's training store (which refuses to read a held-out case).
  const held: string[][] = [];
  const train: CompareSite[] = sites.map((s, i) => {
    if (!s.store.datasetJson) throw new Error(`${s.name}: no dataset.json`);
    if (s.store.caseIds.length <= o.holdout)
      throw new Error(
        `${s.name}: ${s.store.caseIds.length} case(s) leave none to train on after holding out ${o.holdout}`,
      );
    held.push(drawHoldout(s.store.caseIds, o.holdout, o.seed * 1009 + i));
    return { name: s.name, store: withoutCases(s.store, held[i]) };
  });
  // Held-out raw cases, read once (they are small next to the preprocessed training arrays).
  const holdoutCases: SiteCase[][] = [];
  for (const [i, s] of sites.entries()) {
    const cs: SiteCase[] = [];
    for (const id of held[i]) cs.push(await s.store.readCase(id));
    holdoutCases.push(cs);
  }
  const pipelines = train.map((s) => new SitePipeline(s.store));
  const trainerOptions = {
    epochs: o.rounds,
    itersPerEpoch: o.iters,
    valIters: 0,
    seed: o.seed,
    split: 'all' as const,
  };

  const evaluate = async (m: TrainedModel): Promise<number[]> => {
    const patch = configurationOf(m.plans, configuration).patch_size;
    const engine = await o.engine.open(m.net, patch);
    const ctx = {
      plans: m.plans as unknown as PredictorPlans,
      configuration,
      datasetJson: m.datasetJson,
    };
    try {
      const out: number[] = [];
      for (const [t, cases] of holdoutCases.entries())
        out.push(
          await meanDice(ctx, cases, engine, { stepSize, site: sites[t].name, name: m.name }),
        );
      return out;
    } finally {
      await engine.release();
    }
  };

  const trainAlone = async (
    name: string,
    site: number | null,
    pipeline: SitePipeline,
    prefix: (id: string) => string,
  ): Promise<TrainedModel> => {
    const prep = await prepareTraining(pipeline, { configuration, tiny: o.tiny });
    const trainer = new Trainer({
      plans: prep.plans,
      configuration,
      datasetJson: pipeline.store.datasetJson!,
      cases: prep.cases,
      options: trainerOptions,
    });
    await trainer.run();
    return {
      name,
      site,
      trainedOn: trainer.trainIds.map(prefix),
      plans: prep.plans,
      datasetJson: pipeline.store.datasetJson!,
      net: trainer.net,
      dispose: () => trainer.dispose(),
    };
  };

  const results: MethodResult[] = [];
  for (const method of methods) {
    const label = COMPARE_LABELS[method];
    log(`${label}: training`);
    const t0 = now();
    let models: TrainedModel[] = [];
    if (method === 'local') {
      for (const [i, s] of train.entries())
        models.push(
          await trainAlone(`local ${s.name}`, i, pipelines[i], (id) => `${s.name}/${id}`),
        );
    } else if (method === 'centralised') {
      const pooled = pooledStore(train);
      const names = new Map<string, string>();
      train.forEach((s, i) =>
        s.store.caseIds.forEach((id) => names.set(`s${i + 1}_${id}`, `${s.name}/${id}`)),
      );
      models.push(
        await trainAlone('centralised', null, new SitePipeline(pooled), (id) => names.get(id)!),
      );
    } else {
      const fed = method as Method;
      const reason = await federationObstacle(fed, pipelines, configuration, o.tiny);
      if (reason) {
        log(`${label}: skipped (${reason})`);
        results.push({
          method,
          label,
          status: 'skipped',
          reason,
          trainSeconds: 0,
          evalSeconds: 0,
          models: [],
        });
        continue;
      }
      const trainers = pipelines.map(
        (p) =>
          new TrainerSite({
            pipeline: p,
            tiny: o.tiny,
            seed: o.seed,
            valIters: 0,
            evaluate: false,
            split: 'all',
          }),
      );
      await o.runFederation(
        {
          ...methodDefaults(fed),
          configuration,
          rounds: o.rounds,
          itersPerRound: o.iters,
          minSites: sites.length,
          roundDeadlineMs: 24 * 3600_000,
          weighting: 'uniform',
          encoding: 'fp32',
        },
        trainers,
      );
      const perSite = methodSpec(fed).keys !== 'all';
      // keys = all: every site ends with the same global weights, so one model stands for all.
      const keep = perSite ? trainers : [trainers[0]];
      models = keep.map((t, i) => ({
        name: perSite ? `${label} ${train[i].name}` : `${label} (global)`,
        site: perSite ? i : null,
        trainedOn: trainers.flatMap((tt, j) =>
          tt.trainer!.trainIds.map((id) => `${train[j].name}/${id}`),
        ),
        plans: t.plans!,
        datasetJson: train[perSite ? i : 0].store.datasetJson!,
        net: t.trainer!.net,
        dispose: () => t.trainer!.dispose(),
      }));
      for (const t of trainers.slice(keep.length)) t.trainer?.dispose();
    }
    const trainSeconds = (now() - t0) / 1000;
    log(
      `${label}: trained in ${trainSeconds.toFixed(1)} s; evaluating on ${sites.length} sites' held-out cases`,
    );
    const t1 = now();
    const done: ModelResult[] = [];
    try {
      for (const m of models)
        done.push({ name: m.name, site: m.site, trainedOn: m.trainedOn, dice: await evaluate(m) });
    } finally {
      for (const m of models) m.dispose();
    }
    results.push({
      method,
      label,
      status: 'done',
      trainSeconds,
      evalSeconds: (now() - t1) / 1000,
      models: done,
    });
  }

  const dice = sites.map((_, s) =>
    methods.map((m) => {
      const r = results.find((x) => x.method === m)!;
      const model = r.models.find((x) => x.site === s) ?? r.models.find((x) => x.site === null);
      const d = model?.dice[s];
      return d === undefined || Number.isNaN(d) ? null : d;
    }),
  );
  const mean = methods.map((_, j) => {
    const col = dice.map((row) => row[j]);
    const ok = col.filter((d): d is number => d !== null);
    return ok.length < col.length ? null : ok.reduce((a, b) => a + b, 0) / ok.length;
  });
  return {
    format: 'fednnunet-compare',
    settings: {
      rounds: o.rounds,
      iters: o.iters,
      budgetIterations: o.rounds * o.iters,
      holdout: o.holdout,
      configuration,
      tiny: o.tiny ?? false,
      stepSize,
      engine: o.engine.name,
      methods,
    },
    seeds: { holdout: o.seed, training: o.seed },
    sites: sites.map((s, i) => ({
      name: s.name,
      cases: s.store.caseIds.length,
      holdout: held[i],
      training: [...train[i].store.caseIds],
    })),
    methods: results,
    table: { sites: sites.map((s) => s.name), methods, dice, mean },
  };
}

function configurationOf(plans: Plans, configuration: string): ConfigurationPlan {
  const c = (plans.configurations as Record<string, ConfigurationPlan | undefined>)[configuration];
  if (!c) throw new Error(`plans have no configuration '${configuration}'`);
  return c;
}

/**
 * Why `method` cannot federate these sites, or undefined: a method that averages every weight
 * over local plans (FedAvg) needs every site to plan the same network, and the relay would refuse
 * the federation after it started.
 */
async function federationObstacle(
  method: Method,
  pipelines: readonly SitePipeline[],
  configuration: string,
  tiny: boolean | TinyOptions | undefined,
): Promise<string | undefined> {
  const spec = methodSpec(method);
  if (spec.planning !== 'local' || !spec.sameArchitecture) return undefined;
  const nets: string[] = [];
  for (const p of pipelines) {
    const plans = withTiny(await p.localPlans(), configuration, tiny);
    const c = configurationOf(plans, configuration);
    nets.push(JSON.stringify([c.patch_size, c.architecture]));
  }
  const differ = nets.findIndex((n) => n !== nets[0]);
  return differ > 0
    ? `the sites' own plans give different networks (site ${differ + 1} differs from site 1), which ${spec.label} cannot average`
    : undefined;
}

/** The paper's layout: a row per site, a column per method, a mean row; Dice to 4 places. */
export function formatComparisonTable(s: ComparisonSummary): string {
  const head = ['site', ...s.table.methods.map((m) => COMPARE_LABELS[m])];
  const cell = (d: number | null) => (d === null ? 'n/a' : d.toFixed(4));
  const rows = [
    head,
    ...s.table.sites.map((name, i) => [name, ...s.table.dice[i].map(cell)]),
    ['mean', ...s.table.mean.map(cell)],
  ];
  const width = head.map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  return rows
    .map((r) => r.map((c, j) => (j === 0 ? c.padEnd(width[j]) : c.padStart(width[j]))).join('  '))
    .join('\n');
}
