// nnUNetTrainer's training loop (spec §7) on preprocessed cases held in memory: per epoch PolyLR,
// `itersPerEpoch` training iterations (sample with 33% foreground oversampling → augment → DS
// targets → forward/backward → DC+CE deep-supervision loss → SGD Nesterov step), then `valIters`
// validation batches → pseudo-Dice and its EMA. Runs on whatever tfjs backend is active
// (cpu in Node, webgpu in the browser); every tensor it makes is 2-D/3-D except the model's
// own conv inputs (see src/model/ops5d.ts for why).
//
// Determinism: with the same cases, options and seed, two runs on the cpu backend give identical
// weights, and a run stopped at any iteration, checkpointed and resumed continues bit-identically
// (the random streams, momentum buffers and epoch position are in the checkpoint).
import * as tf from '@tensorflow/tfjs';
import { hardCountsFromPrediction, PseudoDiceTracker } from '../eval/pseudo-dice.ts';
import { labelInfo } from '../model/labels.ts';
import type { NamedWeights } from '../model/named-weights.ts';
import { invertPerm, permute } from '../model/named-weights.ts';
import { PlainConvUNet, ptToTfPerm } from '../model/unet.ts';
import type { PreprocessedCase } from '../preprocess/preprocess.ts';
import type { ConfigurationPlan, Plans } from '../plan/types.ts';
import { Mulberry32 } from '../util/rng.ts';
import {
  augmentBatch,
  validationBatch,
  type AugmentOptions,
  type AugmentedBatch,
} from './augment.ts';
import { deepSupervisionTargets } from './ds-targets.ts';
import {
  dcAndCeLoss,
  deepSupervisionLoss,
  deepSupervisionWeights,
  type DcCeOptions,
} from './loss.ts';
import { SGDNesterov } from './optimizer.ts';
import { GradScaler, unscaleAndCheck } from './grad-scaler.ts';
import type { Precision } from '../model/mixed-precision.ts';
import { assertNoGpuErrors } from '../model/tf-backend.ts';
import { bindingLimitProblem } from '../gpu/binding-limit.ts';
import { configureAugmentationGeometry } from './rotation-config.ts';
import { ANNOTATED_KEY, sampleBatch, type SamplerOptions, type TrainingCase } from './sampler.ts';
import { polyLR } from './schedule.ts';
import { splitCases, type CaseSplit, type SplitMode } from './split.ts';
import {
  emptyLog,
  type ResolvedTrainerOptions,
  type TrainerCheckpoint,
  type TrainingLog,
} from './train-checkpoint.ts';

/** A preprocessed training case with its identifier. */
export interface TrainerCase extends TrainingCase {
  id: string;
}

/**
 * runCase's output → the sampler's case: class_locations rows (0, z, y, x) become flat voxel
 * indices, and the ignore label's "(-1, ...)" key becomes the sampler's ANNOTATED_KEY.
 */
export function trainerCase(id: string, pre: PreprocessedCase): TrainerCase {
  const [, Z, Y, X] = pre.shape;
  const locs: Record<string, Int32Array> = {};
  for (const [key, rows] of Object.entries(pre.properties.class_locations ?? {})) {
    const flat = new Int32Array(rows.length / 4);
    for (let i = 0; i < flat.length; i++)
      flat[i] = (rows[4 * i + 1] * Y + rows[4 * i + 2]) * X + rows[4 * i + 3];
    locs[key.startsWith('(-1') ? ANNOTATED_KEY : key] = flat;
  }
  return { id, data: pre.data, seg: pre.seg, shape: [Z, Y, X], classLocations: locs };
}

