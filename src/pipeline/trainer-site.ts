// A federation site backed by the site's pipeline (site-pipeline.ts): fingerprint → plan (on the
// FFE aggregate, or the site's own plans for AsymFedAvg/FedAvg) → preprocess → nnU-Net's Trainer,
// one epoch per round. Every stage comes from the site's store when it is there (the Data tab's
// work, an earlier run), so a federation neither fingerprints nor preprocesses twice. Platform-
// free: the Node simulator gives it raw dataset folders, the browser worker its IndexedDB dataset.
import type { SiteTrainer } from '../fed/client.ts';
import type { FederationConfig } from '../fed/protocol.ts';
import type { NamedWeights, WeightSpec } from '../model/named-weights.ts';
import type { DatasetFingerprint } from '../fingerprint/types.ts';
import type { Plans } from '../plan/types.ts';
import { prepareTraining, type SitePipeline } from './site-pipeline.ts';
import {
  Trainer,
  TrainingControl,
  type EpochEvent,
  type IterationEvent,
  type TrainerCase,
} from '../train/trainer.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../train/train-checkpoint.ts';
import { slidingWindowPredict } from '../infer/sliding-window.ts';
import { tfjsValidationEngine, type ValidationEngine } from '../infer/validation-engine.ts';
import type { SplitMode } from '../train/split.ts';
import { computeCaseMetrics } from '../eval/metrics.ts';
import type { TinyOptions } from '../train/tiny.ts';
import { ProximalTerm } from '../train/proximal.ts';
import { methodSpec } from '../fed/methods.ts';
import { checkInitModel } from '../fed/init-model.ts';

export interface TrainerSiteOptions {
  /** The site's data and stages (IndexedDB in the browser, a raw folder or memory in Node). */
  pipeline: SitePipeline;
  tiny?: boolean | TinyOptions;
  seed?: number;
  valIters?: number;
  /** Checkpointing, augmentation etc. (defaults: nnU-Net's). */
  augmentation?: boolean;
  /** Sliding-window Dice on the validation cases each round and at the end (default true). */
  evaluate?: boolean;
  /**
   * How often the validation Dice runs (when `evaluate` is on): every K rounds (default 1: before
   * every round from round 2, i.e. after each aggregation), or 'final' (only once training ended).
   * The final Dice always runs. A whole-case sliding window costs far more than a round's training
   * on a CPU, so a long federation may want it rarely.
   */
  valEvery?: number | 'final';
  /**
   * What runs the validation sliding window (default: tfjs on the training backend). The Node
   * simulator passes onnxruntime-node (validation-engine.ts): one ONNX export per evaluation.
   */
  validationEngine?: ValidationEngine;
  /** The Trainer's train/validation split (default 'random80'; 'all': train = validate on all). */
  split?: SplitMode;
  /** Local persistence of the site's training state (after planning and after every round). */
  saveState?: (checkpoint: Uint8Array) => Promise<void>;
  loadState?: () => Promise<Uint8Array | undefined>;
  log?: (line: string) => void;
  /** Case progress of fingerprinting and preprocessing (the page's phase line). */
  onStage?: (stage: 'fingerprint' | 'preprocess', done: number, total: number) => void;
  /** Every training iteration of a round (the page's phase line and loss chart). */
  onIteration?: (round: number, e: IterationEvent) => void;
}

export interface RoundReport {
  round: number;
  /** Mean foreground Dice on this site's validation cases (sliding window) before local training. */
  diceBefore?: number;
  /** Wall time of the round's local training (the epoch) and of the validation before it, ms. */
  trainMs: number;
  evalMs: number;
  epoch: EpochEvent;
}

export class TrainerSite implements SiteTrainer {
  readonly numCases: number;
  trainer?: Trainer;
  plans?: Plans;
  fingerprint?: DatasetFingerprint;
  private valCases: TrainerCase[] = [];
  private config?: FederationConfig;
  /** Names of the parameters last loaded from the global model (the round's shared set). */
  private sharedNames: string[] = [];
  readonly rounds: RoundReport[] = [];
  finalDice?: number;
  /** Wall time of the final validation, ms. */
  finalEvalMs = 0;
  private readonly engine: ValidationEngine;

  constructor(private readonly o: TrainerSiteOptions) {
    this.numCases = o.pipeline.numCases;
    const k = o.valEvery ?? 1;
    if (k !== 'final' && !(Number.isInteger(k) && k >= 1))
      throw new Error(`valEvery must be a positive integer or 'final', got ${String(k)}`);
    this.engine = o.validationEngine ?? tfjsValidationEngine();
  }

  /** The engine that runs validation (its name and note, for the run's log). */
  get validationEngine(): ValidationEngine {
    return this.engine;
  }

  /** Whether the validation Dice runs before round `round` (it scores the model after round − 1). */
  evaluatesBefore(round: number): boolean {
    const k = this.o.valEvery ?? 1;
    if (this.o.evaluate === false || round <= 1 || k === 'final') return false;
    return (round - 1) % k === 0;
  }

