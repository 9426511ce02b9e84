// nnU-Net's PlainConvUNet (dynamic-network-architectures, spec §6) as explicit tfjs variables
// and a functional forward, channels-last, for 2-D (NHWC) and 3-D (NDHWC) configurations. An arch
// with `residual` builds ResidualEncoderUNet instead: stem conv block, BasicBlockD stages (conv1
// strided + norm + act, conv2 + norm, skip = avg-pool when strided then 1×1 conv + norm when the
// channels change, sum, act), the same decoder.
// Tensors are 4-/5-D only around the convs; bias, norm, activation, concat and the 1×1 seg
// heads run on rank-safe views (see ops5d.ts).
import * as tf from '@tensorflow/tfjs';
import {
  archFromPlan,
  paramSpecs,
  residualSkip,
  validateArch,
  type ParamSpec,
  type PlanConfigurationLike,
  type UNetArch,
} from './arch.ts';
import { checkpoint } from './checkpoint.ts';
import { convNd, convTransposeNd } from './conv.ts';
import { initParam, normalSampler } from './init.ts';
import { invertPerm, permute, sameShape, type NamedWeights } from './named-weights.ts';
import { prod } from '../util/numeric.ts';
import { biasAdd, biasNormAct, concatChannels, leakyRelu } from './ops5d.ts';
import {
  mixedAddAct,
  mixedConcat,
  mixedLinear,
  mixedConvNormAct,
  mixedPrecisionProblem,
  mixedRecompute,
  type Precision,
} from './mixed-precision.ts';

export interface UNetOptions {
  /** Seed of the He-normal init (default 0). */
  seed?: number;
  /** Return every decoder level's logits (training) or only the full-resolution map. */
  deepSupervision?: boolean;
  /** Per encoder stage: recompute its activations in the backward pass. */
  checkpointEncoder?: boolean[];
  /** Per decoder level (PyTorch order, 0 = next to the bottleneck). */
  checkpointDecoder?: boolean[];
  /**
   * 'mixed': conv blocks keep their saved activations as fp16 and each stage frees its f32
   * intermediates as soon as it ends (mixed-precision.ts). Runs where mixedPrecisionProblem()
   * is null (webgpu with the fast kernels, 3-D); elsewhere the net runs in fp32 (see
   * `precisionInUse`). Default 'fp32'.
   */
  precision?: Precision;
}

/** Axis permutation PyTorch [a, b, ...k] → tfjs [...k, b, a] (conv and ConvTranspose alike). */
export function ptToTfPerm(rank: number): number[] {
  if (rank === 1) return [0];
  return [...Array.from({ length: rank - 2 }, (_, i) => i + 2), 1, 0];
}

let instances = 0;

export class PlainConvUNet {
  readonly arch: UNetArch;
  readonly specs: readonly ParamSpec[];
  deepSupervision: boolean;
  checkpointEncoder: boolean[];
  checkpointDecoder: boolean[];
  precision: Precision;
  private readonly vars = new Map<string, tf.Variable>();

  static fromPlan(
    config: PlanConfigurationLike,
    inputChannels: number,
    numClasses: number,
    opts: UNetOptions = {},
  ): PlainConvUNet {
    return new PlainConvUNet(archFromPlan(config, inputChannels, numClasses), opts);
  }

  constructor(arch: UNetArch, opts: UNetOptions = {}) {
    validateArch(arch);
    this.arch = arch;
    this.specs = paramSpecs(arch);
    this.deepSupervision = opts.deepSupervision ?? true;
    this.checkpointEncoder = opts.checkpointEncoder ?? new Array<boolean>(arch.nStages).fill(false);
    this.checkpointDecoder =
      opts.checkpointDecoder ?? new Array<boolean>(arch.nStages - 1).fill(false);
    this.precision = opts.precision ?? 'fp32';
    const next = normalSampler(opts.seed ?? 0);
    // tfjs variable names are global to the engine; a per-instance prefix keeps them unique.
    const prefix = `unet${instances++}/`;
    for (const spec of this.specs) {
      const pt = initParam(spec, next);
      const t = this.toTf(spec, pt);
      this.vars.set(spec.name, tf.variable(t, true, prefix + spec.name));
      t.dispose();
    }
  }

