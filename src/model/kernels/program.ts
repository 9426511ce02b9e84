// The part of tfjs-backend-webgpu's program interface our kernels use, and helpers shared by
// them. A program here is a plain object that tfjs turns into a compute pipeline: tfjs declares
// the bindings (`result`, then one array per variable name, as vec4<f32> where
// variableComponents says 4) and a uniform block, and calls our `main(index)` from its entry
// point. We compute our own linear thread id from workgroupId, so the dispatch can be folded
// into two dimensions when it exceeds the 65535-workgroups-per-dimension limit.
import type { TensorInfo } from '@tensorflow/tfjs';

/** The part of tfjs-backend-webgpu's backend this module uses. */
export interface WebGPUBackendLike {
  runWebGPUProgram(
    program: object,
    inputs: TensorInfo[],
    dtype: 'float32' | 'int32',
    uniforms?: unknown[],
    output?: TensorInfo,
  ): TensorInfo;
  makeTensorInfo(shape: number[], dtype: 'float32' | 'int32'): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

export const WORKGROUP = 64;
const MAX_GROUPS = 65535;

export interface RawProgram {
  variableNames: string[];
  variableComponents: number[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size: boolean;
  getUserCode(): string;
}

/**
 * A program of `threads` invocations whose WGSL body sees `let t : i32` (the thread id, already
 * checked to be < threads). `body` must be a complete function body after that.
 */
export function rawProgram(opts: {
  key: string;
  inputs: string[];
  components: number[];
  outputShape: number[];
  threads: number;
  prelude?: string;
  body: string;
}): RawProgram {
  const groups = Math.max(1, Math.ceil(opts.threads / WORKGROUP));
  const gx = Math.min(groups, MAX_GROUPS);
  const gy = Math.ceil(groups / gx);
  return {
    variableNames: opts.inputs,
    variableComponents: opts.components,
    outputShape: opts.outputShape,
    shaderKey: `fnk_${opts.key}_${opts.threads}_${opts.components.join('')}`,
    dispatchLayout: { x: opts.outputShape.map((_, i) => i) },
    dispatch: [gx, gy, 1],
    workgroupSize: [WORKGROUP, 1, 1],
    size: false,
    getUserCode: () => `
${opts.prelude ?? ''}
fn main(index : i32) {
  // tfjs binds its uniform buffer; a static use keeps it in the pipeline's 'auto' layout.
  _ = uniforms.NAN;
  let t = i32((workgroupId.x + workgroupId.y * numWorkgroups.x) * ${WORKGROUP}u + localIndex);
  if (t >= ${opts.threads}) { return; }
${opts.body}
}
`,
  };
}

/**
 * The second pass of a split-K GEMM: sums S partial results laid out [S, elems] into an output of
 * `outputShape` and frees the partials. Element t goes to `result[index]`, where `index` is a WGSL
 * expression over `t` (default t itself) that may call functions defined in `prelude`.
 */
export function sumSplits(
  backend: WebGPUBackendLike,
  partials: TensorInfo,
  o: {
    key: string;
    S: number;
    elems: number;
    outputShape: number[];
    index?: string;
    prelude?: string;
  },
  output?: TensorInfo,
): TensorInfo {
  const program = rawProgram({
    key: o.key,
    inputs: ['partials'],
    components: [1],
    outputShape: o.outputShape,
    threads: o.elems,
    prelude: o.prelude,
    body: `
  var s = 0.0;
  for (var p = 0; p < ${o.S}; p++) { s += partials[p * ${o.elems} + t]; }
  result[${o.index ?? 't'}] = s;`,
  });
  const out = backend.runWebGPUProgram(program, [partials], 'float32', undefined, output);
  backend.disposeData(partials.dataId);
  return out;
}

/** Largest block size ≤ cap that divides n (n itself when n ≤ cap). */
export function blockOf(n: number, cap = 8): number {
  if (n <= cap) return n;
  for (const b of [8, 4, 2]) if (b <= cap && n % b === 0) return b;
  return 1;
}

/** WGSL vector type for 1 or 4 components. */
export const vt = (c: number) => (c === 4 ? 'vec4<f32>' : 'f32');
export const zero = (c: number) => (c === 4 ? 'vec4<f32>(0.0)' : '0.0');
/** Component e of a value of 1 or 4 components. */
export const comp = (v: string, c: number, e: number) => (c === 4 ? `${v}[${e}]` : v);
export const range = (n: number) => Array.from({ length: n }, (_, i) => i);