export interface TrainerOptions {
  /** Total epochs: the PolyLR horizon (nnU-Net 1000). */
  epochs: number;
  /** nnU-Net 250. */
  itersPerEpoch?: number;
  /** nnU-Net 50. */
  valIters?: number;
  /** Seeds the weight init, the split and both loaders (default 0). */
  seed?: number;
  /** Default true (nnU-Net). */
  deepSupervision?: boolean;
  /** Recompute activations per stage in the backward pass: true = every stage (default false). */
  checkpointing?: boolean | { encoder: boolean[]; decoder: boolean[] };
  /** Training augmentation (spec §7.7); off: plain crops at the patch size. Default true. */
  augmentation?: boolean;
  /**
   * 'random80' (default): seeded 80:20 split of the case ids; 'all': train = val = all; or an
   * explicit split (e.g. one fold of nnU-Net's splits_final.json).
   */
  split?: SplitMode | CaseSplit;
  initialLR?: number;
  weightDecay?: number;
  momentum?: number;
  clipNorm?: number;
  oversampleForegroundPercent?: number;
  /**
   * How peak memory is measured per iteration. 'exact': tf.profile over the whole step (every
   * kernel's byte count; cheap on cpu, it times each kernel on webgpu). 'sampled': numBytes after
   * the forward pass and after the step. Default: 'exact' on cpu, 'sampled' elsewhere.
   */
  peakMemory?: 'exact' | 'sampled';
  /**
   * 'mixed': activations saved for backward are stored as fp16 (f32 compute, f32 master weights)
   * with dynamic loss scaling as nnU-Net's GradScaler; runs on webgpu (fast kernels), 3-D only,
   * else the trainer runs fp32 (see `precisionInUse`). Default 'fp32'.
   */
  precision?: Precision;
}

export interface IterationEvent {
  type: 'iteration';
  epoch: number;
  /** Index within the epoch. */
  iteration: number;
  /** Training iterations done in the whole run (this one included). */
  globalIteration: number;
  loss: number;
  lr: number;
  gradNorm: number;
  msPerIter: number;
  peakBytes: number;
  /** Mixed precision: the loss scale used for this step, and whether the step was skipped (inf/NaN). */
  lossScale?: number;
  skipped?: boolean;
}

export interface EpochEvent {
  type: 'epoch';
  epoch: number;
  lr: number;
  trainLoss: number;
  valLoss: number;
  /** Per foreground class. */
  dicePerClass: number[];
  /** nanmean of dicePerClass (nnU-Net's mean_fg_dice). */
  pseudoDice: number;
  ema: number;
  /** EMA strictly above every earlier one: nnU-Net would save checkpoint_best now. */
  isNewBest: boolean;
  msPerIter: number;
  peakBytes: number;
  seconds: number;
}

export type TrainerEvent = IterationEvent | EpochEvent;

/**
 * Pause / resume / stop for a running Trainer. Checked before every training iteration and
 * after every epoch's validation; a stop leaves the trainer in a state `checkpoint()` saves and
 * a resumed run continues exactly from.
 */
export class TrainingControl {
  private pausedFlag = false;
  private stoppedFlag = false;
  private wake: Array<() => void> = [];

  constructor(signal?: AbortSignal) {
    signal?.addEventListener('abort', () => this.stop(), { once: true });
    if (signal?.aborted) this.stoppedFlag = true;
  }

  get paused(): boolean {
    return this.pausedFlag;
  }

  get stopped(): boolean {
    return this.stoppedFlag;
  }

  pause(): void {
    this.pausedFlag = true;
  }

  resume(): void {
    this.pausedFlag = false;
    this.flush();
  }

  stop(): void {
    this.stoppedFlag = true;
    this.flush();
  }

  /** Resolves once not paused (or stopped). */
  async wait(): Promise<void> {
    while (this.pausedFlag && !this.stoppedFlag) await new Promise<void>((r) => this.wake.push(r));
  }

  private flush(): void {
    const w = this.wake;
    this.wake = [];
    w.forEach((r) => r());
  }
}

export interface TrainerSetup {
  plans: Plans;
  /** '2d', '3d_fullres' or '3d_lowres' (the cascade needs a previous stage: not supported). */
  configuration: string;
  /** dataset.json's labels (classes, ignore label). */
  datasetJson: { labels: Record<string, number | number[]> };
  cases: readonly TrainerCase[];
  options: TrainerOptions;
}

export interface RunResult {
  /** Epochs completed so far. */
  epoch: number;
  /** True when the run ended by stop() before the last epoch. */
  stopped: boolean;
}

function resolvePrecision(p: unknown): Precision {
  if (p === undefined) return 'fp32';
  if (p !== 'fp32' && p !== 'mixed') throw new Error(`precision must be fp32 or mixed, got ${p}`);
  return p;
}

