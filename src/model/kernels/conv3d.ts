// Conv3D, Conv3DBackpropInputV2 and Conv3DBackpropFilterV2 for tfjs-backend-webgpu as
// register-blocked implicit GEMMs. NDHWC input, filter [kd, kh, kw, in, out], dilation 1,
// strides 1 or 2, kernel edges ≤ 3, float32: what the U-Net uses (conv.ts: explicit padding +
// 'valid' for strided convs, 'same' for stride 1; conv3dTranspose with kernel = stride).
// Anything else returns null and the caller runs the stock kernel.
//
// Each thread computes a block of RM rows × RN channels in registers, reading its operands
// straight from the input buffers as vec4 along the contiguous channel axis. No workgroup
// memory and no barriers: measured on SwiftShader (WebGPU on the CPU), a shared-memory tiled
// GEMM with barriers reached 0.1–0.3 GFLOP/s and this layout 4.6 GFLOP/s on a 512³ GEMM,
// because SwiftShader runs barriers as coroutine switches. On a GPU the same loads hit L1/L2.
//
//   forward   y[b,o,co]  = Σ_{f,ci} x[b, o·s − pad + f, ci] · w[f,ci,co]
//             thread: RM output voxels × RN out channels; loop taps, then in channels.
//   dx        dx[b,i,ci] = Σ_{f,co: i + pad − f = o·s} dy[b,o,co] · w[f,ci,co]
//             For stride s the input voxels fall into s³ parity classes; in one class the taps
//             that hit an integer o are fixed (f ≡ i + pad mod s), so each class runs as its
//             own dispatch over only its taps (no multiply by a structural zero).
//             thread: RM class voxels × RN in channels; loop taps, then out channels (dot4).
//   dw        dw[f,ci,co] = Σ_{b,o} x[b, o·s − pad + f, ci] · dy[b,o,co]
//             thread: one tap × RM in channels × RN out channels × a range of (b, od) slices
//             (split-K); a second pass sums the splits.
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import {
  blockOf,
  comp,
  range,
  rawProgram,
  sumSplits,
  vt,
  zero,
  type WebGPUBackendLike,
} from './program.ts';

export type V3 = [number, number, number];

export interface Geometry {
  batch: number;
  inS: V3;
  outS: V3;
  k: V3;
  s: V3;
  pad: V3;
  cin: number;
  cout: number;
}

const asV3 = (v: number | number[]): V3 => (typeof v === 'number' ? [v, v, v] : [v[0], v[1], v[2]]);

export function geometry(
  inShape: number[],
  filterShape: number[],
  strides: number | number[],
  pad: unknown,
  dilations: number | number[] = 1,
): Geometry | null {
  if (inShape.length !== 5 || filterShape.length !== 5) return null;
  if (asV3(dilations).some((d) => d !== 1)) return null;
  const s = asV3(strides);
  if (s.some((v) => v !== 1 && v !== 2)) return null;
  const k: V3 = [filterShape[0], filterShape[1], filterShape[2]];
  if (k.some((v) => v < 1 || v > 3)) return null;
  const info = tf.backend_util.computeConv3DInfo(
    inShape as [number, number, number, number, number],
    filterShape as [number, number, number, number, number],
    s,
    1,
    pad as 'valid' | 'same',
  );
  const g: Geometry = {
    batch: info.batchSize,
    inS: [info.inDepth, info.inHeight, info.inWidth],
    outS: [info.outDepth, info.outHeight, info.outWidth],
    k,
    s,
    pad: [info.padInfo.front, info.padInfo.top, info.padInfo.left],
    cin: info.inChannels,
    cout: info.outChannels,
  };
  if ([...g.outS, ...g.inS, g.cin, g.cout, g.batch].some((v) => v <= 0)) return null;
  return g;
}

