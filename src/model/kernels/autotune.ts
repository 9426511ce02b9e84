// Per-adapter choice of the conv3d variant for each pass (forward, dx, dw; dw's 'subgroup' variant
// only where the device has `subgroups`), and of the long-sum
// variant (reduce.ts: serial, or subgroup where the device has `subgroups`): on first use on an
// adapter, time every variant on a few U-Net-like convolutions and sums (median of a handful of
// runs after a warm-up that compiles the shaders) and keep the fastest; the result is cached
// under the adapter's identity and KERNEL_VERSION (src/gpu/tune-store.ts), so later sessions
// reuse it.
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import type { AdapterFacts } from '../../gpu/probe.ts';
import {
  defaultTuneStore,
  tuneKey,
  type TuneRecord,
  type TuneStore,
} from '../../gpu/tune-store.ts';
import {
  CONV_PASSES,
  CONV_VARIANTS,
  DEFAULT_CHOICE,
  PASS_VARIANTS,
  dwOf,
  dxOf,
  forwardOf,
  type ConvChoice,
  type ConvPass,
  type ConvVariant,
} from './conv-variants.ts';
import type { WebGPUBackendLike } from './program.ts';
import {
  REDUCE_VARIANTS,
  reduce,
  reduceVariant,
  setReduceVariant,
  type ReduceVariant,
} from './reduce.ts';
import { hasSubgroups } from './subgroups.ts';

/** Bump when a variant's kernels change, so cached choices are measured again. */
export const KERNEL_VERSION = 3;

export interface TuneShape {
  batch: number;
  spatial: [number, number, number];
  cin: number;
  cout: number;
  kernel: [number, number, number];
  strides: [number, number, number];
  pad: 'same' | 'valid';
}

/** NDHWC input, DHWIO filter and output shapes of one convolution (tfjs' own shape rule). */
export function convShapes(s: TuneShape): { xShape: number[]; wShape: number[]; yShape: number[] } {
  const xShape = [s.batch, ...s.spatial, s.cin];
  const wShape = [...s.kernel, s.cin, s.cout];
  const info = tf.backend_util.computeConv3DInfo(
    xShape as never,
    wShape as never,
    s.strides,
    1,
    s.pad,
  );
  return {
    xShape,
    wShape,
    yShape: [s.batch, info.outDepth, info.outHeight, info.outWidth, s.cout],
  };
}

/** A full-resolution 32-channel conv, a deep 128-channel conv and a stride-2 downsampling. */
export const TUNE_SHAPES: TuneShape[] = [
  {
    batch: 2,
    spatial: [32, 32, 32],
    cin: 32,
    cout: 32,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 2,
    spatial: [16, 16, 16],
    cin: 128,
    cout: 128,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 2,
    spatial: [33, 33, 33],
    cin: 32,
    cout: 64,
    kernel: [3, 3, 3],
    strides: [2, 2, 2],
    pad: 'valid',
  },
];

/** Sums a step has: a bias gradient (2 × 32³ voxels, 32 channels) and a loss over 4 classes. */
export const REDUCE_TUNE_SHAPES: Array<{ shape: number[]; axis: number }> = [
  { shape: [65536, 32], axis: 0 },
  { shape: [262144], axis: 0 },
];

/** ms per pass and variant; a variant not timed (absent from the pass, no `subgroups`) is missing. */
export type PassTimes = Record<ConvPass, Partial<Record<ConvVariant, number>>>;
export type ReduceTimes = Record<ReduceVariant, number>;

/** The faster long-sum variant (a tie or a missing time keeps 'serial'). */
export function fastestReduce(ms: ReduceTimes | undefined): ReduceVariant {
  return ms && Number.isFinite(ms.subgroup) && ms.subgroup < ms.serial ? 'subgroup' : 'serial';
}

/** The fastest variant per pass (ties and missing times keep the default). */
export function fastestChoice(ms: PassTimes): ConvChoice {
  const c = { ...DEFAULT_CHOICE };
  for (const p of CONV_PASSES) {
    let best = ms[p][c[p]] ?? Infinity;
    for (const v of PASS_VARIANTS[p]) {
      const t = ms[p][v];
      if (t !== undefined && Number.isFinite(t) && !(t >= best)) {
        best = t;
        c[p] = v;
      }
    }
  }
  return c;
}

function validChoice(r: TuneRecord | undefined): ConvChoice | undefined {
  if (!r?.choice) return undefined;
  const ok = CONV_PASSES.every((p) =>
    (PASS_VARIANTS[p] as readonly string[]).includes(r.choice[p]),
  );
  // Only the conv passes: the record's choice also holds the reduce variant.
  return ok
    ? (Object.fromEntries(CONV_PASSES.map((p) => [p, r.choice[p]])) as ConvChoice)
    : undefined;
}

function validReduce(r: TuneRecord | undefined): ReduceVariant {
  const v = r?.choice?.reduce;
  return (REDUCE_VARIANTS as readonly string[]).includes(v ?? '') ? (v as ReduceVariant) : 'serial';
}

async function median(fn: () => Promise<void>, reps: number): Promise<number> {
  await fn(); // compiles the pipelines
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)];
}

