// The 'tiled' variant of Conv3D / Conv3DBackpropInputV2 / Conv3DBackpropFilterV2: the classic
// GPU GEMM with workgroup (shared) memory. Each workgroup of 64 threads computes a BM × BN block
// of the implicit GEMM's output; per step of BK along the reduction axis it stages a BM × BK
// block of the gathered input (im2col on the fly) and a BK × BN block of the other operand in
// workgroup memory, synchronises, and every thread accumulates TM × TN outputs from there. On a
// GPU this reuses each global load BM (or BN) times from on-chip memory; on SwiftShader barriers
// are coroutine switches, so the register-blocked variant (conv3d.ts) wins there. Which variant
// runs is chosen per adapter (autotune.ts).
//
// Same GEMMs as conv3d.ts (NDHWC, filter [kd, kh, kw, in, out]):
//   forward  M = output voxels,            N = out channels, K = taps × in channels
//   dx       M = voxels of one stride parity class, N = in channels, K = class taps × out channels
//   dw       M = taps × in channels,        N = out channels, K = output voxels (split-K)
// tfjs' entry point sets workgroupId / localIndex as private variables, which WGSL's uniformity
// analysis does not treat as uniform: no thread may return before a barrier, so out-of-range
// rows and columns load zeros (clamped indices + select, no branches) and only the final stores
// are guarded.
import type { TensorInfo } from '@tensorflow/tfjs';
import {
  backpropFilterGeometry,
  backpropInputGeometry,
  forwardGeometry,
  key,
  type BackpropFilterAttrs,
  type BackpropInputAttrs,
  type ForwardAttrs,
  type Geometry,
  type V3,
} from './conv3d.ts';
import { range, sumSplits, type RawProgram, type WebGPUBackendLike } from './program.ts';

const THREADS = 64; // 8 × 8
const BM = 32;
const BK = 16;
const MAX_GROUPS = 65535;

interface TiledGemm {
  key: string;
  inputs: string[];
  outputShape: number[];
  M: number;
  N: number;
  K: number;
  /** Split-K parts: part s covers K range [s·KPER, (s+1)·KPER) and stores with `split` = s. */
  splits?: number;
  /** WGSL body of `fn loadA(m : i32, k : i32) -> f32`, called with m < M, k < K only. */
  loadA: string;
  /** WGSL body of `fn loadB(k : i32, n : i32) -> f32`, called with k < K, n < N only. */
  loadB: string;
  /** WGSL body of `fn outIndex(m : i32, n : i32, split : i32) -> i32`. */
  outIndex: string;
}

/** The K range per split (whole BK steps) and the number of splits that leaves. */
function splitPlan(K: number, want: number): { kPer: number; splits: number } {
  const steps = Math.ceil(K / BK);
  const S = Math.max(1, Math.min(want, steps));
  const kPer = Math.ceil(steps / S) * BK;
  return { kPer, splits: K === 0 ? 1 : Math.ceil(K / kPer) };
}