// What each variant's entry point accepts (float32, NDHWC) and its geometry, in one place so the
// register-blocked and tiled variants fall back to tfjs on exactly the same cases (null).
export type ForwardAttrs = {
  strides: number | number[];
  pad: unknown;
  dilations?: number | number[];
  dataFormat?: string;
};
export type BackpropInputAttrs = { strides: number | number[]; pad: unknown; inputShape: number[] };
export type BackpropFilterAttrs = {
  strides: number | number[];
  pad: unknown;
  filterShape: number[];
};

export function forwardGeometry(
  x: TensorInfo,
  w: TensorInfo,
  attrs: ForwardAttrs,
): Geometry | null {
  if (x.dtype !== 'float32' || w.dtype !== 'float32') return null;
  if (attrs.dataFormat && attrs.dataFormat !== 'NDHWC') return null;
  return geometry(x.shape, w.shape, attrs.strides, attrs.pad, attrs.dilations ?? 1);
}

export function backpropInputGeometry(
  dy: TensorInfo,
  w: TensorInfo,
  attrs: BackpropInputAttrs,
): Geometry | null {
  if (dy.dtype !== 'float32' || w.dtype !== 'float32') return null;
  return geometry(attrs.inputShape, w.shape, attrs.strides, attrs.pad);
}

export function backpropFilterGeometry(
  x: TensorInfo,
  dy: TensorInfo,
  attrs: BackpropFilterAttrs,
): Geometry | null {
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') return null;
  return geometry(x.shape, attrs.filterShape, attrs.strides, attrs.pad);
}

export const key = (g: Geometry) =>
  [g.batch, ...g.inS, ...g.outS, ...g.k, ...g.s, ...g.pad, g.cin, g.cout].join('x');
/** Components of vector loads along a channel axis of `c` channels read in blocks of `block`. */
export const vecOf = (c: number, block: number) => (c % 4 === 0 && block % 4 === 0 ? 4 : 1);