function resolveOptions(o: TrainerOptions, nStages: number): ResolvedTrainerOptions {
  if (!Number.isInteger(o.epochs) || o.epochs < 1)
    throw new Error(`epochs must be a positive integer, got ${o.epochs}`);
  const it = o.itersPerEpoch ?? 250;
  const val = o.valIters ?? 50;
  if (!Number.isInteger(it) || it < 1)
    throw new Error(`itersPerEpoch must be a positive integer, got ${it}`);
  if (!Number.isInteger(val) || val < 0)
    throw new Error(`valIters must be a non-negative integer, got ${val}`);
  const ck = o.checkpointing ?? false;
  const checkpointing =
    typeof ck === 'boolean'
      ? {
          encoder: new Array<boolean>(nStages).fill(ck),
          decoder: new Array<boolean>(nStages - 1).fill(ck),
        }
      : { encoder: [...ck.encoder], decoder: [...ck.decoder] };
  return {
    epochs: o.epochs,
    itersPerEpoch: it,
    valIters: val,
    seed: o.seed ?? 0,
    deepSupervision: o.deepSupervision ?? true,
    checkpointing,
    augmentation: o.augmentation ?? true,
    split:
      typeof o.split === 'object'
        ? { train: [...o.split.train], val: [...o.split.val] }
        : (o.split ?? 'random80'),
    initialLR: o.initialLR ?? 1e-2,
    weightDecay: o.weightDecay ?? 3e-5,
    momentum: o.momentum ?? 0.99,
    clipNorm: o.clipNorm ?? 12,
    oversampleForegroundPercent: o.oversampleForegroundPercent ?? 0.33,
    precision: resolvePrecision(o.precision),
  };
}

/** (B, C, N) → (B, N, C): the model is channels-last. A no-op view for one channel. */
function toChannelsLast(src: Float32Array, b: number, c: number, n: number): Float32Array {
  if (c === 1) return src;
  const out = new Float32Array(src.length);
  for (let i = 0; i < b; i++)
    for (let ch = 0; ch < c; ch++) {
      const s = (i * c + ch) * n;
      for (let v = 0; v < n; v++) out[(i * n + v) * c + ch] = src[s + v];
    }
  return out;
}

function configurationPlan(plans: Plans, name: string): ConfigurationPlan {
  const c = (plans.configurations as Record<string, unknown>)[name] as
    (ConfigurationPlan & { inherits_from?: string }) | undefined;
  if (!c)
    throw new Error(
      `plans have no configuration '${name}' (have: ${Object.keys(plans.configurations).join(', ')})`,
    );
  if (c.inherits_from || !('architecture' in c))
    throw new Error(`configuration '${name}' is a cascade stage: not supported`);
  return c;
}

const mean = (v: readonly number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);

export class Trainer {
  readonly plans: Plans;
  readonly configurationName: string;
  readonly config: ConfigurationPlan;
  readonly datasetJson: { labels: Record<string, number | number[]> };
  readonly options: ResolvedTrainerOptions;
  readonly net: PlainConvUNet;
  readonly numClasses: number;
  readonly ignoreLabel: number | null;
  readonly trainIds: string[];
  readonly valIds: string[];
  private readonly trainCases: TrainerCase[];
  private readonly valCases: TrainerCase[];
  private readonly opt: SGDNesterov;
  private readonly trainRng: Mulberry32;
  private readonly valRng: Mulberry32;
  private tracker: PseudoDiceTracker;
  private readonly dims: number;
  private readonly patch: number[];
  private readonly aug: AugmentOptions;
  private readonly trainSampler: SamplerOptions;
  private readonly valSampler: SamplerOptions;
  private readonly lossOpts: DcCeOptions;
  private readonly peakMode: 'exact' | 'sampled';
  /** Set when the net runs in mixed precision. */
  private readonly scaler: GradScaler | null;
  private epochNow = 0;
  private iterInEpoch = 0;
  private partialLossSum = 0;
  private epochPeak = 0;
  private epochMs = 0;
  private epochStart = 0;
  private running = false;
  log: TrainingLog = emptyLog();
  /**
   * A term added to every training step's loss, differentiated with it (a federation method's
   * site-side loss, e.g. FedProx's proximal term; see fed/methods.ts). Not in validation losses.
   */
  extraLoss?: () => tf.Scalar;

