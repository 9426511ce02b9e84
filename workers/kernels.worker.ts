// Test/benchmark worker for the fast WebGPU conv3d kernels (src/model/kernels): checks each
// kernel against the cpu backend and the stock webgpu kernel, a whole training step, and times
// stock vs fast. Loaded only by the test page test/pages/kernels/ (not by the app).
import * as Comlink from 'comlink';
import type * as TF from '@tensorflow/tfjs';
import { useBackend, tf } from '../src/model/tf-backend.ts';
import { conv3dBackpropFilter, conv3dBackpropInput, conv3dForward, useFastKernels } from '../src/model/kernels/index.ts';
import type { WebGPUBackendLike } from '../src/model/kernels/gemm.ts';
import { randomArray } from '../src/util/rng.ts';
import { relL2 } from '../src/util/compare.ts';
import { compareSteps, trainingStep, CHECK_CONFIG, type StepComparison } from '../src/train/gradient-check.ts';
import { PlainConvUNet } from '../src/model/unet.ts';
import { dcAndCeLoss, deepSupervisionLoss } from '../src/train/loss.ts';
import { deepSupervisionTargets } from '../src/train/ds-targets.ts';

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

export interface KernelCheck {
  name: string;
  /** fast vs cpu, stock webgpu vs cpu. */
  relL2: { fast: number; stock: number };
  /** Elements of a NaN-filled output buffer the fast kernel left NaN (must be 0). */
  unwritten: number;
  elements: number;
  refNorm: number;
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
const caseName = (c: ConvCase) => `b${c.batch} ${c.spatial.join('×')} ${c.cin}→${c.cout} k${c.kernel.join('×')} s${c.strides.join('')} ${c.pad}`;

interface Tensors {
  xShape: number[];
  wShape: number[];
  yShape: number[];
  x: Float32Array;
  w: Float32Array;
  dy: Float32Array;
}

function makeData(c: ConvCase, seed: number): Tensors {
  const xShape = [c.batch, ...c.spatial, c.cin];
  const wShape = [...c.kernel, c.cin, c.cout];
  const info = tf.backend_util.computeConv3DInfo(xShape as never, wShape as never, c.strides, 1, c.pad);
  const yShape = [c.batch, info.outDepth, info.outHeight, info.outWidth, c.cout];
  return { xShape, wShape, yShape, x: randomArray(size(xShape), seed), w: randomArray(size(wShape), seed + 1), dy: randomArray(size(yShape), seed + 2) };
}

/** The three kernels through tf's engine on the current backend (whatever is registered). */
async function runAll(t: Tensors, c: ConvCase): Promise<Float32Array[]> {
  const x = tf.tensor(t.x, t.xShape);
  const w = tf.tensor(t.w, t.wShape);
  const dy = tf.tensor(t.dy, t.yShape);
  const e = tf.engine();
  const y = e.runKernel('Conv3D', { x, filter: w }, { strides: c.strides, pad: c.pad, dataFormat: 'NDHWC', dilations: [1, 1, 1] }) as TF.Tensor;
  const dx = e.runKernel('Conv3DBackpropInputV2', { dy, filter: w }, { strides: c.strides, pad: c.pad, inputShape: t.xShape }) as TF.Tensor;
  const dw = e.runKernel('Conv3DBackpropFilterV2', { x, dy }, { strides: c.strides, pad: c.pad, filterShape: t.wShape }) as TF.Tensor;
  const out = [(await y.data()) as Float32Array, (await dx.data()) as Float32Array, (await dw.data()) as Float32Array];
  tf.dispose([x, w, dy, y, dx, dw]);
  return out;
}

/** The fast kernels called directly, each writing into a NaN-filled output. */
async function runPoisoned(t: Tensors, c: ConvCase): Promise<Float32Array[]> {
  const backend = tf.backend() as unknown as WebGPUBackendLike;
  const x = tf.tensor(t.x, t.xShape);
  const w = tf.tensor(t.w, t.wShape);
  const dy = tf.tensor(t.dy, t.yShape);
  const outs = [tf.fill(t.yShape, NaN), tf.fill(t.xShape, NaN), tf.fill(t.wShape, NaN)];
  const ok = [
    conv3dForward(backend, x, w, { strides: c.strides, pad: c.pad }, outs[0]),
    conv3dBackpropInput(backend, dy, w, { strides: c.strides, pad: c.pad, inputShape: t.xShape }, outs[1]),
    conv3dBackpropFilter(backend, x, dy, { strides: c.strides, pad: c.pad, filterShape: t.wShape }, outs[2]),
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

const gpuErrors: string[] = [];

const api = {
  async init(): Promise<string> {
    await useBackend('webgpu');
    // Invalid WGSL does not throw: the dispatch silently does nothing. Collect such errors.
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    device.addEventListener('uncapturederror', (e) => gpuErrors.push(String((e as GPUUncapturedErrorEvent).error.message)));
    useFastKernels(false);
    return tf.getBackend();
  },

  /** WebGPU errors (shader compilation, validation) seen since init. */
  gpuErrors(): string[] {
    return gpuErrors.slice();
  },

  async checkKernels(cases: ConvCase[]): Promise<KernelCheck[]> {
    const out: KernelCheck[] = [];
    for (const [i, c] of cases.entries()) {
      const t = makeData(c, 100 + 7 * i);
      await useBackend('cpu');
      const ref = await runAll(t, c);
      await useBackend('webgpu');
      useFastKernels(false);
      const stock = await runAll(t, c);
      useFastKernels(true);
      const fast = await runAll(t, c);
      const poisoned = await runPoisoned(t, c);
      useFastKernels(false);
      ['y', 'dx', 'dw'].forEach((k, j) => {
        out.push({
          name: `${k} ${caseName(c)}`,
          relL2: { fast: Math.max(relL2(fast[j], ref[j]), relL2(poisoned[j], ref[j])), stock: relL2(stock[j], ref[j]) },
          unwritten: poisoned[j].reduce((n, v) => n + (Number.isNaN(v) ? 1 : 0), 0),
          elements: ref[j].length,
          refNorm: norm(ref[j]),
        });
      });
    }
    return out;
  },

  async checkTrainingStep(): Promise<{ fastVsCpu: StepComparison; fastVsStock: StepComparison; stockVsCpu: StepComparison }> {
    await useBackend('cpu');
    const cpu = await trainingStep(tf, 1, 2);
    await useBackend('webgpu');
    useFastKernels(false);
    const stock = await trainingStep(tf, 1, 2);
    useFastKernels(true);
    const fast = await trainingStep(tf, 1, 2);
    useFastKernels(false);
    return { fastVsCpu: compareSteps(fast, cpu), fastVsStock: compareSteps(fast, stock), stockVsCpu: compareSteps(stock, cpu) };
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
    const declined = [
      conv3dForward(backend, x, w, { strides: 1, pad: 'valid', dilations: 2 }) === null,
      conv3dForward(backend, x, w, { strides: 3, pad: 'valid' }) === null,
      conv3dBackpropFilter(backend, x, x, { strides: 3, pad: 'valid', filterShape: [3, 3, 3, 3, 4] }) === null,
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

  /** Median ms per kernel, stock and fast. FLOPs = 2·MACs of the convolution (same for all three). */
  async benchKernel(c: ConvCase, reps: number): Promise<{ name: string; flops: number; ms: Record<'y' | 'dx' | 'dw', { stock: number; fast: number }> }> {
    await useBackend('webgpu');
    const t = makeData(c, 5);
    const x = tf.tensor(t.x, t.xShape);
    const w = tf.tensor(t.w, t.wShape);
    const dy = tf.tensor(t.dy, t.yShape);
    const e = tf.engine();
    const runs: Record<'y' | 'dx' | 'dw', () => TF.Tensor> = {
      y: () => e.runKernel('Conv3D', { x, filter: w }, { strides: c.strides, pad: c.pad, dataFormat: 'NDHWC', dilations: [1, 1, 1] }) as TF.Tensor,
      dx: () => e.runKernel('Conv3DBackpropInputV2', { dy, filter: w }, { strides: c.strides, pad: c.pad, inputShape: t.xShape }) as TF.Tensor,
      dw: () => e.runKernel('Conv3DBackpropFilterV2', { x, dy }, { strides: c.strides, pad: c.pad, filterShape: t.wShape }) as TF.Tensor,
    };
    const ms = {} as Record<'y' | 'dx' | 'dw', { stock: number; fast: number }>;
    for (const k of ['y', 'dx', 'dw'] as const) {
      const r = { stock: 0, fast: 0 };
      for (const mode of ['stock', 'fast'] as const) {
        useFastKernels(mode === 'fast');
        r[mode] = await timeIt(async () => {
          const o = runs[k]();
          await o.data();
          o.dispose();
        }, reps);
      }
      ms[k] = r;
    }
    useFastKernels(false);
    tf.dispose([x, w, dy]);
    const flops = 2 * size(t.yShape) * c.kernel[0] * c.kernel[1] * c.kernel[2] * c.cin;
    return { name: caseName(c), flops, ms };
  },

  /** Median ms of one training step (forward, DC+CE with deep supervision, all gradients) of a benchmark net. */
  async benchTrainStep(n: BenchNet, reps: number): Promise<{ stock: number; fast: number; params: number; convFlops: number }> {
    await useBackend('webgpu');
    const cfg = benchConfig(n);
    const net = PlainConvUNet.fromPlan(cfg as never, 1, 3, { seed: 1, deepSupervision: true });
    const vox = size(n.patch);
    const x = tf.tensor(randomArray(n.batch * vox, 2), [n.batch, ...n.patch, 1]);
    const seg = Int8Array.from({ length: n.batch * vox }, (_, i) => i % 3);
    const targets = deepSupervisionTargets(seg, n.batch, n.patch, cfg.architecture.arch_kwargs.strides).map((t) => tf.tensor(Int32Array.from(t.seg), [n.batch, ...t.shape], 'int32'));
    const step = async () => {
      const { value, grads } = tf.variableGrads(() => deepSupervisionLoss(net.forward(x), targets, (o, t) => dcAndCeLoss(o, t, { batchDice: false })), net.variables);
      await value.data();
      await Promise.all(Object.values(grads).map((g) => g.data()));
      tf.dispose([value, ...Object.values(grads)]);
    };
    const r = { stock: 0, fast: 0 };
    for (const mode of ['stock', 'fast'] as const) {
      useFastKernels(mode === 'fast');
      r[mode] = await timeIt(step, reps);
    }
    useFastKernels(false);
    const params = net.variables.reduce((s, v) => s + v.size, 0);
    tf.dispose([x, ...targets]);
    net.dispose();
    // Conv FLOPs of one step: 3 × forward (forward, dx, dw) of every 3×3×3 conv.
    let convFlops = 0;
    let s = n.patch.slice() as number[];
    let cin = 1;
    for (const [i, f] of n.features.entries()) {
      if (i > 0) s = s.map((v) => Math.ceil(v / 2));
      const v = n.batch * size(s);
      convFlops += 2 * v * 27 * (cin * f + f * f); // encoder
      if (i < n.features.length - 1) convFlops += 2 * v * 27 * (2 * f * f + f * f); // decoder (concat 2f → f, f → f)
      cin = f;
    }
    return { ...r, params, convFlops: 3 * convFlops };
  },
};

export type KernelsApi = typeof api;
Comlink.expose(api);