export function conv3dForward(
  backend: WebGPUBackendLike,
  x: TensorInfo,
  w: TensorInfo,
  attrs: ForwardAttrs,
  output?: TensorInfo,
): TensorInfo | null {
  const g = forwardGeometry(x, w, attrs);
  if (!g) return null;
  const [ID, IH, IW] = g.inS;
  const [OD, OH, OW] = g.outS;
  const [KD, KH, KW] = g.k;
  const M = g.batch * OD * OH * OW;
  const RM = M >= 4096 ? 8 : 4;
  const R = range(RM);
  const rows = R.map(
    (r) => `
  let mr${r} = min(m0 + ${r}, ${M - 1});
  let bd${r} = (mr${r} / ${OW * OH * OD}) * ${ID};
  let pd${r} = ((mr${r} / ${OW * OH}) % ${OD}) * ${g.s[0]} - ${g.pad[0]};
  let ph${r} = ((mr${r} / ${OW}) % ${OH}) * ${g.s[1]} - ${g.pad[1]};
  let pw${r} = (mr${r} % ${OW}) * ${g.s[2]} - ${g.pad[2]};`,
  ).join('');
  const tapRows = (cv: number) =>
    R.map(
      (r) => `
        let id${r} = pd${r} + fd; let ih${r} = ph${r} + fh; let iw${r} = pw${r} + fw;
        let ok${r} = (id${r} >= 0) & (id${r} < ${ID}) & (ih${r} >= 0) & (ih${r} < ${IH}) & (iw${r} >= 0) & (iw${r} < ${IW});
        let base${r} = select(0, (((bd${r} + id${r}) * ${IH} + ih${r}) * ${IW} + iw${r}) * ${g.cin / cv}, ok${r});`,
    ).join('');
  if (g.cin % 4 === 0) {
    // In channels in vec4: dot products against the filter transposed to [taps, out, in], the
    // same shape of loop as dx (measured ~2× faster here than broadcasting scalars into vec4
    // accumulators along the out channels).
    const taps = KD * KH * KW;
    const wT = backend.runWebGPUProgram(
      rawProgram({
        key: `c3wt_${taps}_${g.cin}_${g.cout}`,
        inputs: ['w'],
        components: [1],
        outputShape: [taps, g.cout, g.cin],
        threads: taps * g.cin * g.cout,
        body: `
  let ci = t % ${g.cin};
  let co = (t / ${g.cin}) % ${g.cout};
  let f = t / ${g.cin * g.cout};
  result[t] = w[(f * ${g.cin} + ci) * ${g.cout} + co];`,
      }),
      [w],
      'float32',
    );
    const RN = blockOf(g.cout);
    const NB = g.cout / RN;
    const C4 = g.cin / 4;
    const body = `
  let n0 = (t % ${NB}) * ${RN};
  let m0 = (t / ${NB}) * ${RM};
  ${rows}
  var acc : array<f32, ${RM * RN}>;
  for (var i = 0; i < ${RM * RN}; i++) { acc[i] = 0.0; }
  for (var fd = 0; fd < ${KD}; fd++) {
    for (var fh = 0; fh < ${KH}; fh++) {
      for (var fw = 0; fw < ${KW}; fw++) {
        ${tapRows(4)}
        let wb = (((fd * ${KH} + fh) * ${KW} + fw) * ${g.cout} + n0) * ${C4};
        for (var c = 0; c < ${C4}; c++) {
          ${R.map((r) => `let a${r} = select(vec4<f32>(0.0), x[base${r} + c], ok${r});`).join('\n          ')}
          ${range(RN)
            .map((n) => `let w${n} = wt[wb + ${n * C4} + c];`)
            .join(' ')}
          ${R.map((r) =>
            range(RN)
              .map((n) => `acc[${r * RN + n}] += dot(a${r}, w${n});`)
              .join(' '),
          ).join('\n          ')}
        }
      }
    }
  }
  ${R.map(
    (r) => `
  if (m0 + ${r} < ${M}) {
    let o = (m0 + ${r}) * ${g.cout} + n0;
    ${range(RN)
      .map((n) => `result[o + ${n}] = acc[${r * RN + n}];`)
      .join(' ')}
  }`,
  ).join('')}`;
    const program = rawProgram({
      key: `c3fd_${key(g)}_${RM}_${RN}`,
      inputs: ['x', 'wt'],
      components: [4, 4],
      outputShape: [g.batch, OD, OH, OW, g.cout],
      threads: Math.ceil(M / RM) * NB,
      body,
    });
    const out = backend.runWebGPUProgram(program, [x, wT], 'float32', undefined, output);
    backend.disposeData(wT.dataId);
    return out;
  }
  // Fewer in channels than a vec4 (the first conv: 1 per modality): scalar in channels,
  // vec4 accumulators along the out channels.
  const RN = blockOf(g.cout);
  const NV = vecOf(g.cout, RN);
  const RQ = RN / NV;
  const CV = 1;
  const NB = g.cout / RN;
  const threads = Math.ceil(M / RM) * NB;
  const body = `
  let n0 = (t % ${NB}) * ${RN};
  let m0 = (t / ${NB}) * ${RM};
  ${rows}
  var acc : array<${vt(NV)}, ${RM * RQ}>;
  for (var i = 0; i < ${RM * RQ}; i++) { acc[i] = ${zero(NV)}; }
  for (var fd = 0; fd < ${KD}; fd++) {
    for (var fh = 0; fh < ${KH}; fh++) {
      for (var fw = 0; fw < ${KW}; fw++) {
        ${tapRows(CV)}
        let wb = ((fd * ${KH} + fh) * ${KW} + fw) * ${g.cin};
        for (var c = 0; c < ${g.cin}; c++) {
          ${R.map((r) => `let a${r} = select(0.0, x[base${r} + c], ok${r});`).join('\n          ')}
          let wr = ((wb + c) * ${g.cout} + n0) / ${NV};
          ${range(RQ)
            .map((q) => `let w${q} = w[wr + ${q}];`)
            .join(' ')}
          ${R.map((r) =>
            range(RQ)
              .map((q) => `acc[${r * RQ + q}] += a${r} * w${q};`)
              .join(' '),
          ).join('\n          ')}
        }
      }
    }
  }
  ${R.map(
    (r) => `
  if (m0 + ${r} < ${M}) {
    let o = (m0 + ${r}) * ${g.cout} + n0;
    ${range(RQ)
      .map((q) =>
        range(NV)
          .map((e) => `result[o + ${q * NV + e}] = ${comp(`acc[${r * RQ + q}]`, NV, e)};`)
          .join(' '),
      )
      .join('\n    ')}
  }`,
  ).join('')}`;
  const program = rawProgram({
    key: `c3f_${key(g)}_${RM}_${RN}`,
    inputs: ['x', 'w'],
    components: [CV, NV],
    outputShape: [g.batch, OD, OH, OW, g.cout],
    threads,
    body,
  });
  return backend.runWebGPUProgram(program, [x, w], 'float32', undefined, output);
}

