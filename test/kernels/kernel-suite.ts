// The checks and timings of the fast WebGPU kernels (src/model/kernels): each kernel against the
// cpu backend and the stock webgpu kernel, a whole training step, and stock vs fast timings. One
// suite, run in two places: a module worker of the test-only Chromium page
// (test/pages/kernels/kernels.worker.ts) and Node through Dawn (open-node.ts). Not part of the app.
import type * as TF from '@tensorflow/tfjs';
import { convTuning, useBackend, tf, type ConvTuning } from '../../src/model/tf-backend.ts';
import {
  convVariants,
  setConvVariants,
  useFastKernels,
  type ConvVariant,
} from '../../src/model/kernels/index.ts';
import {
  CONV_PASSES,
  DW,
  DX,
  FORWARD,
  PASS_VARIANTS,
  type ConvPass,
  dxOf,
  forwardOf,
  variantFor,
} from '../../src/model/kernels/conv-variants.ts';
import { hasSubgroups } from '../../src/model/kernels/subgroups.ts';
import {
  autotuneConv,
  convShapes,
  type TuneResult,
  type TuneShape,
} from '../../src/model/kernels/autotune.ts';
import { memoryTuneStore } from '../../src/gpu/tune-store.ts';
import { rawProgram, type WebGPUBackendLike } from '../../src/model/kernels/program.ts';
import { SGDNesterov } from '../../src/train/optimizer.ts';
import { estimateFeatureMapSize } from '../../src/plan/vram.ts';
import { randomArray } from '../../src/util/rng.ts';
import { relL2 } from '../../src/util/compare.ts';
import { referenceAt, sampleIndices, type ConvPassName } from './conv-reference.ts';
import { prod } from '../../src/util/numeric.ts';
import {
  compareSteps,
  trainingStep,
  CHECK_CONFIG,
  type StepComparison,
} from '../../src/train/gradient-check.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { dcAndCeLoss, deepSupervisionLoss } from '../../src/train/loss.ts';
import { deepSupervisionTargets } from '../../src/train/ds-targets.ts';
import { biasNormAct } from '../../src/model/ops5d.ts';
import { tfjsTilePredictor } from '../../src/infer/predictor.ts';
import { slidingWindowPredict } from '../../src/infer/sliding-window.ts';

type V3 = [number, number, number];
export interface ConvCase {
  batch: number;
  spatial: V3;
  cin: number;
  cout: number;
  kernel: V3;
  strides: V3;
  pad: 'same' | 'valid';
}

/** Median ms of one conv pass: stock tfjs, our default (regblock) and every variant it has. */
export interface KernelTimes {
  stock: number;
  fast: number;
  variants: Partial<Record<ConvVariant, number>>;
}

export interface KernelCheck {
  name: string;
  /** fast vs cpu, stock webgpu vs cpu. */
  relL2: { fast: number; stock: number };
  /** Elements of a NaN-filled output buffer the fast kernel left NaN (must be 0). */
  unwritten: number;
  elements: number;
  /** Elements compared with the reference (all, or a sample: checkKernels' `sample`). */
  checked: number;
  refNorm: number;
}

function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}
const PASS_NAMES: ConvPassName[] = ['y', 'dx', 'dw'];
const caseName = (c: ConvCase) =>
  `b${c.batch} ${c.spatial.join('×')} ${c.cin}→${c.cout} k${c.kernel.join('×')} s${c.strides.join('')} ${c.pad}`;

interface Tensors {
  xShape: number[];
  wShape: number[];
  yShape: number[];
  x: Float32Array;
  w: Float32Array;
  dy: Float32Array;
}

function makeData(c: ConvCase, seed: number): Tensors {
  const { xShape, wShape, yShape } = convShapes(c);
  return {
    xShape,
    wShape,
    yShape,
    x: randomArray(prod(xShape), seed),
    w: randomArray(prod(wShape), seed + 1),
    dy: randomArray(prod(yShape), seed + 2),
  };
}

/** The three kernels through tf's engine on the current backend (whatever is registered). */
async function runAll(t: Tensors, c: ConvCase): Promise<Float32Array[]> {
  const x = tf.tensor(t.x, t.xShape);
  const w = tf.tensor(t.w, t.wShape);
  const dy = tf.tensor(t.dy, t.yShape);
  const e = tf.engine();
  const y = e.runKernel(
    'Conv3D',
    { x, filter: w },
    { strides: c.strides, pad: c.pad, dataFormat: 'NDHWC', dilations: [1, 1, 1] },
  ) as TF.Tensor;
  const dx = e.runKernel(
    'Conv3DBackpropInputV2',
    { dy, filter: w },
    { strides: c.strides, pad: c.pad, inputShape: t.xShape },
  ) as TF.Tensor;
  const dw = e.runKernel(
    'Conv3DBackpropFilterV2',
    { x, dy },
    { strides: c.strides, pad: c.pad, filterShape: t.wShape },
  ) as TF.Tensor;
  const out = [
    (await y.data()) as Float32Array,
    (await dx.data()) as Float32Array,
    (await dw.data()) as Float32Array,
  ];
  tf.dispose([x, w, dy, y, dx, dw]);
  return out;
}