function tiledGemm(o: TiledGemm): RawProgram {
  const BN = o.N <= 16 ? 16 : 32;
  const TM = BM / 8;
  const TN = BN / 8;
  const tilesM = Math.ceil(o.M / BM);
  const tilesN = Math.ceil(o.N / BN);
  const { kPer, splits } = splitPlan(o.K, o.splits ?? 1);
  const groups = tilesM * tilesN * splits;
  const gx = Math.min(groups, MAX_GROUPS);
  const gy = Math.ceil(groups / gx);
  const aLoads = (BM * BK) / THREADS;
  const bLoads = Math.ceil((BK * BN) / THREADS);
  const I = range(TM);
  const J = range(TN);
  const code = `
var<workgroup> As : array<f32, ${BM * BK}>;
var<workgroup> Bs : array<f32, ${BK * BN}>;
fn loadA(m : i32, k : i32) -> f32 {
${o.loadA}
}
fn loadB(k : i32, n : i32) -> f32 {
${o.loadB}
}
fn outIndex(m : i32, n : i32, split : i32) -> i32 {
${o.outIndex}
}
fn main(index : i32) {
  _ = uniforms.NAN;
  let g = i32(workgroupId.x + workgroupId.y * numWorkgroups.x);
  let l = i32(localIndex);
  let m0 = ((g / ${tilesN}) % ${tilesM}) * ${BM};
  let n0 = (g % ${tilesN}) * ${BN};
  let split = g / ${tilesN * tilesM};
  let kBeg = split * ${kPer};
  let kEnd = min(${o.K}, kBeg + ${kPer});
  let tx = l % 8;
  let ty = l / 8;
  ${I.map((i) => J.map((j) => `var c${i}_${j} = 0.0;`).join(' ')).join('\n  ')}
  for (var kt = 0; kt < ${kPer}; kt += ${BK}) {
    let k0 = kBeg + kt;
    for (var r = 0; r < ${aLoads}; r++) {
      let e = l + ${THREADS} * r;
      let am = e / ${BK};
      let ak = e % ${BK};
      let va = loadA(min(m0 + am, ${o.M - 1}), clamp(k0 + ak, 0, ${Math.max(0, o.K - 1)}));
      As[ak * ${BM} + am] = select(0.0, va, m0 + am < ${o.M} && k0 + ak < kEnd);
    }
    for (var r = 0; r < ${bLoads}; r++) {
      let e = l + ${THREADS} * r;
      if (e < ${BK * BN}) {
        let bk = e / ${BN};
        let bn = e % ${BN};
        let vb = loadB(clamp(k0 + bk, 0, ${Math.max(0, o.K - 1)}), min(n0 + bn, ${o.N - 1}));
        Bs[e] = select(0.0, vb, n0 + bn < ${o.N} && k0 + bk < kEnd);
      }
    }
    workgroupBarrier();
    for (var kk = 0; kk < ${BK}; kk++) {
      ${I.map((i) => `let a${i} = As[kk * ${BM} + ty * ${TM} + ${i}];`).join(' ')}
      ${J.map((j) => `let b${j} = Bs[kk * ${BN} + tx * ${TN} + ${j}];`).join(' ')}
      ${I.map((i) => J.map((j) => `c${i}_${j} += a${i} * b${j};`).join(' ')).join('\n      ')}
    }
    workgroupBarrier();
  }
  if (split < ${splits}) {
    ${I.map(
      (i) => `
    let mr${i} = m0 + ty * ${TM} + ${i};
    if (mr${i} < ${o.M}) {
      ${J.map((j) => `if (n0 + tx * ${TN} + ${j} < ${o.N}) { result[outIndex(mr${i}, n0 + tx * ${TN} + ${j}, split)] = c${i}_${j}; }`).join('\n      ')}
    }`,
    ).join('')}
  }
}
`;
  return {
    variableNames: o.inputs,
    variableComponents: o.inputs.map(() => 1),
    outputShape: o.outputShape,
    shaderKey: `fnk_tiled_${o.key}_${o.M}_${o.N}_${o.K}_${splits}`,
    dispatchLayout: { x: o.outputShape.map((_, i) => i) },
    dispatch: [gx, gy, 1],
    workgroupSize: [THREADS, 1, 1],
    size: false,
    getUserCode: () => code,
  };
}

/**
 * Number of splits along K so that a small M × N grid still fills the device: the deep stages of
 * an nnU-Net plan (e.g. 4×4×4 voxels × 320 channels, K = 27 · 320) have only a few dozen tiles,
 * each with a long K loop, which would leave most of a GPU idle. Each split keeps ≥ 4 BK steps.
 */
function splitsFor(o: { M: number; N: number; K: number }, target = 256): number {
  const tiles = Math.ceil(o.M / BM) * Math.ceil(o.N / (o.N <= 16 ? 16 : 32));
  return Math.max(1, Math.min(Math.ceil(o.K / (4 * BK)), Math.ceil(target / tiles)));
}

/**
 * Runs `gemm` with split-K where splitsFor asks for it: the splits store partial M × N results
 * ([S, M·N] temporary, at most `target` tiles' worth), and a second pass sums them into the
 * output at `outIndex(m, n)` (WGSL body; the same mapping the unsplit GEMM stores with).
 */