export function conv3dBackpropInput(
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
  const out = output ?? backend.makeTensorInfo([...attrs.inputShape], 'float32');
  const RN = blockOf(g.cin);
  const KV = g.cout % 4 === 0 ? 4 : 1;
  const NB = g.cin / RN;
  const [sd, sh, sw] = g.s;
  for (let pd = 0; pd < sd; pd++) {
    for (let ph = 0; ph < sh; ph++) {
      for (let pw = 0; pw < sw; pw++) {
        const p: V3 = [pd, ph, pw];
        // Class voxels i = p + s·j; taps f = r + s·t with r ≡ p + pad (mod s).
        const ext = p.map((pa, a) => Math.ceil((g.inS[a] - pa) / g.s[a])) as V3;
        if (ext.some((e) => e <= 0)) continue;
        const r = p.map((pa, a) => (pa + g.pad[a]) % g.s[a]) as V3;
        const taps = r.map((ra, a) => (ra < g.k[a] ? Math.ceil((g.k[a] - ra) / g.s[a]) : 0)) as V3;
        const [ED, EH, EW] = ext;
        const M = g.batch * ED * EH * EW;
        const RM = M >= 4096 ? 8 : 4;
        const R = range(RM);
        const threads = Math.ceil(M / RM) * NB;
        const noTaps = taps.some((n) => n === 0);
        const body = `
  let n0 = (t % ${NB}) * ${RN};
  let m0 = (t / ${NB}) * ${RM};
  ${R.map(
    (q) => `
  let mr${q} = min(m0 + ${q}, ${M - 1});
  let b${q} = mr${q} / ${EW * EH * ED};
  let id${q} = ${pd} + ${sd} * ((mr${q} / ${EW * EH}) % ${ED});
  let ih${q} = ${ph} + ${sh} * ((mr${q} / ${EW}) % ${EH});
  let iw${q} = ${pw} + ${sw} * (mr${q} % ${EW});`,
  ).join('')}
  var acc : array<f32, ${RM * RN}>;
  for (var i = 0; i < ${RM * RN}; i++) { acc[i] = 0.0; }
  ${
    noTaps
      ? ''
      : `
  for (var td = 0; td < ${taps[0]}; td++) {
    let fd = ${r[0]} + ${sd} * td;
    for (var th = 0; th < ${taps[1]}; th++) {
      let fh = ${r[1]} + ${sh} * th;
      for (var tw = 0; tw < ${taps[2]}; tw++) {
        let fw = ${r[2]} + ${sw} * tw;
        ${R.map(
          (q) => `
        let nd${q} = id${q} + ${g.pad[0]} - fd; let nh${q} = ih${q} + ${g.pad[1]} - fh; let nw${q} = iw${q} + ${g.pad[2]} - fw;
        let ok${q} = (nd${q} >= 0) & (nh${q} >= 0) & (nw${q} >= 0) & (nd${q} < ${OD * sd}) & (nh${q} < ${OH * sh}) & (nw${q} < ${OW * sw});
        let base${q} = select(0, (((b${q} * ${OD} + nd${q} / ${sd}) * ${OH} + nh${q} / ${sh}) * ${OW} + nw${q} / ${sw}) * ${g.cout / KV}, ok${q});`,
        ).join('')}
        let wb = (((fd * ${KH} + fh) * ${KW} + fw) * ${g.cin} + n0) * ${g.cout / KV};
        for (var c = 0; c < ${g.cout / KV}; c++) {
          ${R.map((q) => `let a${q} = select(${zero(KV)}, dy[base${q} + c], ok${q});`).join('\n          ')}
          ${range(RN)
            .map((n) => `let w${n} = w[wb + ${n * (g.cout / KV)} + c];`)
            .join(' ')}
          ${R.map((q) =>
            range(RN)
              .map(
                (n) => `acc[${q * RN + n}] += ${KV === 4 ? `dot(a${q}, w${n})` : `a${q} * w${n}`};`,
              )
              .join(' '),
          ).join('\n          ')}
        }
      }
    }
  }`
  }
  ${R.map(
    (q) => `
  if (m0 + ${q} < ${M}) {
    let o = (((b${q} * ${ID} + id${q}) * ${IH} + ih${q}) * ${IW} + iw${q}) * ${g.cin} + n0;
    ${range(RN)
      .map((n) => `result[o + ${n}] = acc[${q * RN + n}];`)
      .join(' ')}
  }`,
  ).join('')}`;
        const program = rawProgram({
          key: `c3x_${key(g)}_${p.join('')}_${RM}_${RN}`,
          inputs: ['dy', 'w'],
          components: [KV, KV],
          outputShape: [...attrs.inputShape],
          threads,
          body,
        });
        backend.runWebGPUProgram(program, [dy, w], 'float32', undefined, out);
      }
    }
  }
  return out;
}