  /** Trainable variables in state_dict order. */
  get variables(): tf.Variable[] {
    return this.specs.map((s) => this.vars.get(s.name)!);
  }

  variable(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) throw new Error(`no parameter '${name}'`);
    return v;
  }

  parameterCount(): number {
    return this.specs.reduce((n, s) => n + prod(s.shape), 0);
  }

  private toTf(spec: ParamSpec, data: Float32Array): tf.Tensor {
    const p = permute(data, spec.shape, ptToTfPerm(spec.shape.length));
    return tf.tensor(p.data, p.shape, 'float32');
  }

  /** Weights in PyTorch names, shapes and layout (async: webgpu cannot read back synchronously). */
  async namedWeights(): Promise<NamedWeights> {
    const out: NamedWeights = new Map();
    for (const spec of this.specs) {
      const v = this.vars.get(spec.name)!;
      const data = (await v.data()) as Float32Array;
      const back = permute(data, v.shape, invertPerm(ptToTfPerm(spec.shape.length)));
      out.set(spec.name, { shape: [...spec.shape], data: back.data });
    }
    return out;
  }

  /**
   * Assigns weights given in PyTorch layout. strict: every parameter must be present with its
   * shape and no unknown name may appear. Non-strict (AsymFedAvg): loads the entries whose name
   * and shape match and ignores the rest. Returns the names loaded.
   */
  loadNamedWeights(weights: NamedWeights, opts: { strict?: boolean } = {}): string[] {
    const strict = opts.strict ?? true;
    const specByName = new Map(this.specs.map((s) => [s.name, s]));
    if (strict) {
      for (const name of weights.keys()) {
        if (!specByName.has(name)) throw new Error(`unexpected parameter '${name}'`);
      }
    }
    const todo: Array<[ParamSpec, Float32Array]> = [];
    for (const spec of this.specs) {
      const w = weights.get(spec.name);
      const ok =
        w !== undefined && sameShape(w.shape, spec.shape) && w.data.length === prod(spec.shape);
      if (!ok) {
        if (strict) {
          throw new Error(
            w ? `shape of '${spec.name}': ${w.shape} vs ${spec.shape}` : `missing '${spec.name}'`,
          );
        }
        continue;
      }
      todo.push([spec, w.data]);
    }
    for (const [spec, data] of todo) {
      const t = this.toTf(spec, data);
      this.vars.get(spec.name)!.assign(t);
      t.dispose();
    }
    return todo.map(([s]) => s.name);
  }

  /**
   * Full-resolution logits, channels-first in and out (the layout of sliding-window tiles): the
   * first n·C·∏spatial values of `data`, (n, C, ...spatial) → (n, K, ...spatial). Any spatial shape
   * the strides divide works (a tile or a whole small volume). Deep supervision is off for the call.
   * The one forward used by inference (infer/predictor.ts) and the trainer's validation.
   */
  async predictLogits(
    data: Float32Array,
    n: number,
    spatial: readonly number[],
  ): Promise<Float32Array> {
    const C = this.arch.inputChannels;
    const need = n * C * spatial.reduce((a, b) => a * b, 1);
    if (!(n >= 1) || data.length < need)
      throw new Error(
        `predictLogits: ${data.length} values, need ${n} × ${C} channels × [${spatial}]`,
      );
    const r = spatial.length + 2;
    const src = data.length === need ? data : data.subarray(0, need);
    // One channel: channels-first and channels-last are the same buffer.
    const x =
      C === 1
        ? { data: src, shape: [n, ...spatial, 1] }
        : permute(src, [n, C, ...spatial], [0, ...spatial.map((_, i) => i + 2), 1]);
    const ds = this.deepSupervision;
    this.deepSupervision = false;
    let y: tf.Tensor;
    try {
      y = tf.tidy(() => this.forward(tf.tensor(x.data, x.shape, 'float32'))[0]);
    } finally {
      this.deepSupervision = ds;
    }
    const out = (await y.data()) as Float32Array;
    const shape = y.shape;
    y.dispose();
    return permute(out, shape, [0, r - 1, ...spatial.map((_, i) => i + 1)]).data;
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }

  private blockNames(prefix: string): string[] {
    const names = [`${prefix}.conv.weight`];
    if (this.arch.convBias) names.push(`${prefix}.conv.bias`);
    names.push(`${prefix}.norm.weight`, `${prefix}.norm.bias`);
    return names;
  }

  /** The precision the next forward runs in: 'mixed' only where it is available. */
  get precisionInUse(): Precision {
    return this.precision === 'mixed' && mixedPrecisionProblem(this.arch.dims) === null
      ? 'mixed'
      : 'fp32';
  }

  /** Conv → (bias) → InstanceNorm → LeakyReLU(alpha); alpha 1 = norm only. */
  private convNormAct(
    x: tf.Tensor,
    w: tf.Tensor,
    bias: tf.Tensor | null,
    gamma: tf.Tensor,
    beta: tf.Tensor,
    kernel: number[],
    stride: number[],
    alpha: number,
  ): tf.Tensor {
    const eps = this.arch.normEps;
    if (this.precisionInUse === 'mixed')
      return mixedConvNormAct(x, w, bias, gamma, beta, kernel, stride, eps, alpha);
    return biasNormAct(convNd(x, w, kernel, stride), bias, gamma, beta, eps, alpha);
  }

  /** Conv → (bias) → InstanceNorm → LeakyReLU, params in blockNames order. */
  private block(x: tf.Tensor, p: tf.Tensor[], kernel: number[], stride: number[]): tf.Tensor {
    const a = this.arch;
    const [w, ...rest] = p;
    const bias = a.convBias ? rest[0] : null;
    const [gamma, beta] = a.convBias ? rest.slice(1) : rest;
    return this.convNormAct(x, w, bias, gamma, beta, kernel, stride, a.negativeSlope);
  }

  private runStage(
    fn: (xs: tf.Tensor[]) => tf.Tensor,
    inputs: tf.Tensor[],
    ckpt: boolean,
  ): tf.Tensor {
    if (this.precisionInUse !== 'mixed') return ckpt ? checkpoint(fn, inputs) : fn(inputs);
    // Mixed: a stage's f32 intermediates (block outputs inside the stage) are freed when the
    // stage ends; backward needs only the fp16 copies the blocks saved. Checkpointed, not even
    // those: the stage's inputs, kept in f32 and freed by its backward, from which the stage
    // re-runs. fp16 inputs were measured too: re-running a stage from rounded inputs perturbs
    // every activation in it (InstanceNorm's statistics, LeakyReLU's sides), and the gradients
    // moved ~100× further from fp32 (rel. L2 3e-2 vs 2.4e-4 on the gradient-check net) for a
    // few MiB — the skips, which the forward keeps in f32 anyway.
    const f = (xs: tf.Tensor[]) => tf.tidy(() => fn(xs));
    return ckpt ? mixedRecompute(f, inputs, 0) : f(inputs);
  }

  /** BasicBlockD's skip: avg-pool (kernel = stride) when strided, 1×1 conv + norm when projecting. */
  private residualSkip(x: tf.Tensor, p: tf.Tensor[], s: number, b: number): tf.Tensor {
    const a = this.arch;
    const { pool, project } = residualSkip(a, s, b);
    let h = x;
    if (pool) {
      const st = a.strides[s];
      const avg = (t: tf.Tensor) =>
        a.dims === 3
          ? tf.avgPool3d(
              t as tf.Tensor5D,
              st as [number, number, number],
              st as [number, number, number],
              'valid',
            )
          : tf.avgPool(t as tf.Tensor4D, st as [number, number], st as [number, number], 'valid');
      // Mixed: the pool's gradient needs only x's shape, so nothing of x is kept for it.
      h = this.precisionInUse === 'mixed' ? mixedLinear(avg, h) : avg(h);
    }
    if (project) {
      const ones = new Array<number>(a.dims).fill(1);
      // norm without activation: LeakyReLU with slope 1 is the identity
      h = this.convNormAct(h, p[0], null, p[1], p[2], ones, ones, 1);
    }
    return h;
  }

  /** Parameter names of BasicBlockD `b` of stage `s`: conv1, conv2, skip projection (if any). */
  private residualBlockNames(s: number, b: number): string[][] {
    const p = `encoder.stages.${s}.blocks.${b}`;
    const { pool, project } = residualSkip(this.arch, s, b);
    const skip = project
      ? [`${p}.skip.${pool ? 1 : 0}.conv.weight`, `${p}.skip.${pool ? 1 : 0}.norm.weight`]
      : [];
    if (project) skip.push(`${p}.skip.${pool ? 1 : 0}.norm.bias`);
    return [this.blockNames(`${p}.conv1`), this.blockNames(`${p}.conv2`), skip];
  }

  private residualEncoderStage(s: number, x: tf.Tensor): tf.Tensor {
    const a = this.arch;
    const nb = a.residual!.nBlocksPerStage[s];
    const names: string[][][] = [];
    for (let b = 0; b < nb; b++) names.push(this.residualBlockNames(s, b));
    const params = names.flat(2).map((n) => this.vars.get(n)! as tf.Tensor);
    const ones = new Array<number>(a.dims).fill(1);
    const k = a.kernelSizes[s];
    const fn = (xs: tf.Tensor[]): tf.Tensor => {
      let h = xs[0];
      let off = 1;
      const take = (m: number) => xs.slice(off, (off += m));
      for (let b = 0; b < nb; b++) {
        const [n1, n2, nSkip] = names[b];
        const p1 = take(n1.length);
        const p2 = take(n2.length);
        const pSkip = take(nSkip.length);
        const residual = this.residualSkip(h, pSkip, s, b);
        const y1 = this.block(h, p1, k, b === 0 ? a.strides[s] : ones);
        // conv2: conv → bias → norm, no activation (slope 1), then the sum and the activation
        const [w2, ...rest2] = p2;
        const bias2 = a.convBias ? rest2[0] : null;
        const [g2, be2] = a.convBias ? rest2.slice(1) : rest2;
        const y2 = this.convNormAct(y1, w2, bias2, g2, be2, k, ones, 1);
        if (this.precisionInUse === 'mixed') {
          // one op that keeps only an fp16 copy of its output (mixed-precision.ts)
          h = mixedAddAct(y2, residual, a.negativeSlope);
          continue;
        }
        // the sum on flat views (rank-safe on every backend), then the activation
        const sum = tf.reshape(tf.add(tf.reshape(y2, [-1]), tf.reshape(residual, [-1])), y2.shape);
        h = leakyRelu(sum, a.negativeSlope);
      }
      return h;
    };
    return this.runStage(fn, [x, ...params], this.checkpointEncoder[s] ?? false);
  }

  private stem(x: tf.Tensor): tf.Tensor {
    const a = this.arch;
    const p = this.blockNames('encoder.stem.convs.0').map((n) => this.vars.get(n)! as tf.Tensor);
    return this.block(x, p, a.kernelSizes[0], new Array<number>(a.dims).fill(1));
  }

  private encoderStage(s: number, x: tf.Tensor): tf.Tensor {
    const a = this.arch;
    if (a.residual) return this.residualEncoderStage(s, x);
    const names: string[][] = [];
    for (let c = 0; c < a.nConvPerStage[s]; c++)
      names.push(this.blockNames(`encoder.stages.${s}.0.convs.${c}`));
    const params = names.flat().map((n) => this.vars.get(n)! as tf.Tensor);
    const ones = new Array<number>(a.dims).fill(1);
    const fn = (xs: tf.Tensor[]): tf.Tensor => {
      let h = xs[0];
      let off = 1;
      for (let c = 0; c < names.length; c++) {
        const p = xs.slice(off, off + names[c].length);
        off += names[c].length;
        h = this.block(h, p, a.kernelSizes[s], c === 0 ? a.strides[s] : ones);
      }
      return h;
    };
    return this.runStage(fn, [x, ...params], this.checkpointEncoder[s] ?? false);
  }

  private decoderStage(j: number, lres: tf.Tensor, skip: tf.Tensor): tf.Tensor {
    const a = this.arch;
    const n = a.nStages;
    const tNames = [`decoder.transpconvs.${j}.weight`];
    if (a.convBias) tNames.push(`decoder.transpconvs.${j}.bias`);
    const names: string[][] = [];
    for (let c = 0; c < a.nConvPerStageDecoder[j]; c++)
      names.push(this.blockNames(`decoder.stages.${j}.convs.${c}`));
    const params = [...tNames, ...names.flat()].map((nm) => this.vars.get(nm)! as tf.Tensor);
    const ones = new Array<number>(a.dims).fill(1);
    const kernel = a.kernelSizes[n - 2 - j];
    const stride = a.strides[n - 1 - j];
    const upsample = (ts: tf.Tensor[]): tf.Tensor => {
      const up = convTransposeNd(ts[0], ts[1], stride);
      return a.convBias ? biasAdd(up, ts[2]) : up;
    };
    const nT = tNames.length;
    const fn = (xs: tf.Tensor[]): tf.Tensor => {
      const [low, sk] = xs;
      const tp = xs.slice(2, 2 + nT);
      let off = 2 + nT;
      // upsampled first, then the skip (as torch.cat)
      let h =
        this.precisionInUse === 'mixed'
          ? mixedConcat(mixedRecompute(upsample, [low, ...tp], 1), sk)
          : concatChannels(upsample([low, ...tp]), sk);
      for (let c = 0; c < names.length; c++) {
        const p = xs.slice(off, off + names[c].length);
        off += names[c].length;
        h = this.block(h, p, kernel, ones);
      }
      return h;
    };
    return this.runStage(fn, [lres, skip, ...params], this.checkpointDecoder[j] ?? false);
  }

  /** 1×1 seg head as a matMul on the [B·N, F] view. */
  private segHead(j: number, h: tf.Tensor): tf.Tensor {
    const f = h.shape[h.rank - 1];
    const k = this.arch.numClasses;
    const head = ([hh, ww, b]: tf.Tensor[]): tf.Tensor => {
      const y = tf.add(tf.matMul(tf.reshape(hh, [hh.size / f, f]), tf.reshape(ww, [f, k])), b);
      return tf.reshape(y, [...hh.shape.slice(0, -1), k]);
    };
    const inputs = [
      h,
      this.vars.get(`decoder.seg_layers.${j}.weight`)!,
      this.vars.get(`decoder.seg_layers.${j}.bias`)!,
    ];
    // Mixed: the head keeps an fp16 copy of its input for the weight gradient, not the f32 one.
    return this.precisionInUse === 'mixed' ? mixedRecompute(head, inputs, 1) : head(inputs);
  }

  /** Spatial sizes must be divisible by the cumulative strides, or the skips do not line up. */
  checkInputShape(shape: readonly number[]): void {
    const a = this.arch;
    if (shape.length !== a.dims + 2)
      throw new Error(`input rank ${shape.length}, expected ${a.dims + 2}`);
    if (shape[shape.length - 1] !== a.inputChannels) {
      throw new Error(`input has ${shape[shape.length - 1]} channels, expected ${a.inputChannels}`);
    }
    const cum = new Array<number>(a.dims).fill(1);
    for (const st of a.strides) st.forEach((v, i) => (cum[i] *= v));
    shape.slice(1, -1).forEach((n, i) => {
      if (n % cum[i] !== 0)
        throw new Error(`spatial size ${n} (axis ${i}) not divisible by ${cum[i]}`);
    });
  }

  /**
   * Logits, channels-last. Deep supervision on: one map per decoder level, highest resolution
   * first (n_stages − 1 maps); off: [full-resolution map]. Intermediates are not freed here:
   * call inside tf.tidy / tf.variableGrads.
   */
  forward(x: tf.Tensor): tf.Tensor[] {
    this.checkInputShape(x.shape);
    const n = this.arch.nStages;
    const skips: tf.Tensor[] = [];
    let h = this.arch.residual ? this.stem(x) : x;
    for (let s = 0; s < n; s++) {
      h = this.encoderStage(s, h);
      skips.push(h);
    }
    const outs: tf.Tensor[] = [];
    let lres = skips[n - 1];
    for (let j = 0; j < n - 1; j++) {
      lres = this.decoderStage(j, lres, skips[n - 2 - j]);
      if (this.deepSupervision || j === n - 2) outs.push(this.segHead(j, lres));
    }
    return outs.reverse();
  }
}
