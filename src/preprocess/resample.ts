// nnU-Net's resample_data_or_seg_to_shape (spec §5 step 6, reference README §5.4).
// Data: skimage resize(order 3, mode 'edge') = scipy.ndimage.zoom(grid_mode=True, mode='nearest'):
// cubic B-spline with the IIR prefilter on an edge-padded line (scipy pads 12), pixel-centre grid,
// then clip to the input range. The B-spline tensor product is separable, so it runs as 1-D passes.
// Seg: one-hot per label (ascending, -1 included), order 1, label where >= 0.5, later labels win;
// evaluated directly (not separably) with scipy's weights and summation order so ties at 0.5 agree.
// Anisotropic cases (> 3) resample in-plane per slice and use nearest along the low-res axis.
import type { Shape3 } from './crop.ts';
import { computeNewShape } from '../util/numeric.ts';

export { computeNewShape };

export const ANISO_THRESHOLD = 3;
const PAD = 12; // scipy's _prepad_for_spline_filter for mode 'nearest'
const POLE = Math.sqrt(3) - 2;

function lowresAxes(spacing: readonly number[]): number[] {
  const mx = Math.max(...spacing);
  return spacing.map((s, i) => (mx / s === 1 ? i : -1)).filter((i) => i >= 0);
}

/** determine_do_sep_z_and_axis: the axis to treat separately, or null. */
export function separateZAxis(
  currentSpacing: readonly number[],
  newSpacing: readonly number[],
  forceSeparateZ: boolean | null = null,
  threshold = ANISO_THRESHOLD,
): number | null {
  const aniso = (s: readonly number[]) => Math.max(...s) / Math.min(...s) > threshold;
  let axes: number[] | null;
  if (forceSeparateZ !== null) axes = forceSeparateZ ? lowresAxes(currentSpacing) : null;
  else if (aniso(currentSpacing)) axes = lowresAxes(currentSpacing);
  else if (aniso(newSpacing)) axes = lowresAxes(newSpacing);
  else axes = null;
  // 2 or 3 axes sharing the largest spacing: no separate z.
  return axes && axes.length === 1 ? axes[0] : null;
}

/** Source coordinate of output index k on scipy's pixel-centre grid (grid_mode=True). */
function gridCoord(k: number, zoom: number): number {
  return (k + 0.5) * zoom - 0.5;
}

/** In-place cubic B-spline prefilter (gain, causal and anti-causal passes, mirror boundary init). */
function splinePrefilter(c: Float64Array, n: number): void {
  if (n === 1) return;
  const z = POLE;
  const gain = (1 - z) * (1 - 1 / z);
  for (let i = 0; i < n; i++) c[i] *= gain;
  // causal init, mirror-symmetric extension
  const zn1 = Math.pow(z, n - 1);
  let c0 = c[0] + zn1 * c[n - 1];
  let zi = z;
  for (let i = 1; i < n - 1; i++) {
    c0 += zi * (c[i] + zn1 * c[n - 1 - i]);
    zi *= z;
  }
  c[0] = c0 / (1 - zn1 * zn1);
  for (let i = 1; i < n; i++) c[i] += z * c[i - 1];
  c[n - 1] = ((z * c[n - 2] + c[n - 1]) * z) / (z * z - 1);
  for (let i = n - 2; i >= 0; i--) c[i] = z * (c[i + 1] - c[i]);
}

/**
 * One 1-D zoom pass along `axis` of a (Z, Y, X) float array: output length `newLen`, order 0, 1 or 3,
 * mode 'nearest', pixel-centre grid. Returns a new array; `src` is untouched.
 */