  /** The site's dataset.json (labels, channels), as a model folder and a Flower ServerApp want it. */
  datasetJson(): object {
    return this.o.pipeline.store.datasetJson!;
  }

  /**
   * The tiny preset asked by the federation (a Flower run's `tiny` key) rather than by the site;
   * a site's own --tiny options (patch) win. Before prepare() only.
   */
  useTiny(on: boolean): void {
    if (this.trainer) throw new Error('the network is built already');
    if (on && !this.o.tiny) this.o.tiny = true;
  }

  private get datasetName(): string {
    return this.o.pipeline.store.datasetName;
  }

  async localFingerprint(): Promise<Record<string, unknown>> {
    const onStage = this.o.onStage;
    this.fingerprint = await this.o.pipeline.fingerprint({
      onProgress: onStage && ((p) => onStage('fingerprint', p.done, p.total)),
    });
    return this.fingerprint as unknown as Record<string, unknown>;
  }

  async prepare(
    aggregate: Record<string, unknown> | null,
    config: FederationConfig,
  ): Promise<void> {
    this.config = config;
    const pipeline = this.o.pipeline;
    const dj = pipeline.store.datasetJson!;
    // FFE: every site plans on the pooled fingerprint (planning is cheap; the stored arrays are
    // reused when this plan preprocesses as the stored one does); otherwise the site's own plans.
    const pooled = aggregate
      ? pipeline.makePlans(aggregate as unknown as DatasetFingerprint)
      : undefined;
    // Fine-tuning: the pretrained model's plans (its weights fit only its network and inputs).
    const init = checkInitModel(config, dj, pooled, (l) => this.o.log?.(l));
    const plans = init ?? pooled;
    const prepared = await prepareTraining(pipeline, {
      configuration: config.configuration,
      plans: plans ?? (await pipeline.localPlans()),
      // A pooled plan that preprocesses differently gets its own record, beside the site's own.
      plansName: init ? `${init.plans_name}_init` : plans ? `${plans.plans_name}_FFE` : undefined,
      // The tiny preset shrinks the network: never over a pretrained model's plans.
      tiny: init ? undefined : this.o.tiny,
      onProgress: this.o.onStage,
    });
    this.plans = prepared.plans;
    this.trainer = new Trainer({
      plans: prepared.plans,
      configuration: config.configuration,
      datasetJson: dj,
      cases: prepared.cases,
      options: {
        epochs: config.rounds,
        itersPerEpoch: config.itersPerRound,
        valIters: this.o.valIters ?? 10,
        seed: this.o.seed ?? 0,
        augmentation: this.o.augmentation,
        split: this.o.split,
      },
    });
    const val = new Set(this.trainer.valIds);
    this.valCases = prepared.cases.filter((c) => val.has(c.id));
    this.o.log?.(
      `${this.datasetName}: planned ${config.configuration} patch ${this.trainer.config.patch_size.join('×')}, ${this.trainer.net.specs.length} tensors; train ${this.trainer.trainIds.length} / val ${this.valCases.length} cases`,
    );
    await this.save();
  }

  private async save(): Promise<void> {
    if (this.o.saveState && this.trainer)
      await this.o.saveState(encodeCheckpoint(await this.trainer.checkpoint()));
  }

  async restore(config: FederationConfig): Promise<boolean> {
    const bytes = await this.o.loadState?.();
    if (!bytes) return false;
    this.config = config;
    const ck = decodeCheckpoint(bytes);
    if (ck.configuration !== config.configuration)
      throw new Error(
        `saved state is for ${ck.configuration}, the federation trains ${config.configuration}`,
      );
    // Same plans as before the reload (FFE or local, tiny preset included): the arrays stored by
    // prepare() preprocess alike (the tiny preset changes no preprocessing field), so they are
    // loaded, not computed again.
    const cases = await this.o.pipeline.trainingCases(ck.plans, ck.configuration, {
      plansName: `${ck.plans.plans_name}${config.initModel?.plans ? '_init' : '_FFE'}`,
    });
    this.plans = ck.plans;
    this.trainer = Trainer.fromCheckpoint(ck, cases);
    const val = new Set(this.trainer.valIds);
    this.valCases = cases.filter((c) => val.has(c.id));
    this.o.log?.(`${this.datasetName}: restored the saved state after ${ck.epoch} round(s)`);
    return true;
  }