/**
 * The fast kernels (of one variant; a pass without it runs regblock) called directly, each
 * writing into a NaN-filled output.
 */
async function runPoisoned(
  t: Tensors,
  c: ConvCase,
  variant: ConvVariant = 'regblock',
): Promise<Float32Array[]> {
  const backend = tf.backend() as unknown as WebGPUBackendLike;
  const x = tf.tensor(t.x, t.xShape);
  const w = tf.tensor(t.w, t.wShape);
  const dy = tf.tensor(t.dy, t.yShape);
  const outs = [tf.fill(t.yShape, NaN), tf.fill(t.xShape, NaN), tf.fill(t.wShape, NaN)];
  const ok = [
    forwardOf(variant)(backend, x, w, { strides: c.strides, pad: c.pad }, outs[0]),
    dxOf(variant)(
      backend,
      dy,
      w,
      { strides: c.strides, pad: c.pad, inputShape: t.xShape },
      outs[1],
    ),
    // Without dwOf's fallback to regblock, so a case the variant declines fails here.
    DW[variantFor('dw', variant)]!(
      backend,
      x,
      dy,
      { strides: c.strides, pad: c.pad, filterShape: t.wShape },
      outs[2],
    ),
  ];
  if (ok.some((o) => o === null)) throw new Error(`fast kernels declined ${caseName(c)}`);
  const r = await Promise.all(outs.map(async (o) => (await o.data()) as Float32Array));
  tf.dispose([x, w, dy, ...outs]);
  return r;
}

async function timeIt(fn: () => Promise<unknown>, reps: number): Promise<number> {
  await fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)];
}

export interface BenchNet {
  patch: V3;
  batch: number;
  features: number[];
}

function benchConfig(n: BenchNet): typeof CHECK_CONFIG {
  const stages = n.features.length;
  const cfg = structuredClone(CHECK_CONFIG);
  cfg.patch_size = [...n.patch];
  const a = cfg.architecture.arch_kwargs;
  a.n_stages = stages;
  a.features_per_stage = [...n.features];
  a.kernel_sizes = n.features.map(() => [3, 3, 3]);
  a.strides = n.features.map((_, i) => (i === 0 ? [1, 1, 1] : [2, 2, 2]));
  a.n_conv_per_stage = n.features.map(() => 2);
  a.n_conv_per_stage_decoder = n.features.slice(1).map(() => 2);
  return cfg;
}

/**
 * A benchmark net (seed 1, deep supervision) with a fixed batch: image, deep-supervision targets,
 * and its training step — DC+CE deep-supervision loss, all gradients, and (with `sgd`) the
 * SGD-Nesterov update. What sgdRun, profileTrainStep and stepPeak train.
 */
function trainRig(
  n: BenchNet,
  opts: { sgd?: boolean; checkpointing?: boolean; label?: (i: number) => number } = {},
) {
  const cfg = benchConfig(n);
  const a = cfg.architecture.arch_kwargs;
  const ckpt =
    opts.checkpointing === undefined
      ? {}
      : {
          checkpointEncoder: a.strides.map(() => opts.checkpointing!),
          checkpointDecoder: a.strides.slice(1).map(() => opts.checkpointing!),
        };
  const net = PlainConvUNet.fromPlan(cfg as never, 1, 3, {
    seed: 1,
    deepSupervision: true,
    ...ckpt,
  });
  const opt = opts.sgd
    ? new SGDNesterov(tf, new Map(net.specs.map((p) => [p.name, net.variable(p.name)])), {
        lr: 1e-2,
      })
    : undefined;
  const vox = prod(n.patch);
  const x = tf.tensor(randomArray(n.batch * vox, 2), [n.batch, ...n.patch, 1]);
  const label = opts.label ?? ((i: number) => (i * 7919) % 3);
  const seg = Int8Array.from({ length: n.batch * vox }, (_, i) => label(i));
  const targets = deepSupervisionTargets(seg, n.batch, n.patch, a.strides).map((t) =>
    tf.tensor(Int32Array.from(t.seg), [n.batch, ...t.shape], 'int32'),
  );
  return {
    cfg,
    net,
    /** The loss of the batch and the gradient of every variable on its path. */
    lossAndGrads: () =>
      tf.variableGrads(
        () =>
          deepSupervisionLoss(net.forward(x), targets, (o, t) =>
            dcAndCeLoss(o, t, { batchDice: false }),
          ),
        net.variables,
      ),
    /** The SGD update from `grads` (needs `sgd`); returns the gradient norm tensor. */
    update(grads: TF.NamedTensorMap): TF.Tensor {
      // Parameters off the loss path (e.g. the unweighted lowest deep-supervision head) get none.
      const byName = new Map(
        net.specs.flatMap((p) =>
          grads[net.variable(p.name).name]
            ? [[p.name, grads[net.variable(p.name).name]] as const]
            : [],
        ),
      );
      return opt!.step(byName);
    },
    dispose(): void {
      opt?.dispose();
      tf.dispose([x, ...targets]);
      net.dispose();
    },
  };
}