/**
 * The filter gradient's register blocks: RM in × RN out channels of one tap per thread (RQ vectors
 * of NV out channels), loaded as vectors of CV / NV along the channel axes; MB × NB blocks per tap.
 */
export function dwBlocks(g: Geometry) {
  const RM = blockOf(g.cin);
  const RN = blockOf(g.cout);
  const NV = vecOf(g.cout, RN);
  return {
    taps: g.k[0] * g.k[1] * g.k[2],
    RM,
    CV: vecOf(g.cin, RM),
    RN,
    NV,
    RQ: RN / NV,
    MB: g.cin / RM,
    NB: g.cout / RN,
  };
}

/**
 * WGSL (in scope: `tap`): the tap's offsets fd, fh, fw and the ow range [owLo, owHi) whose input
 * column iw = ow·s − pad + fw lies inside [0, IW).
 */
export function dwTapRange(g: Geometry): string {
  const [, KH, KW] = g.k;
  return `let fw = tap % ${KW};
  let fh = (tap / ${KW}) % ${KH};
  let fd = tap / ${KW * KH};
  let owLo = max(0, (${g.pad[2]} - fw + ${g.s[2] - 1}) / ${g.s[2]});
  let owHi = min(${g.outS[2]}, (${g.inS[2] - 1 + g.pad[2]} - fw) / ${g.s[2]} + 1);`;
}

/**
 * WGSL for one output voxel of the filter gradient's inner loop (in scope: xrow, drow, ow, fw, c0,
 * n0): load the x and dy blocks and add their RM × RQ products into `acc(i)`.
 */
export function dwAccumulate(g: Geometry, acc: (i: number) => string): string {
  const { RM, CV, NV, RQ } = dwBlocks(g);
  return `let xi = ((xrow + ow * ${g.s[2]} - ${g.pad[2]} + fw) * ${g.cin} + c0) / ${CV};
      let di = ((drow + ow) * ${g.cout} + n0) / ${NV};
      ${range(RM / CV)
        .map((v) => `let a${v} = x[xi + ${v}];`)
        .join(' ')}
      ${range(RQ)
        .map((q) => `let d${q} = dy[di + ${q}];`)
        .join(' ')}
      ${range(RM)
        .map((m) =>
          range(RQ)
            .map(
              (q) => `${acc(m * RQ + q)} += ${comp(`a${Math.floor(m / CV)}`, CV, m % CV)} * d${q};`,
            )
            .join(' '),
        )
        .join('\n      ')}`;
}

