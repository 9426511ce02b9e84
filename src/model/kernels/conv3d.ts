// Conv3D, Conv3DBackpropInputV2 and Conv3DBackpropFilterV2 for tfjs-backend-webgpu as tiled
// implicit GEMMs (gemm.ts). NDHWC input, filter [kd, kh, kw, in, out], dilation 1, strides 1 or
// 2, kernel edges ≤ 3, float32: what the U-Net uses (conv.ts: explicit padding + 'valid' for
// strided convs, 'same' for stride 1; conv3dTranspose with kernel = stride). Anything else returns
// null and the caller runs the stock kernel.
//
//   forward   y[b,o,co]  = Σ_{f,ci} x[b, o·s − pad + f, ci] · w[f,ci,co]
//             GEMM  M = batch·out voxels, N = out channels, K = taps·in channels.
//   dx        dx[b,i,ci] = Σ_{f,co: i + pad − f = o·s} dy[b,o,co] · w[f,ci,co]
//             For stride s, the input voxels fall into s³ parity classes; in one class the taps
//             that hit an integer o are fixed (f ≡ i + pad mod s), so each class is a dense GEMM
//             (M = batch·class voxels, N = in channels, K = class taps·out channels), run as its
//             own dispatch into the shared output. No multiply by a structural zero.
//   dw        dw[f,ci,co] = Σ_{b,o} x[b, o·s − pad + f, ci] · dy[b,o,co]
//             GEMM  M = taps·in channels, N = out channels, K = batch·out voxels (split-K).
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { runGemm, type GemmSpec, type WebGPUBackendLike } from './gemm.ts';

type V3 = [number, number, number];