/**
 * `steps` training steps of a benchmark net (forward with deep supervision, DC+CE, all gradients,
 * the SGD-Nesterov update) from fixed initial weights on a fixed batch, on `backend` (webgpu:
 * fast or stock kernels): the loss of every step and the median ms of the steps after the first
 * (which compiles the shaders).
 */
async function sgdRun(
  n: BenchNet,
  steps: number,
  backend: 'cpu' | 'webgpu',
  fast: boolean,
): Promise<{ ms: number; losses: number[]; count: number }> {
  await useBackend(backend, { fastKernels: fast });
  const rig = trainRig(n, { sgd: true });
  const losses: number[] = [];
  const ms: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    const { value, grads } = rig.lossAndGrads();
    const norm = rig.update(grads);
    losses.push((await value.data())[0]);
    await norm.data();
    ms.push(performance.now() - t0);
    tf.dispose([value, norm, ...Object.values(grads)]);
  }
  const count = rig.net.variables.reduce((a, v) => a + v.size, 0);
  rig.dispose();
  const later = ms.slice(1).sort((a, b) => a - b);
  return { ms: later[Math.floor(later.length / 2)] ?? ms[0], losses, count };
}

const gpuErrors: string[] = [];

const api = {
  async init(): Promise<string> {
    await useBackend('webgpu');
    // Invalid WGSL does not throw: the dispatch silently does nothing. Collect such errors.
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    device.addEventListener('uncapturederror', (e) =>
      gpuErrors.push(String((e as GPUUncapturedErrorEvent).error.message)),
    );
    useFastKernels(false);
    return tf.getBackend();
  },

  /** Whether the webgpu backend's device has the `subgroups` feature. */
  async hasSubgroups(): Promise<boolean> {
    await useBackend('webgpu');
    return hasSubgroups(tf.backend());
  },

  /** WebGPU errors (shader compilation, validation) seen since init. */
  gpuErrors(): string[] {
    return gpuErrors.slice();
  },

  /**
   * Each case's forward, dx and dw with the fast kernels of `opts.variant` (default regblock),
   * called directly into NaN-filled outputs and, with `opts.engine` (default true), through the
   * engine too; with `opts.stock` (default true) the stock webgpu kernels as well (relL2.stock
   * NaN otherwise). The reference is the cpu backend, or with `opts.sample` the exact float64
   * sums (conv-reference.ts) at that many random elements of each output plus every channel of
   * its first and last row: how nnU-Net's full channel widths stay cheap on a CPU adapter, where
   * the cpu backend (and the stock webgpu kernels) take minutes per case.
   */
  async checkKernels(
    cases: ConvCase[],
    opts: { variant?: ConvVariant; stock?: boolean; engine?: boolean; sample?: number } = {},
  ): Promise<KernelCheck[]> {
    const out: KernelCheck[] = [];
    const variant = opts.variant ?? 'regblock';
    const before = convVariants();
    for (const [i, c] of cases.entries()) {
      const t = makeData(c, 100 + 7 * i);
      let cpu: Float32Array[] | undefined;
      if (opts.sample === undefined) {
        await useBackend('cpu');
        cpu = await runAll(t, c);
      }
      await useBackend('webgpu', { convVariant: variant });
      useFastKernels(false);
      const stock = opts.stock === false ? null : await runAll(t, c);
      useFastKernels(true);
      const fast = opts.engine === false ? null : await runAll(t, c);
      const poisoned = await runPoisoned(t, c, variant);
      useFastKernels(false);
      setConvVariants(before);
      const shapes = [t.yShape, t.xShape, t.wShape];
      PASS_NAMES.forEach((k, j) => {
        const n = poisoned[j].length;
        const idx = cpu
          ? undefined
          : sampleIndices(n, shapes[j].at(-1)!, opts.sample!, 1000 + 7 * i + j);
        const ref = cpu ? cpu[j] : referenceAt(c, k, idx!, t);
        const at = (a: Float32Array) => (idx ? Float64Array.from(idx, (e) => a[e]) : a);
        out.push({
          name: `${k} ${caseName(c)}`,
          relL2: {
            fast: Math.max(fast ? relL2(at(fast[j]), ref) : 0, relL2(at(poisoned[j]), ref)),
            stock: stock ? relL2(at(stock[j]), ref) : NaN,
          },
          unwritten: poisoned[j].reduce((n, v) => n + (Number.isNaN(v) ? 1 : 0), 0),
          elements: n,
          checked: ref.length,
          refNorm: norm(ref),
        });
      });
    }
    return out;
  },

  /**
   * The autotune (src/model/kernels/autotune.ts) on this adapter with `shapes`, into a fresh
   * in-memory cache: the first call measures, the second must come from the cache.
   */
  async tuneConv(
    shapes: TuneShape[],
    reps: number,
  ): Promise<{ first: TuneResult; second: TuneResult }> {
    await useBackend('webgpu');
    const store = memoryTuneStore();
    const adapter = { vendor: 'kernel-suite', architecture: tf.getBackend() };
    const first = await autotuneConv(adapter, { store, shapes, reps });
    const second = await autotuneConv(adapter, { store, shapes, reps });
    return { first, second };
  },

  async checkTrainingStep(): Promise<{
    fastVsCpu: StepComparison;
    fastVsStock: StepComparison;
    stockVsCpu: StepComparison;
  }> {
    await useBackend('cpu');
    const cpu = await trainingStep(tf, 1, 2);
    await useBackend('webgpu');
    useFastKernels(false);
    const stock = await trainingStep(tf, 1, 2);
    useFastKernels(true);
    const fast = await trainingStep(tf, 1, 2);
    useFastKernels(false);
    return {
      fastVsCpu: compareSteps(fast, cpu),
      fastVsStock: compareSteps(fast, stock),
      stockVsCpu: compareSteps(stock, cpu),
    };
  },

  /**
   * `npm run bench gpu`: SGD steps of a net with the fast kernels only (median ms of the steps
   * after the first, which compiles the shaders), and the peak bytes of live tensors over one
   * step (tf.profile, engine level: weights, gradients, activations; not the driver's own).
   */
  async gpuTrainStep(
    n: BenchNet,
    steps: number,
  ): Promise<{ ms: number; losses: number[]; params: number; peakBytes: number }> {
    const r = await sgdRun(n, steps, 'webgpu', true);
    const peak = await api.stepPeak(n, 'webgpu', true, false);
    useFastKernels(false);
    return { ms: r.ms, losses: r.losses, params: r.count, peakBytes: peak.peakBytes };
  },

  /**
   * `npm run bench gpu`, per kernel: median ms of each pass of one convolution with every variant
   * it has on this device (data made on the device; each run waits for the GPU by reading back one
   * element, so a large output is not copied), called directly as the registered kernels call
   * them; a variant that declines the shape is left out. `reps` runs after a warm-up run that
   * compiles the shaders.
   */
  async gpuConvPasses(
    c: ConvCase,
    reps: number,
  ): Promise<{
    name: string;
    flops: number;
    ms: Record<ConvPass, Partial<Record<ConvVariant, number>>>;
  }> {
    await useBackend('webgpu');
    const backend = tf.backend() as unknown as WebGPUBackendLike;
    const { xShape, wShape, yShape } = convShapes(c);
    const x = tf.randomUniform(xShape, -1, 1);
    const w = tf.randomUniform(wShape, -0.1, 0.1);
    const dy = tf.randomUniform(yShape, -1, 1);
    const a = { strides: c.strides, pad: c.pad };
    const runs: Record<ConvPass, (v: ConvVariant) => TF.TensorInfo | null> = {
      forward: (v) => FORWARD[v]!(backend, x, w, a),
      dx: (v) => DX[v]!(backend, dy, w, { ...a, inputShape: xShape }),
      dw: (v) => DW[v]!(backend, x, dy, { ...a, filterShape: wShape }),
    };
    const ms = { forward: {}, dx: {}, dw: {} } as Record<
      ConvPass,
      Partial<Record<ConvVariant, number>>
    >;
    try {
      for (const p of CONV_PASSES)
        for (const v of PASS_VARIANTS[p]) {
          if (v === 'subgroup' && !hasSubgroups(backend)) continue;
          // A variant that declines this shape (subgroup: too few rows) is not timed.
          const probe = runs[p](v);
          if (!probe) continue;
          backend.disposeData(probe.dataId);
          ms[p][v] = await timeIt(async () => {
            const o = runs[p](v);
            if (!o) throw new Error(`conv variant ${v} declined ${caseName(c)} (${p})`);
            const t = tf.engine().makeTensorFromTensorInfo(o);
            const one = tf.slice(
              t,
              t.shape.map(() => 0),
              t.shape.map(() => 1),
            );
            await one.data();
            tf.dispose([t, one]);
          }, reps);
        }
    } finally {
      tf.dispose([x, w, dy]);
    }
    const flops = 2 * prod(yShape) * c.kernel[0] * c.kernel[1] * c.kernel[2] * c.cin;
    return { name: caseName(c), flops, ms };
  },

  /** How this adapter's conv variants were chosen (autotune timings where it ran). */
  convTuning(): ConvTuning | undefined {
    return convTuning();
  },

  /**
   * `npm run bench gpu`: forward-only sliding-window inference (nnU-Net's tiling, step 0.5,
   * Gaussian blending, no mirroring) of a random `volume` with a net of these features and
   * patch, fast kernels: seconds and tiles.
   */
  async gpuSlidingWindow(
    features: number[],
    patch: V3,
    volume: V3,
  ): Promise<{ seconds: number; tiles: number }> {
    await useBackend('webgpu', { fastKernels: true });
    const cfg = benchConfig({ patch, batch: 1, features });
    const net = PlainConvUNet.fromPlan(cfg as never, 1, 3, { seed: 1, deepSupervision: false });
    try {
      const predict = tfjsTilePredictor(net, patch);
      const vol = {
        data: randomArray(prod(volume), 5),
        shape: [1, ...volume] as [number, number, number, number],
      };
      let tiles = 0;
      const t0 = performance.now();
      await slidingWindowPredict(vol, patch, 3, predict, {
        onProgress: (_done, total) => (tiles = total),
      });
      return { seconds: (performance.now() - t0) / 1e3, tiles };
    } finally {
      useFastKernels(false);
      net.dispose();
    }
  },

  /**
   * One deep-supervised training step (DC+CE, all gradients) of a plan's network at its full
   * channel widths on `patch` (a small one on a CPU adapter), fast webgpu vs cpu, same weights
   * and batch. `config` is an nnU-Net plans configuration (architecture + patch_size).
   */
  async checkPlanStep(
    config: typeof CHECK_CONFIG,
    patch: V3,
    batch = 1,
  ): Promise<StepComparison & { params: number }> {
    const cfg = { ...structuredClone(config), patch_size: [...patch] };
    await useBackend('cpu');
    const cpu = await trainingStep(tf, 1, batch, cfg);
    await useBackend('webgpu');
    useFastKernels(true);
    const fast = await trainingStep(tf, 1, batch, cfg);
    useFastKernels(false);
    const params = [...cpu.grads.values()].reduce((a, g) => a + g.length, 0);
    return { ...compareSteps(fast, cpu), params };
  },

  /**
   * The loss and every gradient of one training step of the check network with the fast kernels,
   * as plain arrays: what the Node and Chromium runs of this suite compare with each other.
   */
  async stepOutputs(): Promise<{ loss: number; grads: Record<string, number[]> }> {
    await useBackend('webgpu');
    useFastKernels(true);
    const r = await trainingStep(tf, 1, 2);
    useFastKernels(false);
    return { loss: r.loss, grads: Object.fromEntries([...r.grads].map(([k, g]) => [k, [...g]])) };
  },

  /**
   * Shapes outside the fast path (dilation 2, stride 3) are declined by the fast functions and,
   * through the registered kernel, computed by the stock one: relL2 vs cpu of the forward.
   */
  async checkFallback(): Promise<{ declined: boolean[]; relL2: number }> {
    await useBackend('webgpu');
    const backend = tf.backend() as unknown as WebGPUBackendLike;
    const x = tf.tensor(randomArray(2 * 7 * 7 * 7 * 3, 9), [2, 7, 7, 7, 3]);
    const w = tf.tensor(randomArray(27 * 3 * 4, 10), [3, 3, 3, 3, 4]);
    // Each entry: declined by every variant.
    const declined = [
      PASS_VARIANTS.forward.every(
        (v) => FORWARD[v]!(backend, x, w, { strides: 1, pad: 'valid', dilations: 2 }) === null,
      ),
      PASS_VARIANTS.forward.every(
        (v) => FORWARD[v]!(backend, x, w, { strides: 3, pad: 'valid' }) === null,
      ),
      PASS_VARIANTS.dw.every(
        (v) =>
          DW[v]!(backend, x, x, {
            strides: 3,
            pad: 'valid',
            filterShape: [3, 3, 3, 3, 4],
          }) === null,
      ),
    ];
    useFastKernels(true);
    const y = tf.conv3d(x as TF.Tensor5D, w as TF.Tensor5D, 3, 'valid', 'NDHWC', 1);
    const got = (await y.data()) as Float32Array;
    useFastKernels(false);
    const xs = await x.data();
    const ws = await w.data();
    tf.dispose([x, w, y]);
    await useBackend('cpu');
    const xc = tf.tensor(xs, [2, 7, 7, 7, 3]) as TF.Tensor5D;
    const wc = tf.tensor(ws, [3, 3, 3, 3, 4]) as TF.Tensor5D;
    const yc = tf.conv3d(xc, wc, 3, 'valid');
    const ref = (await yc.data()) as Float32Array;
    tf.dispose([xc, wc, yc]);
    await useBackend('webgpu');
    return { declined, relL2: relL2(got, ref) };
  },

  /** Median ms of a 2n³ matMul on webgpu and its GFLOP/s: the backend's practical peak. */
  async peakMatMul(n: number, reps: number): Promise<{ ms: number; gflops: number }> {
    await useBackend('webgpu');
    const a = tf.randomUniform([n, n]);
    const b = tf.randomUniform([n, n]);
    const ms = await timeIt(async () => {
      const c = tf.matMul(a, b);
      await c.data();
      c.dispose();
    }, reps);
    tf.dispose([a, b]);
    return { ms, gflops: (2 * n ** 3) / ms / 1e6 };
  },

  /**
   * The fast reductions, softmax and fused bias+InstanceNorm+LeakyReLU (forward and all
   * gradients) on webgpu against the same ops on the cpu backend: rel. L2 per case.
   */
  async checkOps(): Promise<Array<{ name: string; relL2: number; refNorm: number }>> {
    type Run = () => TF.Tensor[];
    const cases: Array<[string, number[], (x: TF.Tensor) => Run]> = [];
    const red =
      (op: 'sum' | 'max' | 'mean', axis: number | number[], keep = false) =>
      (x: TF.Tensor) =>
      () => [tf[op](x, axis, keep)];
    for (const op of ['sum', 'max', 'mean'] as const) {
      cases.push([`${op} [8192,3] axis -1`, [8192, 3], red(op, -1)]);
      cases.push([`${op} [8192,3] axis 0`, [8192, 3], red(op, 0)]);
      cases.push([`${op} [2,4096,8] axis 1 keepDims`, [2, 4096, 8], red(op, 1, true)]);
      cases.push([`${op} [2,4096,8] axes 0,1`, [2, 4096, 8], red(op, [0, 1])]);
      cases.push([`${op} [5,7,3] axes 1,2`, [5, 7, 3], red(op, [1, 2])]);
      cases.push([`${op} [3001] all`, [3001], red(op, 0)]);
      cases.push([`${op} [2,3,4] axes 0,2 (stock)`, [2, 3, 4], red(op, [0, 2])]);
    }
    cases.push(['softmax [1000,3]', [1000, 3], (x) => () => [tf.softmax(x)]]);
    cases.push(['softmax [7,5,11]', [7, 5, 11], (x) => () => [tf.softmax(x)]]);
    // Fused norm: forward, then d/dx, d/dbias, d/dγ, d/dβ of Σ(y·r) for a fixed random r.
    const normCase = (shape: number[], offset: number) => (x: TF.Tensor) => () => {
      const C = shape[shape.length - 1];
      const bias = tf.tensor(randomArray(C, 11), [C]);
      const gamma = tf.add(tf.tensor(randomArray(C, 12), [C]), 1);
      const beta = tf.tensor(randomArray(C, 13), [C]);
      const r = tf.tensor(randomArray(x.size, 14), shape);
      const xs = tf.add(x, offset);
      const f = (a: TF.Tensor, b: TF.Tensor, g: TF.Tensor, be2: TF.Tensor) =>
        biasNormAct(a, b, g, be2, 1e-5, 0.01);
      const y = f(xs, bias, gamma, beta);
      const grads = tf.grads((a: TF.Tensor, b: TF.Tensor, g: TF.Tensor, be2: TF.Tensor) =>
        tf.sum(tf.mul(f(a, b, g, be2), r)),
      )([xs, bias, gamma, beta]);
      return [y, ...grads];
    };
    cases.push(['normAct [2,4096,8]', [2, 16, 16, 16, 8], normCase([2, 16, 16, 16, 8], 0)]);
    cases.push(['normAct [1,27,5] offset 100', [1, 3, 3, 3, 5], normCase([1, 3, 3, 3, 5], 100)]);
    cases.push(['normAct [2,300,16]', [2, 300, 16], normCase([2, 300, 16], 0)]);
    const out: Array<{ name: string; relL2: number; refNorm: number }> = [];
    for (const [i, [name, shape, make]] of cases.entries()) {
      const data = randomArray(prod(shape), 500 + i);
      const run = async (backend: 'cpu' | 'webgpu') => {
        await useBackend(backend);
        useFastKernels(backend === 'webgpu');
        const x = tf.tensor(data, shape);
        const ys = make(x)();
        const r = await Promise.all(ys.map(async (y) => (await y.data()) as Float32Array));
        tf.dispose([x, ...ys]);
        useFastKernels(false);
        return r;
      };
      const ref = await run('cpu');
      const got = await run('webgpu');
      ref.forEach((rv, j) => {
        // The bias gradient is 0 exactly (fused) vs round-off (composite): compare absolutely.
        const isBias = name.startsWith('normAct') && j === 2;
        if (got[j].length !== rv.length)
          throw new Error(
            `${name} output ${j}: ${got[j].length} elements on webgpu, ${rv.length} on cpu`,
          );
        const e = isBias
          ? norm(got[j].map((v, k) => v - rv[k]) as Float32Array) / Math.max(1, norm(ref[0]))
          : relL2(got[j], rv);
        out.push({
          name: `${name}${ref.length > 1 ? ` output ${j}` : ''}`,
          relL2: e,
          refNorm: norm(rv),
        });
      });
    }
    await useBackend('webgpu');
    return out;
  },

  /** Median ms per kernel, stock and fast. FLOPs = 2·MACs of the convolution (same for all three). */
  async benchKernel(
    c: ConvCase,
    reps: number,
  ): Promise<{
    name: string;
    flops: number;
    ms: Record<'y' | 'dx' | 'dw', KernelTimes>;
  }> {
    await useBackend('webgpu');
    const t = makeData(c, 5);
    const x = tf.tensor(t.x, t.xShape);
    const w = tf.tensor(t.w, t.wShape);
    const dy = tf.tensor(t.dy, t.yShape);
    const e = tf.engine();
    const runs: Record<'y' | 'dx' | 'dw', () => TF.Tensor> = {
      y: () =>
        e.runKernel(
          'Conv3D',
          { x, filter: w },
          { strides: c.strides, pad: c.pad, dataFormat: 'NDHWC', dilations: [1, 1, 1] },
        ) as TF.Tensor,
      dx: () =>
        e.runKernel(
          'Conv3DBackpropInputV2',
          { dy, filter: w },
          { strides: c.strides, pad: c.pad, inputShape: t.xShape },
        ) as TF.Tensor,
      dw: () =>
        e.runKernel(
          'Conv3DBackpropFilterV2',
          { x, dy },
          { strides: c.strides, pad: c.pad, filterShape: t.wShape },
        ) as TF.Tensor,
    };
    const ms = {} as Record<'y' | 'dx' | 'dw', KernelTimes>;
    const before = convVariants();
    for (const k of ['y', 'dx', 'dw'] as const) {
      const time = () =>
        timeIt(async () => {
          const o = runs[k]();
          await o.data();
          o.dispose();
        }, reps);
      useFastKernels(false);
      const stock = await time();
      const variants: Partial<Record<ConvVariant, number>> = {};
      useFastKernels(true);
      const pass = k === 'y' ? 'forward' : k;
      for (const v of PASS_VARIANTS[pass]) {
        if (v === 'subgroup' && !hasSubgroups(tf.backend())) continue;
        setConvVariants({ [pass]: v });
        variants[v] = await time();
      }
      ms[k] = { stock, fast: variants.regblock!, variants };
    }
    setConvVariants(before);
    useFastKernels(false);
    tf.dispose([x, w, dy]);
    const flops = 2 * prod(t.yShape) * c.kernel[0] * c.kernel[1] * c.kernel[2] * c.cin;
    return { name: caseName(c), flops, ms };
  },

  /**
   * Where a training step's time goes: tf.profile over one step (after a warm-up step), GPU time
   * per kernel name from WebGPU timestamp queries, summed, with call counts.
   */
  async profileTrainStep(
    n: BenchNet,
    fast: boolean,
  ): Promise<{ wallMs: number; kernels: Array<{ name: string; calls: number; ms: number }> }> {
    await useBackend('webgpu');
    tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false);
    useFastKernels(fast);
    const rig = trainRig(n, { label: (i) => i % 3 });
    const step = async () => {
      const { value, grads } = rig.lossAndGrads();
      await value.data();
      await Promise.all(Object.values(grads).map((g) => g.data()));
      tf.dispose([value, ...Object.values(grads)]);
    };
    await step();
    const t0 = performance.now();
    const prof = await tf.profile(step);
    const wallMs = performance.now() - t0;
    const by = new Map<string, { calls: number; ms: number }>();
    for (const k of prof.kernels) {
      const e = by.get(k.name) ?? { calls: 0, ms: 0 };
      e.calls++;
      e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : NaN;
      by.set(k.name, e);
    }
    useFastKernels(false);
    rig.dispose();
    return {
      wallMs,
      kernels: [...by].map(([name, e]) => ({ name, ...e })).sort((a, b) => b.ms - a.ms),
    };
  },

  /**
   * Training steps of a benchmark net (forward with deep supervision, DC+CE, all gradients, the
   * SGD-Nesterov update), stock kernels then fast kernels, each from the same initial weights on
   * the same batch: the loss of every step and the median ms of the steps after the first
   * (which compiles the shaders).
   */
  async benchTrainStep(
    n: BenchNet,
    steps: number,
  ): Promise<{
    stock: { ms: number; losses: number[] };
    fast: { ms: number; losses: number[] };
    params: number;
    convFlops: number;
  }> {
    const stock = await sgdRun(n, steps, 'webgpu', false);
    const fast = await sgdRun(n, steps, 'webgpu', true);
    useFastKernels(false);
    // Conv FLOPs of one step: 3 × forward (forward, dx, dw) of every 3×3×3 conv.
    let convFlops = 0;
    let sp = n.patch.slice() as number[];
    let cin = 1;
    for (const [i, f] of n.features.entries()) {
      if (i > 0) sp = sp.map((v) => Math.ceil(v / 2));
      const v = n.batch * prod(sp);
      convFlops += 2 * v * 27 * (cin * f + f * f); // encoder
      if (i < n.features.length - 1) convFlops += 2 * v * 27 * (2 * f * f + f * f); // decoder (concat 2f → f, f → f)
      cin = f;
    }
    return {
      stock: { ms: stock.ms, losses: stock.losses },
      fast: { ms: fast.ms, losses: fast.losses },
      params: fast.count,
      convFlops: 3 * convFlops,
    };
  },

  /**
   * The backend's practical peak with our own register-blocked WGSL GEMM (8×8 outputs per
   * thread, vec4 loads, no workgroup memory): C[n, n] = Aᵀ[n, n]ᵀ · B[n, n]. Median ms, GFLOP/s.
   */
  /**
   * Peak bytes of tensors alive during one training step (tf.profile's engine-level peak, after
   * a warm-up step), divided by nnU-Net's VRAM estimate (conv output elements × batch): the
   * planner's bytes per feature element for this implementation.
   */
  async stepPeak(
    n: BenchNet,
    backend: 'cpu' | 'webgpu',
    fast: boolean,
    checkpointing: boolean,
  ): Promise<{ peakBytes: number; elements: number; bytesPerElement: number }> {
    await useBackend(backend, { fastKernels: fast });
    const rig = trainRig(n, { sgd: true, checkpointing });
    const a = rig.cfg.architecture.arch_kwargs;
    const step = () => {
      const { value, grads } = rig.lossAndGrads();
      const norm = rig.update(grads);
      tf.dispose(Object.values(grads));
      return [value, norm];
    };
    tf.dispose(step());
    const prof = await tf.profile(() => tf.dispose(step()));
    rig.dispose();
    useFastKernels(false);
    const elements = n.batch * estimateFeatureMapSize(n.patch, a.strides, a.features_per_stage, 3);
    return { peakBytes: prof.peakBytes, elements, bytesPerElement: prof.peakBytes / elements };
  },

  /** Losses of `steps` SGD steps of a small net on cpu, webgpu stock and webgpu fast. */
  async sgdLosses(
    n: BenchNet,
    steps: number,
  ): Promise<{ cpu: number[]; stock: number[]; fast: number[] }> {
    const cpu = await sgdRun(n, steps, 'cpu', false);
    const stock = await sgdRun(n, steps, 'webgpu', false);
    const fast = await sgdRun(n, steps, 'webgpu', true);
    useFastKernels(false);
    return { cpu: cpu.losses, stock: stock.losses, fast: fast.losses };
  },

  async peakGemm(n: number, reps: number): Promise<{ ms: number; gflops: number }> {
    await useBackend('webgpu');
    if (n % 8) throw new Error('n must be a multiple of 8');
    const backend = tf.backend() as unknown as WebGPUBackendLike;
    const a = tf.randomUniform([n, n]);
    const b = tf.randomUniform([n, n]);
    const rows = [0, 1, 2, 3, 4, 5, 6, 7];
    const program = rawProgram({
      key: `peakgemm_${n}`,
      inputs: ['A', 'B'],
      components: [4, 4],
      outputShape: [n, n],
      threads: (n / 8) * (n / 8),
      body: `
  let n0 = (t % ${n / 8}) * 8;
  let m0 = (t / ${n / 8}) * 8;
  var acc : array<vec4<f32>, 16>;
  for (var k = 0; k < ${n}; k++) {
    let a0 = A[(k * ${n} + m0) / 4]; let a1 = A[(k * ${n} + m0) / 4 + 1];
    let b0 = B[(k * ${n} + n0) / 4]; let b1 = B[(k * ${n} + n0) / 4 + 1];
    ${rows.map((r) => `acc[${2 * r}] += a${r >> 2}[${r & 3}] * b0; acc[${2 * r + 1}] += a${r >> 2}[${r & 3}] * b1;`).join('\n    ')}
  }
  ${rows
    .map(
      (
        r,
      ) => `result[(m0 + ${r}) * ${n} + n0] = acc[${2 * r}].x; result[(m0 + ${r}) * ${n} + n0 + 1] = acc[${2 * r}].y; result[(m0 + ${r}) * ${n} + n0 + 2] = acc[${2 * r}].z; result[(m0 + ${r}) * ${n} + n0 + 3] = acc[${2 * r}].w;
  result[(m0 + ${r}) * ${n} + n0 + 4] = acc[${2 * r + 1}].x; result[(m0 + ${r}) * ${n} + n0 + 5] = acc[${2 * r + 1}].y; result[(m0 + ${r}) * ${n} + n0 + 6] = acc[${2 * r + 1}].z; result[(m0 + ${r}) * ${n} + n0 + 7] = acc[${2 * r + 1}].w;`,
    )
    .join('\n  ')}`,
    });
    const ms = await timeIt(async () => {
      const c = tf
        .engine()
        .makeTensorFromTensorInfo(backend.runWebGPUProgram(program, [a, b], 'float32'));
      await c.data();
      c.dispose();
    }, reps);
    // Check one element against a CPU dot product, so a broken shader cannot report a peak.
    const c = tf
      .engine()
      .makeTensorFromTensorInfo(backend.runWebGPUProgram(program, [a, b], 'float32'));
    const [av, bv, cv] = await Promise.all([a.data(), b.data(), c.data()]);
    let ref = 0;
    for (let k = 0; k < n; k++) ref += av[k * n + 3] * bv[k * n + 5];
    tf.dispose([a, b, c]);
    if (Math.abs(cv[3 * n + 5] - ref) > 1e-3 * Math.abs(ref))
      throw new Error(`peak GEMM is wrong: ${cv[3 * n + 5]} vs ${ref}`);
    return { ms, gflops: (2 * n ** 3) / ms / 1e6 };
  },
};

export type KernelsApi = typeof api;
export const kernelSuite: KernelsApi = api;