  constructor(setup: TrainerSetup) {
    this.plans = setup.plans;
    this.configurationName = setup.configuration;
    this.config = configurationPlan(setup.plans, setup.configuration);
    this.datasetJson = { labels: { ...setup.datasetJson.labels } };
    const k = this.config.architecture.arch_kwargs;
    this.options = resolveOptions(setup.options, k.n_stages);
    const o = this.options;
    const labels = labelInfo(setup.datasetJson);
    if (labels.hasRegions) throw new Error('region-based training is not supported yet');
    const numClasses = labels.numSegmentationHeads;
    this.numClasses = numClasses;
    const ignoreLabel = labels.ignoreLabel ?? null;
    this.ignoreLabel = ignoreLabel;

    const byId = new Map(setup.cases.map((c) => [c.id, c]));
    if (byId.size !== setup.cases.length) throw new Error('case ids are not unique');
    const split =
      typeof o.split === 'string' ? splitCases([...byId.keys()], o.split, 12345 + o.seed) : o.split;
    const unknown = [...split.train, ...split.val].filter((id) => !byId.has(id));
    if (unknown.length)
      throw new Error(`split names unknown case(s): ${unknown.slice(0, 5).join(', ')}`);
    if (split.train.length === 0 || split.val.length === 0)
      throw new Error('the split needs at least one training and one validation case');
    this.trainIds = split.train;
    this.valIds = split.val;
    this.trainCases = split.train.map((id) => byId.get(id)!);
    this.valCases = split.val.map((id) => byId.get(id)!);
    const channels = this.trainCases[0].data.length / this.trainCases[0].seg.length;
    for (const c of setup.cases) {
      if (c.data.length !== channels * c.seg.length)
        throw new Error(
          `case ${c.id}: ${c.data.length / c.seg.length} channels, expected ${channels}`,
        );
    }

    // On WebGPU, a tensor over the adapter's binding limit would fail inside a dispatch.
    const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
    if (tf.getBackend() === 'webgpu' && device) {
      const problem = bindingLimitProblem(
        this.config,
        this.config.batch_size,
        channels,
        numClasses,
        device.limits,
      );
      if (problem) throw new Error(problem);
    }
    this.net = PlainConvUNet.fromPlan(this.config, channels, numClasses, {
      seed: o.seed,
      deepSupervision: o.deepSupervision,
      checkpointEncoder: o.checkpointing.encoder,
      checkpointDecoder: o.checkpointing.decoder,
      precision: o.precision,
    });
    this.scaler = this.net.precisionInUse === 'mixed' ? new GradScaler() : null;
    const params = new Map(this.net.specs.map((s) => [s.name, this.net.variable(s.name)]));
    this.opt = new SGDNesterov(tf, params, {
      lr: o.initialLR,
      momentum: o.momentum,
      weightDecay: o.weightDecay,
      clipNorm: o.clipNorm,
    });
    this.trainRng = new Mulberry32(o.seed * 2 + 1);
    this.valRng = new Mulberry32(o.seed * 2 + 2);
    this.tracker = new PseudoDiceTracker();

    this.patch = [...this.config.patch_size];
    this.dims = this.patch.length;
    const geo = configureAugmentationGeometry(this.patch);
    this.aug = {
      patchSize: this.patch,
      rotation: geo.rotation,
      dummy2d: geo.dummy2d,
      mirrorAxes: geo.mirrorAxes,
      useMaskForNorm: this.config.use_mask_for_norm,
    };
    const hasIgnoreLabel = ignoreLabel !== null;
    this.trainSampler = {
      batchSize: this.config.batch_size,
      patchSize: this.patch,
      initialPatchSize: o.augmentation ? geo.initialPatchSize : this.patch,
      oversampleForegroundPercent: o.oversampleForegroundPercent,
      hasIgnoreLabel,
    };
    this.valSampler = { ...this.trainSampler, initialPatchSize: this.patch };
    this.lossOpts = { batchDice: this.config.batch_dice, ignoreLabel };
    this.peakMode = setup.options.peakMemory ?? (tf.getBackend() === 'cpu' ? 'exact' : 'sampled');
  }