interface Geometry {
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

function geometry(inShape: number[], filterShape: number[], strides: number | number[], pad: unknown, dilations: number | number[] = 1): Geometry | null {
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
  return {
    batch: info.batchSize,
    inS: [info.inDepth, info.inHeight, info.inWidth],
    outS: [info.outDepth, info.outHeight, info.outWidth],
    k,
    s,
    pad: [info.padInfo.front, info.padInfo.top, info.padInfo.left],
    cin: info.inChannels,
    cout: info.outChannels,
  };
}

const key = (g: Geometry) => [g.batch, ...g.inS, ...g.outS, ...g.k, ...g.s, ...g.pad, g.cin, g.cout].join('x');

/** x[b, o·s − pad + f, ci] of the forward im2col, 0 outside the input; `o*` and `f*` in scope. */
function im2colLoad(g: Geometry): string {
  const [ID, IH, IW] = g.inS;
  return `
    let id = od * ${g.s[0]} - ${g.pad[0]} + fd;
    let ih = oh * ${g.s[1]} - ${g.pad[1]} + fh;
    let iw = ow * ${g.s[2]} - ${g.pad[2]} + fw;
    if (id < 0 || id >= ${ID} || ih < 0 || ih >= ${IH} || iw < 0 || iw >= ${IW}) { return 0.0; }
    return x[(((b * ${ID} + id) * ${IH} + ih) * ${IW} + iw) * ${g.cin} + ci];`;
}

/** Decode a flat index over [B, D, H, W] (W fastest) into b, d, h, w with the given names. */
function decode4(v: string, dims: V3, names: [string, string, string, string]): string {
  const [D, H, W] = dims;
  return `
    let ${names[3]} = ${v} % ${W};
    let ${names[2]} = (${v} / ${W}) % ${H};
    let ${names[1]} = (${v} / ${W * H}) % ${D};
    let ${names[0]} = ${v} / ${W * H * D};`;
}

/** Decode a flat index over [kd, kh, kw, C] (C fastest) into fd, fh, fw, c. */
function decodeTaps(v: string, k: V3, C: number, c: string): string {
  return `
    let ${c} = ${v} % ${C};
    let fw = (${v} / ${C}) % ${k[2]};
    let fh = (${v} / ${C * k[2]}) % ${k[1]};
    let fd = ${v} / ${C * k[2] * k[1]};`;
}

export function conv3dForward(backend: WebGPUBackendLike, x: TensorInfo, w: TensorInfo, attrs: { strides: number | number[]; pad: unknown; dilations?: number | number[]; dataFormat?: string }, output?: TensorInfo): TensorInfo | null {
  if (x.dtype !== 'float32' || w.dtype !== 'float32') return null;
  if (attrs.dataFormat && attrs.dataFormat !== 'NDHWC') return null;
  const g = geometry(x.shape, w.shape, attrs.strides, attrs.pad, attrs.dilations ?? 1);
  if (!g) return null;
  const [OD, OH, OW] = g.outS;
  const spec: GemmSpec = {
    name: `c3f_${key(g)}`,
    M: g.batch * OD * OH * OW,
    N: g.cout,
    K: g.k[0] * g.k[1] * g.k[2] * g.cin,
    inputs: ['x', 'w'],
    aKFast: true,
    loadA: decode4('m', g.outS, ['b', 'od', 'oh', 'ow']) + decodeTaps('k', g.k, g.cin, 'ci') + im2colLoad(g),
    loadB: `return w[k * ${g.cout} + n];`,
    outIndex: `return m * ${g.cout} + n;`,
  };
  return runGemm(backend, spec, [x, w], [g.batch, OD, OH, OW, g.cout], output);
}

export function conv3dBackpropFilter(backend: WebGPUBackendLike, x: TensorInfo, dy: TensorInfo, attrs: { strides: number | number[]; pad: unknown; filterShape: number[] }, output?: TensorInfo): TensorInfo | null {
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') return null;
  const g = geometry(x.shape, attrs.filterShape, attrs.strides, attrs.pad);
  if (!g) return null;
  const [OD, OH, OW] = g.outS;
  const spec: GemmSpec = {
    name: `c3w_${key(g)}`,
    M: g.k[0] * g.k[1] * g.k[2] * g.cin,
    N: g.cout,
    K: g.batch * OD * OH * OW,
    inputs: ['x', 'dy'],
    aKFast: false,
    loadA: decodeTaps('m', g.k, g.cin, 'ci') + decode4('k', g.outS, ['b', 'od', 'oh', 'ow']) + im2colLoad(g),
    loadB: `return dy[k * ${g.cout} + n];`,
    outIndex: `return m * ${g.cout} + n;`,
  };
  return runGemm(backend, spec, [x, dy], [...attrs.filterShape], output);
}

export function conv3dBackpropInput(backend: WebGPUBackendLike, dy: TensorInfo, w: TensorInfo, attrs: { strides: number | number[]; pad: unknown; inputShape: number[] }, output?: TensorInfo): TensorInfo | null {
  if (dy.dtype !== 'float32' || w.dtype !== 'float32') return null;
  const g = geometry(attrs.inputShape, w.shape, attrs.strides, attrs.pad);
  if (!g) return null;
  const [ID, IH, IW] = g.inS;
  const [OD, OH, OW] = g.outS;
  const [, KH, KW] = g.k;
  const out = output ?? backend.makeTensorInfo([...attrs.inputShape], 'float32');
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
        const spec: GemmSpec = {
          name: `c3x_${key(g)}_${p.join('')}`,
          M: g.batch * ext[0] * ext[1] * ext[2],
          N: g.cin,
          K: taps[0] * taps[1] * taps[2] * g.cout,
          inputs: ['dy', 'w'],
          aKFast: true,
          prelude: `
fn classVoxel(m : i32) -> vec4<i32> {
  ${decode4('m', ext, ['b', 'jd', 'jh', 'jw'])}
  return vec4<i32>(b, ${pd} + ${sd} * jd, ${ph} + ${sh} * jh, ${pw} + ${sw} * jw);
}
fn classTap(k : i32) -> vec4<i32> {
  let co = k % ${g.cout};
  let tw = (k / ${g.cout}) % ${taps[2] || 1};
  let th = (k / ${g.cout * (taps[2] || 1)}) % ${taps[1] || 1};
  let td = k / ${g.cout * (taps[2] || 1) * (taps[1] || 1)};
  return vec4<i32>(${r[0]} + ${sd} * td, ${r[1]} + ${sh} * th, ${r[2]} + ${sw} * tw, co);
}`,
          loadA: `
    let v = classVoxel(m);
    let t = classTap(k);
    let nd = v.y + ${g.pad[0]} - t.x;
    let nh = v.z + ${g.pad[1]} - t.y;
    let nw = v.w + ${g.pad[2]} - t.z;
    if (nd < 0 || nh < 0 || nw < 0) { return 0.0; }
    let od = nd / ${sd};
    let oh = nh / ${sh};
    let ow = nw / ${sw};
    if (od >= ${OD} || oh >= ${OH} || ow >= ${OW}) { return 0.0; }
    return dy[(((v.x * ${OD} + od) * ${OH} + oh) * ${OW} + ow) * ${g.cout} + t.w];`,
          loadB: `
    let t = classTap(k);
    return w[(((t.x * ${KH} + t.y) * ${KW} + t.z) * ${g.cin} + n) * ${g.cout} + t.w];`,
          outIndex: `
    let v = classVoxel(m);
    return (((v.x * ${ID} + v.y) * ${IH} + v.z) * ${IW} + v.w) * ${g.cin} + n;`,
        };
        runGemm(backend, spec, [dy, w], [...attrs.inputShape], out);
      }
    }
  }
  return out;
}