export function conv3dBackpropFilter(
  backend: WebGPUBackendLike,
  x: TensorInfo,
  dy: TensorInfo,
  attrs: BackpropFilterAttrs,
  output?: TensorInfo,
): TensorInfo | null {
  const g = backpropFilterGeometry(x, dy, attrs);
  if (!g) return null;
  const [ID, IH, IW] = g.inS;
  const [OD, OH, OW] = g.outS;
  const { taps, RM, CV, RN, NV, RQ, MB, NB } = dwBlocks(g);
  const base = taps * MB * NB;
  // Split the (b, od) slices so that there are enough threads to keep the device busy.
  const slices = g.batch * OD;
  const splits = Math.max(1, Math.min(slices, Math.ceil(2048 / base)));
  const per = Math.ceil(slices / splits);
  const S = Math.ceil(slices / per);
  const elems = taps * g.cin * g.cout;
  const body = `
  let nb = t % ${NB};
  let mb = (t / ${NB}) % ${MB};
  let tap = (t / ${NB * MB}) % ${taps};
  let split = t / ${NB * MB * taps};
  let n0 = nb * ${RN};
  let c0 = mb * ${RM};
  ${dwTapRange(g)}
  var acc : array<${vt(NV)}, ${RM * RQ}>;
  for (var i = 0; i < ${RM * RQ}; i++) { acc[i] = ${zero(NV)}; }
  let sEnd = min(${slices}, (split + 1) * ${per});
  for (var sl = split * ${per}; sl < sEnd; sl++) {
    let b = sl / ${OD};
    let od = sl % ${OD};
    let id = od * ${g.s[0]} - ${g.pad[0]} + fd;
    if (id < 0 || id >= ${ID}) { continue; }
    for (var oh = 0; oh < ${OH}; oh++) {
      let ih = oh * ${g.s[1]} - ${g.pad[1]} + fh;
      if (ih < 0 || ih >= ${IH}) { continue; }
      let xrow = ((b * ${ID} + id) * ${IH} + ih) * ${IW};
      let drow = ((b * ${OD} + od) * ${OH} + oh) * ${OW};
      for (var ow = owLo; ow < owHi; ow++) {
        ${dwAccumulate(g, (i) => `acc[${i}]`)}
      }
    }
  }
  let o = split * ${elems} + (tap * ${g.cin} + c0) * ${g.cout} + n0;
  ${range(RM)
    .map((m) =>
      range(RQ)
        .map((q) =>
          range(NV)
            .map(
              (e) =>
                `result[o + ${m * g.cout + q * NV + e}] = ${comp(`acc[${m * RQ + q}]`, NV, e)};`,
            )
            .join(' '),
        )
        .join(' '),
    )
    .join('\n  ')}`;
  const threads = base * S;
  const programKey = `c3w_${key(g)}_${RM}_${RN}_${S}`;
  if (S === 1) {
    const program = rawProgram({
      key: programKey,
      inputs: ['x', 'dy'],
      components: [CV, NV],
      outputShape: [...attrs.filterShape],
      threads,
      body,
    });
    return backend.runWebGPUProgram(program, [x, dy], 'float32', undefined, output);
  }
  const partial = rawProgram({
    key: programKey,
    inputs: ['x', 'dy'],
    components: [CV, NV],
    outputShape: [S, 1, 1, 1, elems],
    threads,
    body,
  });
  const tmp = backend.runWebGPUProgram(partial, [x, dy], 'float32');
  return sumSplits(
    backend,
    tmp,
    { key: `c3wsum_${elems}_${S}`, S, elems, outputShape: [...attrs.filterShape] },
    output,
  );
}