export function zoomAxis(
  src: Float32Array,
  shape: Shape3,
  axis: number,
  newLen: number,
  order: 0 | 1 | 3,
): Float32Array {
  const n = shape[axis];
  const outShape: Shape3 = [...shape];
  outShape[axis] = newLen;
  const out = new Float32Array(outShape[0] * outShape[1] * outShape[2]);
  const stride = axis === 2 ? 1 : axis === 1 ? shape[2] : shape[1] * shape[2];
  const ostride = axis === 2 ? 1 : axis === 1 ? outShape[2] : outShape[1] * outShape[2];
  const zoom = n / newLen;
  // Precompute per output index: first tap and weights.
  const taps = order === 3 ? 4 : order === 1 ? 2 : 1;
  const first = new Int32Array(newLen);
  const w = new Float64Array(newLen * taps);
  for (let k = 0; k < newLen; k++) {
    let cc = gridCoord(k, zoom);
    if (order === 3) {
      cc += PAD; // never near the padded edge: no clamping needed
      const fl = Math.floor(cc),
        t = cc - fl,
        u = 1 - t;
      first[k] = fl - 1;
      w[4 * k] = (u * u * u) / 6;
      w[4 * k + 1] = 2 / 3 - t * t + (t * t * t) / 2;
      w[4 * k + 2] = 2 / 3 - u * u + (u * u * u) / 2;
      w[4 * k + 3] = (t * t * t) / 6;
    } else {
      cc = Math.min(Math.max(cc, 0), n - 1); // scipy maps the coordinate for mode 'nearest'
      if (order === 1) {
        const fl = Math.floor(cc);
        first[k] = fl;
        w[2 * k] = 1 - (cc - fl);
        w[2 * k + 1] = cc - fl;
      } else {
        first[k] = Math.floor(cc + 0.5);
        w[k] = 1;
      }
    }
  }
  const line = new Float64Array(order === 3 ? n + 2 * PAD : n);
  // Iterate over the two other axes (a0 < a1) with their input and output strides.
  const [a0, a1] = axis === 0 ? [1, 2] : axis === 1 ? [0, 2] : [0, 1];
  const n0 = shape[a0],
    n1 = shape[a1];
  const strideA0 = a0 === 0 ? shape[1] * shape[2] : shape[2];
  const ostrideA0 = a0 === 0 ? outShape[1] * outShape[2] : outShape[2];
  const strideA1 = a1 === 2 ? 1 : shape[2];
  const ostrideA1 = a1 === 2 ? 1 : outShape[2];
  for (let i0 = 0; i0 < n0; i0++) {
    for (let i1 = 0; i1 < n1; i1++) {
      const base = i0 * strideA0 + i1 * strideA1;
      const obase = i0 * ostrideA0 + i1 * ostrideA1;
      if (order === 3) {
        for (let j = 0; j < n; j++) line[PAD + j] = src[base + j * stride];
        line.fill(line[PAD], 0, PAD);
        line.fill(line[PAD + n - 1], PAD + n);
        splinePrefilter(line, n + 2 * PAD);
        for (let k = 0; k < newLen; k++) {
          const f = first[k];
          out[obase + k * ostride] =
            w[4 * k] * line[f] +
            w[4 * k + 1] * line[f + 1] +
            w[4 * k + 2] * line[f + 2] +
            w[4 * k + 3] * line[f + 3];
        }
      } else if (order === 1) {
        for (let k = 0; k < newLen; k++) {
          const f = first[k];
          const g = f + 1 < n ? f + 1 : f;
          out[obase + k * ostride] =
            w[2 * k] * src[base + f * stride] + w[2 * k + 1] * src[base + g * stride];
        }
      } else {
        for (let k = 0; k < newLen; k++) out[obase + k * ostride] = src[base + first[k] * stride];
      }
    }
  }
  return out;
}

function clip(a: Float32Array, lo: number, hi: number): void {
  for (let i = 0; i < a.length; i++) a[i] = a[i] < lo ? lo : a[i] > hi ? hi : a[i];
}