  /** Rebuilds a trainer from a checkpoint and the same preprocessed cases (ids must match the split). */
  static fromCheckpoint(
    ck: TrainerCheckpoint,
    cases: readonly TrainerCase[],
    overrides: Pick<TrainerOptions, 'peakMemory'> = {},
  ): Trainer {
    const ids = new Set(cases.map((c) => c.id));
    const missing = [...ck.split.train, ...ck.split.val].filter((id) => !ids.has(id));
    if (missing.length)
      throw new Error(
        `checkpoint needs case(s) ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
      );
    const wanted = new Set([...ck.split.train, ...ck.split.val]);
    const t = new Trainer({
      plans: ck.plans,
      configuration: ck.configuration,
      datasetJson: ck.datasetJson,
      cases: cases.filter((c) => wanted.has(c.id)),
      options: { ...ck.options, ...overrides },
    });
    if (
      t.trainIds.join('\n') !== ck.split.train.join('\n') ||
      t.valIds.join('\n') !== ck.split.val.join('\n')
    ) {
      t.dispose();
      throw new Error("the cases given do not reproduce the checkpoint's train/val split");
    }
    t.net.loadNamedWeights(ck.weights);
    const mom = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, w] of ck.momentum) {
      const p = permute(w.data, w.shape, ptToTfPerm(w.shape.length));
      mom.set(name, { shape: p.shape, data: p.data });
    }
    t.opt.loadState(mom);
    t.epochNow = ck.epoch;
    t.iterInEpoch = ck.iterationInEpoch;
    t.partialLossSum = ck.partialLossSum;
    t.trainRng.state = ck.rng.train >>> 0;
    t.valRng.state = ck.rng.val >>> 0;
    t.log = structuredClone(ck.log);
    if (t.scaler && ck.gradScaler) t.scaler.state = ck.gradScaler;
    t.tracker = new PseudoDiceTracker({ emas: t.log.ema_fg_dice, best: ck.bestEma });
    return t;
  }

  get epoch(): number {
    return this.epochNow;
  }

  get iterationInEpoch(): number {
    return this.iterInEpoch;
  }

  get finished(): boolean {
    return this.epochNow >= this.options.epochs;
  }

  /** Axes training mirrors: nnU-Net's inference_allowed_mirroring_axes. */
  get mirrorAxes(): number[] {
    return [...this.aug.mirrorAxes];
  }

  /** 'mixed' only when asked for and available (webgpu with the fast kernels, 3-D). */
  get precisionInUse(): Precision {
    return this.scaler ? 'mixed' : 'fp32';
  }

  /** The dynamic loss scale (mixed precision), else null. */
  get lossScale(): number | null {
    return this.scaler?.scale ?? null;
  }

  get bestEma(): number | null {
    return this.tracker.best;
  }

  /** The state of the run now (between iterations), weights and momentum in PyTorch layout. */
  async checkpoint(): Promise<TrainerCheckpoint> {
    const weights = await this.net.namedWeights();
    const momentum: NamedWeights = new Map();
    const spec = new Map(this.net.specs.map((s) => [s.name, s]));
    for (const [name, b] of await this.opt.state()) {
      const pt = spec.get(name)!.shape;
      const back = permute(b.data, b.shape, invertPerm(ptToTfPerm(pt.length)));
      momentum.set(name, { shape: back.shape, data: back.data });
    }
    return {
      weights,
      momentum,
      epoch: this.epochNow,
      iterationInEpoch: this.iterInEpoch,
      partialLossSum: this.partialLossSum,
      bestEma: this.tracker.best,
      rng: { train: this.trainRng.state, val: this.valRng.state },
      plans: this.plans,
      configuration: this.configurationName,
      datasetJson: this.datasetJson,
      options: this.options,
      split: { train: [...this.trainIds], val: [...this.valIds] },
      log: structuredClone(this.log),
      ...(this.scaler ? { gradScaler: this.scaler.state } : {}),
    };
  }

  /**
   * Trains until the last epoch or a stop. Resolves with the epochs completed. Events are
   * delivered between iterations and awaited (a handler may save a checkpoint, or call
   * control.stop()).
   */
  async run(
    opts: { control?: TrainingControl; onEvent?: (e: TrainerEvent) => void | Promise<void> } = {},
  ): Promise<RunResult> {
    if (this.running) throw new Error('this trainer is already running');
    this.running = true;
    const { control, onEvent } = opts;
    const o = this.options;
    try {
      while (this.epochNow < o.epochs) {
        const lr = polyLR(this.epochNow, o.epochs, o.initialLR);
        this.opt.lr = lr;
        if (this.iterInEpoch === 0) {
          this.epochPeak = 0;
          this.epochMs = 0;
          this.epochStart = Date.now();
        }
        while (this.iterInEpoch < o.itersPerEpoch) {
          await control?.wait();
          if (control?.stopped) return { epoch: this.epochNow, stopped: true };
          const r = await this.trainStep();
          this.partialLossSum += r.loss;
          this.epochPeak = Math.max(this.epochPeak, r.peakBytes);
          this.epochMs += r.ms;
          this.iterInEpoch++;
          await onEvent?.({
            type: 'iteration',
            epoch: this.epochNow,
            iteration: this.iterInEpoch - 1,
            globalIteration: this.epochNow * o.itersPerEpoch + this.iterInEpoch,
            loss: r.loss,
            lr,
            gradNorm: r.gradNorm,
            msPerIter: r.ms,
            peakBytes: r.peakBytes,
            ...(r.lossScale !== undefined ? { lossScale: r.lossScale, skipped: r.skipped } : {}),
          });
        }
        const ev = await this.validateEpoch(lr);
        await onEvent?.(ev);
        await control?.wait();
        if (control?.stopped && this.epochNow < o.epochs)
          return { epoch: this.epochNow, stopped: true };
      }
      return { epoch: this.epochNow, stopped: false };
    } finally {
      this.running = false;
    }
  }

  /** Labels (B, 1, ...patch) → one int32 [B, N] tensor per deep-supervision output. */
  private targetTensors(batch: AugmentedBatch): tf.Tensor[] {
    const b = batch.batchSize;
    const strides = this.config.architecture.arch_kwargs.strides;
    const ts = this.options.deepSupervision
      ? deepSupervisionTargets(batch.seg, b, batch.patchShape, strides)
      : [{ seg: batch.seg, shape: batch.patchShape }];
    return ts.map((t) => tf.tensor2d(Int32Array.from(t.seg), [b, t.seg.length / b], 'int32'));
  }

  private inputTensor(batch: AugmentedBatch): tf.Tensor {
    const n = batch.data.length / (batch.batchSize * batch.channels);
    const x = toChannelsLast(batch.data, batch.batchSize, batch.channels, n);
    return tf.tensor(x, [batch.batchSize, ...batch.patchShape, batch.channels], 'float32');
  }

  private lossOf(outs: tf.Tensor[], ys: tf.Tensor[]): tf.Scalar {
    const w = this.options.deepSupervision ? deepSupervisionWeights(outs.length) : [1];
    return deepSupervisionLoss(outs, ys, (p, t) => dcAndCeLoss(p, t, this.lossOpts), w);
  }

  private async trainStep(): Promise<{
    loss: number;
    gradNorm: number;
    ms: number;
    peakBytes: number;
    lossScale?: number;
    skipped?: boolean;
  }> {
    const t0 = performance.now();
    const raw = sampleBatch(this.trainCases, this.trainSampler, this.trainRng.next);
    const batch = this.options.augmentation
      ? augmentBatch(raw, this.aug, this.trainRng.next)
      : validationBatch(raw, this.dims);
    const x = this.inputTensor(batch);
    const ys = this.targetTensors(batch);
    let sampledPeak = 0;
    let normT: tf.Scalar | undefined;
    const scaler = this.scaler;
    const scale = scaler?.scale;
    let skipped = false;
    const step = async (): Promise<tf.Scalar> => {
      const { value, grads } = tf.variableGrads(() => {
        const l = this.lossOf(this.net.forward(x), ys);
        sampledPeak = Math.max(sampledPeak, tf.memory().numBytes);
        const total = this.extraLoss ? (tf.add(l, this.extraLoss()) as tf.Scalar) : l;
        // GradScaler.scale(loss): gradients come out multiplied by the scale.
        return scale !== undefined ? tf.mul(total, scale) : total;
      }, this.net.variables);
      // A parameter the loss does not reach (the lowest-resolution seg head, whose deep-supervision
      // weight is 0) has no gradient: as in PyTorch (grad None), SGD leaves it and its momentum alone.
      let byName = new Map<string, tf.Tensor>();
      for (const s of this.net.specs) {
        const g = grads[this.net.variable(s.name).name] as tf.Tensor | null | undefined;
        if (g) byName.set(s.name, g);
      }
      sampledPeak = Math.max(sampledPeak, tf.memory().numBytes);
      let loss = value;
      if (scaler) {
        // nnU-Net: unscale_, then clip (inside the optimizer step), then step unless inf/NaN.
        const inv = scaler.invScale;
        const u = unscaleAndCheck(tf, byName, inv);
        byName = u.grads;
        const finite = Number.isFinite((await u.probe.data())[0]);
        u.probe.dispose();
        skipped = !scaler.update(!finite);
        loss = tf.mul(value, inv);
        value.dispose();
      }
      if (!skipped) normT = this.opt.step(byName);
      Object.values(grads).forEach((g) => g?.dispose());
      if (scaler) byName.forEach((g) => g.dispose());
      return loss;
    };
    let value: tf.Scalar;
    let peakBytes: number;
    if (this.peakMode === 'exact') {
      const prof = await tf.profile(() => step());
      value = prof.result as tf.Scalar;
      peakBytes = Math.max(prof.peakBytes, sampledPeak);
    } else {
      value = await step();
      peakBytes = sampledPeak;
    }
    const loss = (await value.data())[0];
    value.dispose();
    x.dispose();
    ys.forEach((y) => y.dispose());
    // A skipped step (inf/NaN gradients under loss scaling) is expected now and then: no norm.
    const gradNorm = normT ? await SGDNesterov.checkNorm(normT) : NaN;
    // An invalid WebGPU pipeline drops its command buffer without throwing: stop instead of
    // training on silently wrong numbers.
    assertNoGpuErrors();
    const ms = performance.now() - t0;
    return scaler
      ? { loss, gradNorm, ms, peakBytes, lossScale: scale, skipped }
      : { loss, gradNorm, ms, peakBytes };
  }

  private async validateEpoch(lr: number): Promise<EpochEvent> {
    const o = this.options;
    const losses: number[] = [];
    for (let i = 0; i < o.valIters; i++) {
      const batch = validationBatch(
        sampleBatch(this.valCases, this.valSampler, this.valRng.next),
        this.dims,
      );
      const x = this.inputTensor(batch);
      const ys = this.targetTensors(batch);
      const [loss, pred] = tf.tidy(() => {
        const outs = this.net.forward(x);
        const full = outs[0];
        const k = full.shape[full.rank - 1];
        return [this.lossOf(outs, ys), tf.argMax(tf.reshape(full, [full.size / k, k]), 1)];
      });
      losses.push((await loss.data())[0]);
      const p = (await pred.data()) as Int32Array;
      this.tracker.add(hardCountsFromPrediction(p, batch.seg, this.numClasses, this.ignoreLabel));
      [x, ...ys, loss, pred].forEach((t) => t.dispose());
    }
    const res =
      o.valIters > 0
        ? this.tracker.endEpoch()
        : { dicePerClass: [], meanFgDice: NaN, ema: NaN, isNewBest: false };
    const trainLoss = this.partialLossSum / o.itersPerEpoch;
    const msPerIter = this.epochMs / o.itersPerEpoch;
    const L = this.log;
    L.train_losses.push(trainLoss);
    L.val_losses.push(mean(losses));
    L.mean_fg_dice.push(res.meanFgDice);
    L.ema_fg_dice.push(res.ema);
    L.dice_per_class_or_region.push(res.dicePerClass);
    L.lrs.push(lr);
    L.epoch_start_timestamps.push(this.epochStart / 1000);
    L.epoch_end_timestamps.push(Date.now() / 1000);
    L.ms_per_iter.push(msPerIter);
    L.peak_bytes.push(this.epochPeak);
    const ev: EpochEvent = {
      type: 'epoch',
      epoch: this.epochNow,
      lr,
      trainLoss,
      valLoss: mean(losses),
      dicePerClass: res.dicePerClass,
      pseudoDice: res.meanFgDice,
      ema: res.ema,
      isNewBest: res.isNewBest,
      msPerIter,
      peakBytes: this.epochPeak,
      seconds: (Date.now() - this.epochStart) / 1000,
    };
    this.epochNow++;
    this.iterInEpoch = 0;
    this.partialLossSum = 0;
    return ev;
  }

  /**
   * Full-resolution logits, channels-first in and out: `n` inputs (n, C, ...spatial) →
   * (n, K, ...spatial). `spatial` defaults to the patch (sliding-window tiles); any shape the
   * strides divide works (e.g. a whole small volume). Deep-supervision heads are skipped.
   */
  async predictLogits(
    data: Float32Array,
    n: number,
    spatial: readonly number[] = this.patch,
  ): Promise<Float32Array> {
    const vox = spatial.reduce((a, b) => a * b, 1);
    if (data.length !== n * this.net.arch.inputChannels * vox)
      throw new Error(
        `predictLogits: ${data.length} values for ${n} × [${spatial}] × ${this.net.arch.inputChannels} channels`,
      );
    return this.net.predictLogits(data, n, spatial);
  }

  dispose(): void {
    this.opt.dispose();
    this.net.dispose();
  }
}