/** Times every variant of every pass on `shapes` on the current webgpu backend (ms, summed). */
export async function timeVariants(shapes = TUNE_SHAPES, reps = 3): Promise<PassTimes> {
  if (tf.getBackend() !== 'webgpu') throw new Error('timeVariants needs the webgpu backend');
  const backend = tf.backend() as unknown as WebGPUBackendLike;
  const offered = (v: ConvVariant) => v !== 'subgroup' || hasSubgroups(backend);
  const ms = Object.fromEntries(
    CONV_PASSES.map((p) => [
      p,
      Object.fromEntries(PASS_VARIANTS[p].filter(offered).map((v) => [v, 0])),
    ]),
  ) as PassTimes;
  for (const s of shapes) {
    const { xShape, wShape, yShape } = convShapes(s);
    const x = tf.randomUniform(xShape);
    const w = tf.randomUniform(wShape);
    const dy = tf.randomUniform(yShape);
    const a = { strides: s.strides, pad: s.pad };
    try {
      for (const v of CONV_VARIANTS) {
        // As the registered kernels would run the variant (dw's subgroup hands the shapes it
        // declines to regblock), so a choice is timed for what it means.
        const runs: Record<ConvPass, () => TensorInfo | null> = {
          forward: () => forwardOf(v)(backend, x, w, a),
          dx: () => dxOf(v)(backend, dy, w, { ...a, inputShape: xShape }),
          dw: () => dwOf(v)(backend, x, dy, { ...a, filterShape: wShape }),
        };
        for (const p of CONV_PASSES) {
          const sum = ms[p][v];
          if (sum === undefined) continue;
          ms[p][v] =
            sum +
            (await median(async () => {
              const o = runs[p]();
              if (!o) throw new Error(`conv variant ${v} declined a tuning shape`);
              const t = tf.engine().makeTensorFromTensorInfo(o);
              await t.data();
              t.dispose();
            }, reps));
        }
      }
    } finally {
      tf.dispose([x, w, dy]);
    }
  }
  return ms;
}

/** Times both long-sum variants (ms, summed); needs a device with `subgroups`. */
export async function timeReduce(shapes = REDUCE_TUNE_SHAPES, reps = 3): Promise<ReduceTimes> {
  const backend = tf.backend() as unknown as WebGPUBackendLike;
  if (!hasSubgroups(backend)) throw new Error('timeReduce needs a device with subgroups');
  const before = reduceVariant();
  const ms: ReduceTimes = { serial: 0, subgroup: 0 };
  try {
    for (const s of shapes) {
      const x = tf.randomUniform(s.shape);
      try {
        for (const v of REDUCE_VARIANTS) {
          setReduceVariant(v);
          ms[v] += await median(async () => {
            const o = reduce(backend, x, { axis: s.axis, keepDims: false }, 'sum');
            if (!o) throw new Error('reduce declined a tuning shape');
            const t = tf.engine().makeTensorFromTensorInfo(o);
            await t.data();
            t.dispose();
          }, reps);
        }
      } finally {
        x.dispose();
      }
    }
  } finally {
    setReduceVariant(before);
  }
  return ms;
}

export interface TuneResult {
  choice: ConvChoice;
  /** The long-sum variant ('serial' where the device has no `subgroups`). */
  reduce: ReduceVariant;
  reduceMs?: ReduceTimes;
  source: 'cache' | 'measured';
  key: string;
  where: string;
  ms?: PassTimes;
}

/**
 * The cached choice for this adapter, or a fresh measurement (then cached). `retune` ignores
 * the cache. Runs on the current webgpu backend.
 */
export async function autotuneConv(
  adapter: Partial<AdapterFacts>,
  opts: {
    store?: TuneStore;
    shapes?: TuneShape[];
    reduceShapes?: typeof REDUCE_TUNE_SHAPES;
    reps?: number;
    retune?: boolean;
  } = {},
): Promise<TuneResult> {
  const store = opts.store ?? defaultTuneStore();
  const key = tuneKey(adapter, KERNEL_VERSION);
  if (!opts.retune) {
    const rec = await store.get(key).catch(() => undefined);
    const cached = validChoice(rec);
    if (cached)
      return { choice: cached, reduce: validReduce(rec), source: 'cache', key, where: store.where };
  }
  const ms = await timeVariants(opts.shapes, opts.reps);
  const choice = fastestChoice(ms);
  const reduceMs = hasSubgroups(tf.backend())
    ? await timeReduce(opts.reduceShapes, opts.reps)
    : undefined;
  const reduceChoice = fastestReduce(reduceMs);
  const record = {
    choice: { ...choice, reduce: reduceChoice },
    ms: reduceMs ? { ...ms, reduce: reduceMs } : ms,
    at: new Date().toISOString(),
  };
  // A cache that cannot be written (private browsing, read-only home) only costs a re-tune.
  await store.put(key, record).catch(() => undefined);
  return {
    choice,
    reduce: reduceChoice,
    reduceMs,
    source: 'measured',
    key,
    where: store.where,
    ms,
  };
}
