// A tiled implicit-GEMM WebGPU program for tfjs-backend-webgpu: C[M, N] = A[M, K] · B[K, N]
// where A and B are never materialised: each kernel supplies WGSL that loads one element of A
// or B from its real inputs (im2col on the fly) and the flat output index of C[m, n].
//
// A workgroup computes a TM×TN tile of C; its threads stage TM×TK of A and TK×TN of B in
// workgroup memory, then each thread accumulates RM×RN outputs from it. All sizes are baked into
// the shader as constants (the shader key carries them), so the index arithmetic is divisions by
// constants. When the output has few tiles, K is split over workgroups (split-K) into a
// temporary [S, M·N] buffer and a second small program sums the S partial results.
import type { TensorInfo } from '@tensorflow/tfjs';

/** The part of tfjs-backend-webgpu's backend this module uses. */
export interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: TensorInfo[], dtype: 'float32', uniforms?: unknown[], output?: TensorInfo): TensorInfo;
  makeTensorInfo(shape: number[], dtype: 'float32'): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

export interface GemmSpec {
  /** Unique among all shaders this spec can produce (the baked constants are appended). */
  name: string;
  M: number;
  N: number;
  K: number;
  /** Names of the two input bindings (arrays of f32). */
  inputs: [string, string];
  /** WGSL body of `fn tileA(m: i32, k: i32) -> f32`, called only with m < M, k < K. */
  loadA: string;
  /** WGSL body of `fn tileB(k: i32, n: i32) -> f32`, called only with k < K, n < N. */
  loadB: string;
  /** WGSL body of `fn outIndex(m: i32, n: i32) -> i32`: where C[m, n] goes in the output. */
  outIndex: string;
  /** Which index of A varies fastest in memory: k (e.g. channels of an im2col row) or m. */
  aKFast: boolean;
  /** Extra WGSL constants/helpers shared by loadA/loadB/outIndex. */
  prelude?: string;
}

export interface Tiling {
  TM: number;
  TN: number;
  TK: number;
  RM: number;
  RN: number;
  tx: number;
  ty: number;
  splits: number;
  /** K per split, a multiple of TK. */
  kPerSplit: number;
}

const pow2ceil = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

export function chooseTiling(M: number, N: number, K: number): Tiling {
  const RN = 4;
  const RM = 4;
  const TN = Math.min(64, Math.max(4, pow2ceil(N)));
  const tx = TN / RN;
  let threads = TN >= 64 ? 128 : 64;
  let ty = threads / tx;
  // Do not stage far more rows than there are.
  while (ty > 4 && ty * RM >= 2 * pow2ceil(M)) {
    ty /= 2;
    threads /= 2;
  }
  // Few output tiles: smaller row tiles first (more workgroups), then split K below.
  const wanted = 64;
  while (threads > 16 && ty > 1 && Math.ceil(M / (ty * RM)) * Math.ceil(N / TN) < wanted) {
    ty /= 2;
    threads /= 2;
  }
  const TM = ty * RM;
  // Workgroup memory (TM + TN)·TK floats ≤ 12 KiB (WebGPU guarantees 16 KiB).
  let TK = 16;
  while (TK > 4 && (TM + TN) * TK > 3072) TK /= 2;
  const tiles = Math.ceil(M / TM) * Math.ceil(N / TN);
  const kTiles = Math.ceil(K / TK);
  // Split K when there are still few output tiles, keeping ≥ 4 k-tiles per split.
  let splits = 1;
  if (tiles < wanted) splits = Math.max(1, Math.min(Math.ceil(wanted / tiles), Math.floor(kTiles / 4)));
  if (K === 0) return { TM, TN, TK, RM, RN, tx, ty, splits: 1, kPerSplit: 0 };
  const kPerSplit = Math.ceil(kTiles / splits) * TK;
  splits = Math.ceil(K / kPerSplit);
  return { TM, TN, TK, RM, RN, tx, ty, splits, kPerSplit };
}

const flatLayout = (rank: number) => ({ x: Array.from({ length: rank }, (_, i) => i) });

class GemmProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size = false;
  private readonly tiles: number;
  constructor(
    private readonly spec: GemmSpec,
    private readonly t: Tiling,
    outputShape: number[],
    /** true: write partial sums to tmp[split, m, n] instead of outIndex(m, n). */
    private readonly partial: boolean,
  ) {
    this.variableNames = [...spec.inputs];
    this.outputShape = outputShape;
    this.dispatchLayout = flatLayout(outputShape.length);
    this.workgroupSize = [t.tx * t.ty, 1, 1];
    this.tiles = Math.ceil(spec.M / t.TM) * Math.ceil(spec.N / t.TN) * t.splits;
    this.dispatch = [this.tiles, 1, 1];
    const { M, N, K } = spec;
    this.shaderKey = `fastgemm_${spec.name}_${M}_${N}_${K}_${t.TM}_${t.TN}_${t.TK}_${t.tx}_${t.ty}_${t.splits}_${t.kPerSplit}_${partial}`;
  }

  getUserCode(): string {
    const { M, N, K, loadA, loadB, outIndex, aKFast, prelude } = this.spec;
    const { TM, TN, TK, RM, RN, tx, ty, kPerSplit } = this.t;
    const threads = tx * ty;
    const mTiles = Math.ceil(M / TM);
    const nTiles = Math.ceil(N / TN);
    const kTiles = kPerSplit / TK;
    const store = this.partial
      ? `result[split * ${M * N} + m * ${N} + n] = acc[i * ${RN} + j];`
      : `result[outIndex(m, n)] = acc[i * ${RN} + j];`;
    return `
${prelude ?? ''}
fn tileA(m : i32, k : i32) -> f32 { ${loadA} }
fn tileB(k : i32, n : i32) -> f32 { ${loadB} }
fn outIndex(m : i32, n : i32) -> i32 { ${outIndex} }

var<workgroup> As : array<f32, ${TM * TK}>;
var<workgroup> Bs : array<f32, ${TK * TN}>;

fn main(index : i32) {
  // tfjs binds its uniform buffer; a static use keeps it in the pipeline's 'auto' layout.
  _ = uniforms.NAN;
  let lid = i32(localIndex);
  // Linear workgroup index: tfjs may fold a long x-dispatch into x·y(·z).
  let wg = i32(workgroupId.x + workgroupId.y * numWorkgroups.x + workgroupId.z * numWorkgroups.x * numWorkgroups.y);
  let live = wg < ${this.tiles};
  let nTile = wg % ${nTiles};
  let mTile = (wg / ${nTiles}) % ${mTiles};
  let split = wg / ${nTiles * mTiles};
  let m0 = mTile * ${TM};
  let n0 = nTile * ${TN};
  let kBase = split * ${kPerSplit};
  let tn = lid % ${tx};
  let tm = lid / ${tx};

  var acc : array<f32, ${RM * RN}>;
  for (var i = 0; i < ${RM * RN}; i++) { acc[i] = 0.0; }

  for (var kt = 0; kt < ${kTiles}; kt++) {
    let k0 = kBase + kt * ${TK};
    for (var e = lid; e < ${TM * TK}; e += ${threads}) {
      ${aKFast ? `let kk = e % ${TK}; let r = e / ${TK};` : `let r = e % ${TM}; let kk = e / ${TM};`}
      let m = m0 + r;
      let k = k0 + kk;
      var v = 0.0;
      if (live && m < ${M} && k < ${K}) { v = tileA(m, k); }
      As[kk * ${TM} + r] = v;
    }
    for (var e = lid; e < ${TK * TN}; e += ${threads}) {
      let c = e % ${TN};
      let kk = e / ${TN};
      let n = n0 + c;
      let k = k0 + kk;
      var v = 0.0;
      if (live && n < ${N} && k < ${K}) { v = tileB(k, n); }
      Bs[kk * ${TN} + c] = v;
    }
    workgroupBarrier();
    for (var kk = 0; kk < ${TK}; kk++) {
      var a : array<f32, ${RM}>;
      var b : array<f32, ${RN}>;
      for (var i = 0; i < ${RM}; i++) { a[i] = As[kk * ${TM} + tm + i * ${ty}]; }
      for (var j = 0; j < ${RN}; j++) { b[j] = Bs[kk * ${TN} + tn + j * ${tx}]; }
      for (var i = 0; i < ${RM}; i++) {
        for (var j = 0; j < ${RN}; j++) {
          acc[i * ${RN} + j] = fma(a[i], b[j], acc[i * ${RN} + j]);
        }
      }
    }
    workgroupBarrier();
  }

  if (live) {
    for (var i = 0; i < ${RM}; i++) {
      let m = m0 + tm + i * ${ty};
      if (m >= ${M}) { continue; }
      for (var j = 0; j < ${RN}; j++) {
        let n = n0 + tn + j * ${tx};
        if (n < ${N}) { ${store} }
      }
    }
  }
}
`;
  }
}

/** Sums tmp[S, M·N] over S into out[outIndex(m, n)]. */
class SplitSumProgram {
  variableNames = ['partials'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = false;
  constructor(
    private readonly spec: GemmSpec,
    private readonly splits: number,
    outputShape: number[],
  ) {
    this.outputShape = outputShape;
    this.dispatchLayout = flatLayout(outputShape.length);
    this.dispatch = [Math.ceil((spec.M * spec.N) / 64), 1, 1];
    this.shaderKey = `fastgemmsum_${spec.name}_${spec.M}_${spec.N}_${splits}`;
  }
  getUserCode(): string {
    const { M, N, outIndex, prelude } = this.spec;
    return `
${prelude ?? ''}
fn outIndex(m : i32, n : i32) -> i32 { ${outIndex} }
fn main(index : i32) {
  _ = uniforms.NAN;
  let wg = i32(workgroupId.x + workgroupId.y * numWorkgroups.x + workgroupId.z * numWorkgroups.x * numWorkgroups.y);
  let idx = wg * 64 + i32(localIndex);
  if (idx < ${M * N}) {
    var s = 0.0;
    for (var p = 0; p < ${this.splits}; p++) { s += partials[p * ${M * N} + idx]; }
    result[outIndex(idx / ${N}, idx % ${N})] = s;
  }
}
`;
  }
}

/**
 * Runs C = A·B into `output` (allocated with outShape when not given). Writes exactly the
 * elements outIndex(m, n) for m < M, n < N.
 */
export function runGemm(
  backend: WebGPUBackendLike,
  spec: GemmSpec,
  inputs: [TensorInfo, TensorInfo],
  outShape: number[],
  output?: TensorInfo,
  tiling: Tiling = chooseTiling(spec.M, spec.N, spec.K),
): TensorInfo {
  const out = output ?? backend.makeTensorInfo(outShape, 'float32');
  if (spec.M === 0 || spec.N === 0) return out;
  if (tiling.splits === 1) {
    backend.runWebGPUProgram(new GemmProgram(spec, tiling, outShape, false), inputs, 'float32', undefined, out);
    return out;
  }
  const tmpShape = [tiling.splits, 1, 1, spec.M, spec.N];
  const tmp = backend.runWebGPUProgram(new GemmProgram(spec, tiling, tmpShape, true), inputs, 'float32');
  backend.runWebGPUProgram(new SplitSumProgram(spec, tiling.splits, outShape), [tmp], 'float32', undefined, out);
  backend.disposeData(tmp.dataId);
  return out;
}
