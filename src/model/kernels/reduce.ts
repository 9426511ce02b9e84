// Sum, Max, Mean and Softmax for tfjs-backend-webgpu. The stock reductions give every output a
// workgroup that reduces cooperatively through workgroup memory and barriers; for the shapes a
// U-Net step has (softmax over 2–8 classes for 10⁴–10⁶ voxels, per-channel sums over all voxels)
// that is one barrier-heavy workgroup per 3-element row, or 8 workgroups for 10⁵ elements.
// Here: one thread per output with a serial loop when there are many outputs or short rows, and
// a split pass (partial results, then a second reduction) when there are few outputs and long
// rows. Reduced axes must be one contiguous block (tfjs' usual case); otherwise null → stock.
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { rawProgram, type RawProgram, type WebGPUBackendLike } from './program.ts';
import { ENABLE_SUBGROUPS, hasSubgroups } from './subgroups.ts';
import { prod } from '../../util/numeric.ts';

export type ReduceOp = 'sum' | 'max' | 'mean';

/**
 * How the split pass of a long sum/mean computes its partial sums: 'serial' (one thread per
 * partial, a loop) or 'subgroup' (64 threads per partial, combined with subgroupAdd; only on a
 * device with the `subgroups` feature, else 'serial' runs). Max always runs serially: WGSL
 * leaves subgroupMax's NaN handling open, and the stock kernel propagates NaN.
 */
export const REDUCE_VARIANTS = ['serial', 'subgroup'] as const;
export type ReduceVariant = (typeof REDUCE_VARIANTS)[number];
let variant: ReduceVariant = 'serial';

export function setReduceVariant(v: ReduceVariant): void {
  variant = v;
}

export function reduceVariant(): ReduceVariant {
  return variant;
}

/** Parses a variant name (env or option); undefined for empty, a clear error for unknown. */
export function parseReduceVariant(s: string | undefined): ReduceVariant | undefined {
  if (s === undefined || s === '') return undefined;
  if ((REDUCE_VARIANTS as readonly string[]).includes(s)) return s as ReduceVariant;
  throw new Error(`unknown reduce kernel variant '${s}': use one of ${REDUCE_VARIANTS.join(', ')}`);
}

const SG_THREADS = 64;
const MAX_GROUPS = 65535;

/**
 * The split pass with subgroups: one workgroup of 64 threads per partial (o, s, i); each thread
 * sums a strided part of the chunk, subgroupAdd combines a subgroup, and thread 0 adds the
 * subgroup leaders' sums from workgroup memory (every thread writes its slot, non-leaders 0), so
 * nothing depends on the subgroup size or on how subgroups map to local indices. The leader is
 * the lane whose subgroupExclusiveAdd(1) is 0: tfjs writes the entry point, so the
 * subgroup_invocation_id builtin cannot be declared.
 */
function subgroupPartial(l: Layout, S: number, chunk: number, op: ReduceOp): RawProgram {
  const groups = l.outer * S * l.inner;
  const gx = Math.min(groups, MAX_GROUPS);
  const gy = Math.ceil(groups / gx);
  return {
    variableNames: ['x'],
    variableComponents: [1],
    outputShape: [l.outer, S, l.inner],
    shaderKey: `fnk_sgred1_${op}_${l.outer}_${l.r}_${l.inner}_${S}`,
    dispatchLayout: { x: [0, 1, 2] },
    dispatch: [gx, gy, 1],
    workgroupSize: [SG_THREADS, 1, 1],
    size: false,
    getUserCode: () => `${ENABLE_SUBGROUPS}
var<workgroup> lead : array<f32, ${SG_THREADS}>;
fn main(index : i32) {
  _ = uniforms.NAN;
  let g = i32(workgroupId.x + workgroupId.y * numWorkgroups.x);
  let lx = i32(localIndex);
  let valid = g < ${groups};
  let i = g % ${l.inner};
  let s = (g / ${l.inner}) % ${S};
  let o = g / ${l.inner * S};
  let end = select(0, min(${l.r}, (s + 1) * ${chunk}), valid);
  var acc = 0.0;
  for (var r = s * ${chunk} + lx; r < end; r += ${SG_THREADS}) {
    acc += x[(o * ${l.r} + r) * ${l.inner} + i];
  }
  let sum = subgroupAdd(acc);
  lead[lx] = select(0.0, sum, subgroupExclusiveAdd(1u) == 0u);
  workgroupBarrier();
  if (lx == 0 && valid) {
    var total = 0.0;
    for (var k = 0; k < ${SG_THREADS}; k++) { total += lead[k]; }
    result[g] = total;
  }
}
`,
  };
}

interface Layout {
  outer: number;
  r: number;
  inner: number;
}

function layout(shape: number[], axis: number | number[]): Layout | null {
  const axes = [...tf.util.parseAxisParam(axis, shape)].sort((a, b) => a - b);
  if (axes.length === 0) return null;
  if (axes.some((a, i) => i > 0 && a !== axes[i - 1] + 1)) return null;
  const a0 = axes[0];
  const a1 = axes[axes.length - 1];
  return {
    outer: prod(shape.slice(0, a0)),
    r: prod(shape.slice(a0, a1 + 1)),
    inner: prod(shape.slice(a1 + 1)),
  };
}