  /**
   * The metrics of `round` when the training state already holds it (restored from a checkpoint
   * saved after that round, before the site could reply), from the trainer's log; else undefined.
   */
  savedRound(round: number): Record<string, number> | undefined {
    const t = this.trainer;
    if (!t || t.epoch < round || round < 1) return undefined;
    const L = t.log;
    const i = round - 1;
    const m: Record<string, number | undefined> = {
      loss: L.train_losses[i],
      valLoss: L.val_losses[i],
      pseudoDice: L.mean_fg_dice[i],
    };
    return Object.fromEntries(
      Object.entries(m).filter(
        (e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1]),
      ),
    );
  }

  private get t(): Trainer {
    if (!this.trainer) throw new Error('site not prepared yet');
    return this.trainer;
  }

  weights(): Promise<NamedWeights> {
    return this.t.net.namedWeights();
  }

  async loadShared(shared: NamedWeights): Promise<void> {
    this.t.net.loadNamedWeights(shared, { strict: false });
    this.sharedNames = [...shared.keys()];
  }

  /**
   * Mean foreground Dice over the validation cases: full sliding-window prediction, argmax. The
   * engine is opened once (one ONNX export of the current weights) for all cases.
   */
  async validationDice(): Promise<number> {
    const t = this.t;
    const patch = t.config.patch_size;
    const engine = await this.engine.open(t.net, patch);
    const scores: number[] = [];
    try {
      for (const c of this.valCases) {
        const C = c.data.length / c.seg.length;
        const logits = await slidingWindowPredict(
          { data: c.data, shape: [C, ...c.shape] as [number, number, number, number] },
          patch,
          t.numClasses,
          engine.predictTiles,
          { tileBatch: engine.tileBatch },
        );
        const d = meanForegroundDice(logits.data, c.seg, t.numClasses);
        if (!Number.isNaN(d)) scores.push(d);
      }
    } finally {
      await engine.release();
    }
    return scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : NaN;
  }

  async train(round: number): Promise<Record<string, number>> {
    const e0 = now();
    // Round 1 starts from a pretrained model's weights when there is one: measure those too.
    const evaluates =
      this.evaluatesBefore(round) ||
      (round === 1 && !!this.config?.initModel && this.o.evaluate !== false);
    const diceBefore = evaluates ? await this.validationDice() : undefined;
    const evalMs = evaluates ? now() - e0 : 0;
    const t0 = now();
    const control = new TrainingControl();
    let epoch: EpochEvent | undefined;
    // The method's site-side loss (methods.ts), anchored at the global model the client just loaded.
    const extra = this.siteLoss();
    this.t.extraLoss = extra && (() => extra.loss());
    // One FednnU-Net round = one nnU-Net epoch (iterations + validation), then back to the relay.
    try {
      await this.t.run({
        control,
        onEvent: (e) => {
          if (e.type === 'epoch') {
            epoch = e;
            control.stop();
          } else this.o.onIteration?.(round, e);
        },
      });
    } finally {
      this.t.extraLoss = undefined;
      extra?.dispose();
    }
    if (!epoch) throw new Error(`round ${round}: the trainer finished no epoch`);
    this.rounds.push({ round, diceBefore, trainMs: now() - t0, evalMs, epoch });
    await this.save();
    const metrics: Record<string, number | undefined> = {
      loss: epoch.trainLoss,
      valLoss: epoch.valLoss,
      pseudoDice: epoch.pseudoDice,
      diceBefore,
    };
    // Only finite numbers travel (JSON has no NaN).
    return Object.fromEntries(
      Object.entries(metrics).filter(
        (e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1]),
      ),
    );
  }

  private siteLoss(): ProximalTerm | undefined {
    const c = this.config;
    if (!c || methodSpec(c.method).siteLoss !== 'proximal') return undefined;
    if (c.mu === undefined) throw new Error(`${c.method} needs μ in the federation config`);
    return new ProximalTerm(
      this.sharedNames.map((n) => this.t.net.variable(n)),
      c.mu,
    );
  }

  async finish(_global: NamedWeights, _shared: WeightSpec): Promise<void> {
    if (this.o.evaluate === false) return;
    const t0 = now();
    this.finalDice = await this.validationDice();
    this.finalEvalMs = now() - t0;
  }
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/**
 * Argmax of (K, …) logits against a label map (negative = ignore → background): the mean Dice
 * over the foreground labels present in either (NaN when none is).
 */
export function meanForegroundDice(
  logits: Float32Array,
  seg: ArrayLike<number>,
  numClasses: number,
): number {
  const vox = seg.length;
  if (logits.length !== numClasses * vox)
    throw new Error(`${logits.length} logits for ${numClasses} classes × ${vox} voxels`);
  const labels = Array.from({ length: numClasses - 1 }, (_, i) => i + 1);
  const pred = new Uint8Array(vox);
  for (let v = 0; v < vox; v++) {
    let best = 0;
    for (let k = 1; k < numClasses; k++) if (logits[k * vox + v] > logits[best * vox + v]) best = k;
    pred[v] = best;
  }
  const ref = Int16Array.from(seg, (x) => (x < 0 ? 0 : x));
  const m = computeCaseMetrics(ref, pred, labels);
  const ds = labels.map((l) => m[String(l)].Dice).filter((d) => !Number.isNaN(d));
  return ds.length ? ds.reduce((a, b) => a + b, 0) / ds.length : NaN;
}