function range(a: Float32Array): [number, number] {
  let lo = Infinity,
    hi = -Infinity;
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** skimage-style resize of one (Z, Y, X) channel over `axes` (1-D passes), clipped to the input range. */
function resizeChannel(
  src: Float32Array,
  shape: Shape3,
  newShape: Shape3,
  axes: number[],
  order: 0 | 1 | 3,
): Float32Array {
  let cur = src;
  const curShape: Shape3 = [...shape];
  for (const ax of axes) {
    if (curShape[ax] === newShape[ax]) continue;
    cur = zoomAxis(cur, curShape, ax, newShape[ax], order);
    curShape[ax] = newShape[ax];
  }
  if (cur !== src) {
    const [lo, hi] = range(src);
    clip(cur, lo, hi);
  }
  return cur === src ? src.slice() : cur;
}

export interface ResampleOptions {
  /** Spline order for data (3) or seg one-hot (1). */
  order?: 0 | 1 | 3;
  /** Order along the separate axis: 0 (nnU-Net default) or 1. */
  orderZ?: 0 | 1;
  forceSeparateZ?: boolean | null;
}

/** Resamples float data (C, Z, Y, X) to newShape. Returns the input untouched when shapes are equal. */
export function resampleData(
  data: Float32Array,
  channels: number,
  shape: Shape3,
  newShape: Shape3,
  currentSpacing: readonly number[],
  newSpacing: readonly number[],
  opts: ResampleOptions = {},
): Float32Array {
  const order = opts.order ?? 3,
    orderZ = opts.orderZ ?? 0;
  if (shape.every((s, i) => s === newShape[i])) return data;
  const axis = separateZAxis(currentSpacing, newSpacing, opts.forceSeparateZ ?? null);
  const n = shape[0] * shape[1] * shape[2];
  const nOut = newShape[0] * newShape[1] * newShape[2];
  const out = new Float32Array(nOut * channels);
  for (let c = 0; c < channels; c++) {
    const ch = data.subarray(c * n, (c + 1) * n);
    let res: Float32Array;
    if (axis === null) {
      res = resizeChannel(ch, shape, newShape, [0, 1, 2], order);
    } else {
      // In-plane per slice: passes along the two other axes, clipped to each slice's own range.
      const inPlane = [0, 1, 2].filter((a) => a !== axis);
      const mid: Shape3 = [...newShape];
      mid[axis] = shape[axis];
      let cur = ch;
      if (inPlane.some((a) => shape[a] !== newShape[a])) {
        cur = resizeChannel(ch, shape, mid, inPlane, order);
        clipPerSlice(ch, shape, cur, mid, axis);
      }
      res = shape[axis] === newShape[axis] ? cur : zoomAxis(cur, mid, axis, newShape[axis], orderZ);
    }
    out.set(res, c * nOut);
  }
  return out;
}

/** Re-clips each slice along `axis` of `dst` to the range of the same slice of `src` (skimage per-slice clip). */
function clipPerSlice(
  src: Float32Array,
  shape: Shape3,
  dst: Float32Array,
  dshape: Shape3,
  axis: number,
): void {
  for (let s = 0; s < shape[axis]; s++) {
    let lo = Infinity,
      hi = -Infinity;
    forSlice(shape, axis, s, (i) => {
      const v = src[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    });
    forSlice(dshape, axis, s, (i) => {
      const v = dst[i];
      dst[i] = v < lo ? lo : v > hi ? hi : v;
    });
  }
}

function forSlice(shape: Shape3, axis: number, s: number, fn: (i: number) => void): void {
  const [nz, ny, nx] = shape;
  for (let z = axis === 0 ? s : 0; z < (axis === 0 ? s + 1 : nz); z++)
    for (let y = axis === 1 ? s : 0; y < (axis === 1 ? s + 1 : ny); y++)
      for (let x = axis === 2 ? s : 0; x < (axis === 2 ? s + 1 : nx); x++)
        fn((z * ny + y) * nx + x);
}

/** Per-axis linear taps as scipy computes them (coordinate clamped, start = floor, weights 1-t, t). */
function linearTaps(
  n: number,
  newLen: number,
): { i0: Int32Array; i1: Int32Array; w0: Float64Array; w1: Float64Array } {
  const zoom = n / newLen;
  const i0 = new Int32Array(newLen),
    i1 = new Int32Array(newLen),
    w0 = new Float64Array(newLen),
    w1 = new Float64Array(newLen);
  for (let k = 0; k < newLen; k++) {
    const cc = Math.min(Math.max(gridCoord(k, zoom), 0), n - 1);
    const fl = Math.floor(cc);
    i0[k] = fl;
    i1[k] = Math.min(fl + 1, n - 1);
    w1[k] = cc - fl;
    w0[k] = 1 - w1[k];
  }
  return { i0, i1, w0, w1 };
}

/**
 * resize_segmentation(order 1) over a (Z, Y, X) label map; `dims` = 2 resizes each z-slice in-plane
 * (the separate-z path with axis 0; other axes are handled by the caller's transposition). Voxels
 * where no label reaches 0.5 stay 0, as in nnU-Net.
 */
function resizeSegLinear(
  seg: Int16Array,
  shape: Shape3,
  newShape: Shape3,
  labels: number[],
): Int16Array {
  const [nz, ny, nx] = shape;
  const [mz, my, mx] = newShape;
  const tz = linearTaps(nz, mz),
    ty = linearTaps(ny, my),
    tx = linearTaps(nx, mx);
  const out = new Int16Array(mz * my * mx);
  const cl = new Int16Array(8),
    cw = new Float64Array(8);
  for (let z = 0, o = 0; z < mz; z++) {
    const zs = [tz.i0[z], tz.i1[z]],
      zw = [tz.w0[z], tz.w1[z]];
    for (let y = 0; y < my; y++) {
      const ys = [ty.i0[y], ty.i1[y]],
        yw = [ty.w0[y], ty.w1[y]];
      for (let x = 0; x < mx; x++, o++) {
        // Corners in scipy's order (last axis fastest); weight product as scipy: ((1*wz)*wy)*wx.
        let h = 0,
          uniform = true;
        for (let a = 0; a < 2; a++)
          for (let b = 0; b < 2; b++)
            for (let d = 0; d < 2; d++, h++) {
              const xi = d ? tx.i1[x] : tx.i0[x];
              cl[h] = seg[(zs[a] * ny + ys[b]) * nx + xi];
              cw[h] = zw[a] * yw[b] * (d ? tx.w1[x] : tx.w0[x]);
              if (cl[h] !== cl[0]) uniform = false;
            }
        if (uniform) {
          out[o] = cl[0];
          continue;
        }
        let v = 0;
        for (const lab of labels) {
          let t = 0,
            present = false;
          for (let k = 0; k < 8; k++)
            if (cl[k] === lab) {
              t += cw[k];
              present = true;
            }
          if (present && t >= 0.5) v = lab;
        }
        out[o] = v;
      }
    }
  }
  return out;
}

/** Moves `axis` to the front of a (Z, Y, X) array (copy), or back with `inverse`. */
function moveAxis<T extends Int16Array | Float32Array>(
  a: T,
  shape: Shape3,
  axis: number,
  inverse = false,
): T {
  if (axis === 0) return a;
  // perm maps output axes to input axes
  const perm = axis === 1 ? [1, 0, 2] : [2, 0, 1];
  const p = inverse ? [perm.indexOf(0), perm.indexOf(1), perm.indexOf(2)] : perm;
  const inShape = shape;
  const outShape = [inShape[p[0]], inShape[p[1]], inShape[p[2]]];
  const inStrides = [inShape[1] * inShape[2], inShape[2], 1];
  const st = [inStrides[p[0]], inStrides[p[1]], inStrides[p[2]]];
  const out = new (a.constructor as new (n: number) => T)(a.length);
  let o = 0;
  for (let i = 0; i < outShape[0]; i++)
    for (let j = 0; j < outShape[1]; j++)
      for (let k = 0; k < outShape[2]; k++) out[o++] = a[i * st[0] + j * st[1] + k * st[2]];
  return out;
}

/** Resamples a (Z, Y, X) seg (values -1, 0..K) to newShape with nnU-Net's one-hot order-1 recipe. */
export function resampleSeg(
  seg: Int16Array,
  shape: Shape3,
  newShape: Shape3,
  currentSpacing: readonly number[],
  newSpacing: readonly number[],
  opts: ResampleOptions = {},
): Int16Array {
  const order = opts.order ?? 1,
    orderZ = opts.orderZ ?? 0;
  if (order !== 1)
    throw new Error(`resampleSeg: only order 1 (nnU-Net's default) is implemented, got ${order}`);
  if (shape.every((s, i) => s === newShape[i])) return seg;
  const present = new Set<number>();
  for (let i = 0; i < seg.length; i++) present.add(seg[i]);
  const labels = [...present].sort((a, b) => a - b);
  const axis = separateZAxis(currentSpacing, newSpacing, opts.forceSeparateZ ?? null);
  if (axis === null) return resizeSegLinear(seg, shape, newShape, labels);
  if (orderZ !== 0) throw new Error('resampleSeg: separate z supports order_z 0 only');
  // Bring the separate axis to the front, resize each slice in-plane (a 1-slice "volume": the z taps
  // are then identity with weight 1, so the 3-D routine is the 2-D one), then nearest along it.
  const t = moveAxis(seg, shape, axis);
  const tShape: Shape3 = [
    shape[axis],
    ...[0, 1, 2].filter((a) => a !== axis).map((a) => shape[a]),
  ] as Shape3;
  const tNew: Shape3 = [
    newShape[axis],
    ...[0, 1, 2].filter((a) => a !== axis).map((a) => newShape[a]),
  ] as Shape3;
  const plane = tShape[1] * tShape[2],
    nplane = tNew[1] * tNew[2];
  let mid = t;
  if (tShape[1] !== tNew[1] || tShape[2] !== tNew[2]) {
    mid = new Int16Array(tShape[0] * nplane);
    for (let s = 0; s < tShape[0]; s++) {
      const sl = t.subarray(s * plane, (s + 1) * plane);
      mid.set(
        resizeSegLinear(sl, [1, tShape[1], tShape[2]], [1, tNew[1], tNew[2]], labels),
        s * nplane,
      );
    }
  }
  let res = mid;
  if (tShape[0] !== tNew[0]) {
    const f = new Float32Array(mid);
    const r = zoomAxis(f, [tShape[0], tNew[1], tNew[2]], 0, tNew[0], 0);
    res = Int16Array.from(r);
  }
  return moveAxis(res, tNew, axis, true);
}