function runSplitK(
  backend: WebGPUBackendLike,
  o: Omit<TiledGemm, 'splits' | 'outIndex' | 'outputShape'> & { outIndex: string },
  outputShape: number[],
  inputs: TensorInfo[],
  output?: TensorInfo,
): TensorInfo {
  const { splits: S } = splitPlan(o.K, splitsFor(o));
  if (S === 1)
    return backend.runWebGPUProgram(
      tiledGemm({ ...o, outputShape }),
      inputs,
      'float32',
      undefined,
      output,
    );
  const elems = o.M * o.N;
  const tmp = backend.runWebGPUProgram(
    tiledGemm({
      ...o,
      key: `${o.key}_sk`,
      splits: S,
      outputShape: [S, elems],
      outIndex: `  return split * ${elems} + m * ${o.N} + n;`,
    }),
    inputs,
    'float32',
  );
  return sumSplits(
    backend,
    tmp,
    {
      key: `tiled_sksum_${o.key}_${S}`,
      S,
      elems,
      outputShape,
      prelude: `fn outIndex(m : i32, n : i32) -> i32 {\n${o.outIndex}\n}`,
      index: `outIndex(t / ${o.N}, t % ${o.N})`,
    },
    output,
  );
}

/** WGSL: decompose `v` (an i32 expression name) into d, h, w of extents [, H, W] and batch. */
const voxel = (v: string, [D, H, W]: V3, p: string) => `
  let ${p}w = ${v} % ${W};
  let ${p}h = (${v} / ${W}) % ${H};
  let ${p}d = (${v} / ${W * H}) % ${D};
  let ${p}b = ${v} / ${W * H * D};`;

const tap = (t: string, [, KH, KW]: V3) => `
  let fw = ${t} % ${KW};
  let fh = (${t} / ${KW}) % ${KH};
  let fd = ${t} / ${KW * KH};`;

/** WGSL: the flat index of x[b, o·s − pad + f, ci] or -1 when it is padding. */
const inputAt = (g: Geometry) => `
  let id = od * ${g.s[0]} - ${g.pad[0]} + fd;
  let ih = oh * ${g.s[1]} - ${g.pad[1]} + fh;
  let iw = ow * ${g.s[2]} - ${g.pad[2]} + fw;
  let ok = id >= 0 && id < ${g.inS[0]} && ih >= 0 && ih < ${g.inS[1]} && iw >= 0 && iw < ${g.inS[2]};`;

export function conv3dForwardTiled(
  backend: WebGPUBackendLike,
  x: TensorInfo,
  w: TensorInfo,
  attrs: ForwardAttrs,
  output?: TensorInfo,
): TensorInfo | null {
  const g = forwardGeometry(x, w, attrs);
  if (!g) return null;
  const [ID, IH, IW] = g.inS;
  const M = g.batch * g.outS[0] * g.outS[1] * g.outS[2];
  return runSplitK(
    backend,
    {
      key: `c3f_${key(g)}`,
      inputs: ['x', 'w'],
      M,
      N: g.cout,
      K: g.k[0] * g.k[1] * g.k[2] * g.cin,
      loadA: `${voxel('m', g.outS, 'o')}
  let ci = k % ${g.cin};
  ${tap(`(k / ${g.cin})`, g.k)}
  ${inputAt(g)}
  return select(0.0, x[select(0, (((ob * ${ID} + id) * ${IH} + ih) * ${IW} + iw) * ${g.cin} + ci, ok)], ok);`,
      loadB: `  return w[k * ${g.cout} + n];`,
      outIndex: `  return m * ${g.cout} + n;`,
    },
    [g.batch, ...g.outS, g.cout],
    [x, w],
    output,
  );
}