function outShape(shape: number[], axis: number | number[], keepDims: boolean): number[] {
  const axes = new Set(tf.util.parseAxisParam(axis, shape));
  return keepDims
    ? shape.map((d, i) => (axes.has(i) ? 1 : d))
    : shape.filter((_, i) => !axes.has(i));
}

const INIT: Record<ReduceOp, string> = { sum: '0.0', mean: '0.0', max: '-3.402823e+38' };
const STEP: Record<ReduceOp, (a: string, v: string) => string> = {
  sum: (a, v) => `${a} += ${v};`,
  mean: (a, v) => `${a} += ${v};`,
  // Propagate NaN like the stock kernel (max() of WGSL may drop it).
  max: (a, v) => `if (${v} > ${a} || ${v} != ${v}) { ${a} = ${v}; }`,
};

/** Reduce a [outer, r, inner] view over r, `scale` multiplying the result (1/R for mean). */
function runReduce(
  backend: WebGPUBackendLike,
  x: TensorInfo,
  l: Layout,
  op: ReduceOp,
  shape: number[],
  scale: number,
  output?: TensorInfo,
): TensorInfo {
  const outputs = l.outer * l.inner;
  const finish = op === 'max' ? 'acc' : scale === 1 ? 'acc' : `acc * ${scale.toPrecision(9)}`;
  // Few outputs, long rows: split each row into S parts first.
  if (outputs < 256 && l.r > 2048) {
    const S = Math.min(Math.ceil(l.r / 256), Math.ceil(4096 / outputs));
    const chunk = Math.ceil(l.r / S);
    const partial =
      variant === 'subgroup' && op !== 'max' && hasSubgroups(backend)
        ? subgroupPartial(l, S, chunk, op)
        : rawProgram({
            key: `red1_${op}_${l.outer}_${l.r}_${l.inner}_${S}`,
            inputs: ['x'],
            components: [1],
            outputShape: [l.outer, S, l.inner],
            threads: outputs * S,
            body: `
  let i = t % ${l.inner};
  let s = (t / ${l.inner}) % ${S};
  let o = t / ${l.inner * S};
  var acc = ${INIT[op]};
  let end = min(${l.r}, (s + 1) * ${chunk});
  for (var r = s * ${chunk}; r < end; r++) {
    let v = x[(o * ${l.r} + r) * ${l.inner} + i];
    ${STEP[op]('acc', 'v')}
  }
  result[t] = acc;`,
          });
    const tmp = backend.runWebGPUProgram(partial, [x], 'float32');
    const out = runReduce(
      backend,
      tmp,
      { outer: l.outer, r: S, inner: l.inner },
      op === 'mean' ? 'sum' : op,
      shape,
      scale,
      output,
    );
    backend.disposeData(tmp.dataId);
    return out;
  }
  const program = rawProgram({
    key: `red_${op}_${l.outer}_${l.r}_${l.inner}_${scale}`,
    inputs: ['x'],
    components: [1],
    outputShape: shape,
    threads: outputs,
    body: `
  let i = t % ${l.inner};
  let o = t / ${l.inner};
  var acc = ${INIT[op]};
  for (var r = 0; r < ${l.r}; r++) {
    let v = x[(o * ${l.r} + r) * ${l.inner} + i];
    ${STEP[op]('acc', 'v')}
  }
  result[t] = ${finish};`,
  });
  return backend.runWebGPUProgram(program, [x], 'float32', undefined, output);
}

export function reduce(
  backend: WebGPUBackendLike,
  x: TensorInfo,
  attrs: { axis: number | number[]; keepDims: boolean },
  op: ReduceOp,
): TensorInfo | null {
  if (x.dtype !== 'float32' || x.shape.length === 0) return null;
  const l = layout(x.shape, attrs.axis);
  if (!l || l.outer * l.inner === 0 || l.r === 0) return null;
  return runReduce(
    backend,
    x,
    l,
    op,
    outShape(x.shape, attrs.axis, attrs.keepDims),
    op === 'mean' ? 1 / l.r : 1,
  );
}

/** Softmax over the last axis: one thread per row (rows of up to 256 classes). */
export function softmax(
  backend: WebGPUBackendLike,
  logits: TensorInfo,
  attrs: { dim: number },
): TensorInfo | null {
  const rank = logits.shape.length;
  if (logits.dtype !== 'float32' || rank === 0) return null;
  const dim = attrs.dim < 0 ? attrs.dim + rank : attrs.dim;
  if (dim !== rank - 1) return null;
  const C = logits.shape[rank - 1];
  const rows = prod(logits.shape) / Math.max(C, 1);
  if (C === 0 || C > 256 || rows === 0) return null;
  const program = rawProgram({
    key: `softmax_${rows}_${C}`,
    inputs: ['logits'],
    components: [1],
    outputShape: [...logits.shape],
    threads: rows,
    body: `
  let base = t * ${C};
  var m = logits[base];
  for (var c = 1; c < ${C}; c++) { m = max(m, logits[base + c]); }
  var s = 0.0;
  for (var c = 0; c < ${C}; c++) { s += exp(logits[base + c] - m); }
  let inv = 1.0 / s;
  for (var c = 0; c < ${C}; c++) { result[base + c] = exp(logits[base + c] - m) * inv; }`,
  });
  return backend.runWebGPUProgram(program, [logits], 'float32');
}