export function conv3dBackpropInputTiled(
  backend: WebGPUBackendLike,
  dy: TensorInfo,
  w: TensorInfo,
  attrs: BackpropInputAttrs,
  output?: TensorInfo,
): TensorInfo | null {
  const g = backpropInputGeometry(dy, w, attrs);
  if (!g) return null;
  const [ID, IH, IW] = g.inS;
  const [OD, OH, OW] = g.outS;
  const [, KH, KW] = g.k;
  const [sd, sh, sw] = g.s;
  const out = output ?? backend.makeTensorInfo([...attrs.inputShape], 'float32');
  // One dispatch per stride parity class, as in conv3d.ts: input voxels i = p + s·j, whose
  // contributing taps are f = r + s·t with r ≡ p + pad (mod s).
  for (let pd = 0; pd < sd; pd++)
    for (let ph = 0; ph < sh; ph++)
      for (let pw = 0; pw < sw; pw++) {
        const p: V3 = [pd, ph, pw];
        const ext = p.map((pa, a) => Math.ceil((g.inS[a] - pa) / g.s[a])) as V3;
        if (ext.some((e) => e <= 0)) continue;
        const r = p.map((pa, a) => (pa + g.pad[a]) % g.s[a]) as V3;
        const taps = r.map((ra, a) => (ra < g.k[a] ? Math.ceil((g.k[a] - ra) / g.s[a]) : 0)) as V3;
        const [, TH, TW] = taps;
        const M = g.batch * ext[0] * ext[1] * ext[2];
        const K = taps[0] * taps[1] * taps[2] * g.cout;
        const classVoxel = `${voxel('m', ext, 'j')}
  let id = ${pd} + ${sd} * jd; let ih = ${ph} + ${sh} * jh; let iw = ${pw} + ${sw} * jw;`;
        const classTap = `
  let co = k % ${g.cout};
  let ct = k / ${g.cout};
  let fw = ${r[2]} + ${sw} * (ct % ${TW || 1});
  let fh = ${r[1]} + ${sh} * ((ct / ${TW || 1}) % ${TH || 1});
  let fd = ${r[0]} + ${sd} * (ct / ${(TW || 1) * (TH || 1)});`;
        runSplitK(
          backend,
          {
            key: `c3x_${key(g)}_${p.join('')}`,
            inputs: ['dy', 'w'],
            M,
            N: g.cin,
            K,
            loadA: `${classVoxel}
  ${classTap}
  let nd = id + ${g.pad[0]} - fd; let nh = ih + ${g.pad[1]} - fh; let nw = iw + ${g.pad[2]} - fw;
  let ok = nd >= 0 && nh >= 0 && nw >= 0 && nd < ${OD * sd} && nh < ${OH * sh} && nw < ${OW * sw};
  return select(0.0, dy[select(0, (((jb * ${OD} + nd / ${sd}) * ${OH} + nh / ${sh}) * ${OW} + nw / ${sw}) * ${g.cout} + co, ok)], ok);`,
            loadB: `${classTap}
  return w[(((fd * ${KH} + fh) * ${KW} + fw) * ${g.cin} + n) * ${g.cout} + co];`,
            outIndex: `${classVoxel}
  return (((jb * ${ID} + id) * ${IH} + ih) * ${IW} + iw) * ${g.cin} + n;`,
          },
          [...attrs.inputShape],
          [dy, w],
          out,
        );
      }
  return out;
}

export function conv3dBackpropFilterTiled(
  backend: WebGPUBackendLike,
  x: TensorInfo,
  dy: TensorInfo,
  attrs: BackpropFilterAttrs,
  output?: TensorInfo,
): TensorInfo | null {
  const g = backpropFilterGeometry(x, dy, attrs);
  if (!g) return null;
  const [ID, IH, IW] = g.inS;
  const M = g.k[0] * g.k[1] * g.k[2] * g.cin;
  const N = g.cout;
  const K = g.batch * g.outS[0] * g.outS[1] * g.outS[2];
  return runSplitK(
    backend,
    {
      key: `c3w_${key(g)}`,
      inputs: ['x', 'dy'],
      M,
      N,
      K,
      loadA: `${voxel('k', g.outS, 'o')}
  let ci = m % ${g.cin};
  ${tap(`(m / ${g.cin})`, g.k)}
  ${inputAt(g)}
  return select(0.0, x[select(0, (((ob * ${ID} + id) * ${IH} + ih) * ${IW} + iw) * ${g.cin} + ci, ok)], ok);`,
      loadB: `  return dy[k * ${N} + n];`,
      outIndex: `  return m * ${N} + n;`,
    },
    [...attrs.filterShape],
    [x, dy],
    output,
  );
}
