// torch.nn.functional.interpolate equivalents on (C, Z, Y, X) C-order arrays: 'nearest-exact' and
// (tri)linear with align_corners=False. 2D data is handled as Z = 1. Both are separable, so
// per-axis lookup tables are built once and the inner loops only gather.

type Typed = Float32Array | Int8Array | Int16Array;

/** Per-axis source index for 'nearest-exact': floor((dst + 0.5)·in/out), clamped to in − 1. */
export function nearestExactTable(inSize: number, outSize: number): Int32Array {
  const scale = inSize / outSize;
  const t = new Int32Array(outSize);
  for (let i = 0; i < outSize; i++) t[i] = Math.min(Math.floor((i + 0.5) * scale), inSize - 1);
  return t;
}

export interface LinearTable {
  i0: Int32Array;
  i1: Int32Array;
  /** weight of i1 (i0 gets 1 − w) */
  w: Float32Array;
}

/** Per-axis taps for linear, align_corners=False: src = (dst + 0.5)·in/out − 0.5, negatives clamped to 0. */
export function linearTable(inSize: number, outSize: number): LinearTable {
  const scale = inSize / outSize;
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w = new Float32Array(outSize);
  for (let i = 0; i < outSize; i++) {
    const src = Math.max((i + 0.5) * scale - 0.5, 0);
    const f = Math.floor(src);
    i0[i] = f;
    i1[i] = f < inSize - 1 ? f + 1 : f;
    w[i] = src - f;
  }
  return { i0, i1, w };
}

/** Nearest-exact resize of `channels` volumes of shape `inS` (3 entries) to `outS`. */
export function resizeNearestExact<T extends Typed>(
  src: T,
  channels: number,
  inS: readonly [number, number, number],
  outS: readonly [number, number, number],
  dst: T,
): T {
  const tz = nearestExactTable(inS[0], outS[0]);
  const ty = nearestExactTable(inS[1], outS[1]);
  const tx = nearestExactTable(inS[2], outS[2]);
  const vin = inS[0] * inS[1] * inS[2];
  let o = 0;
  for (let c = 0; c < channels; c++)
    for (let z = 0; z < outS[0]; z++)
      for (let y = 0; y < outS[1]; y++) {
        const row = c * vin + (tz[z] * inS[1] + ty[y]) * inS[2];
        for (let x = 0; x < outS[2]; x++) dst[o++] = src[row + tx[x]];
      }
  return dst;
}

/** (Tri)linear resize, align_corners=False, of one channel (offsets into shared buffers). */
export function resizeLinear(
  src: Float32Array,
  srcOff: number,
  inS: readonly [number, number, number],
  outS: readonly [number, number, number],
  dst: Float32Array,
  dstOff: number,
): void {
  const tz = linearTable(inS[0], outS[0]);
  const ty = linearTable(inS[1], outS[1]);
  const tx = linearTable(inS[2], outS[2]);
  const [, Y, X] = inS;
  let o = dstOff;
  for (let z = 0; z < outS[0]; z++) {
    const z0 = srcOff + tz.i0[z] * Y * X;
    const z1 = srcOff + tz.i1[z] * Y * X;
    const wz = tz.w[z];
    for (let y = 0; y < outS[1]; y++) {
      const y0 = ty.i0[y] * X;
      const y1 = ty.i1[y] * X;
      const wy = ty.w[y];
      const w00 = (1 - wz) * (1 - wy);
      const w01 = (1 - wz) * wy;
      const w10 = wz * (1 - wy);
      const w11 = wz * wy;
      const r00 = z0 + y0,
        r01 = z0 + y1,
        r10 = z1 + y0,
        r11 = z1 + y1;
      for (let x = 0; x < outS[2]; x++) {
        const x0 = tx.i0[x];
        const x1 = tx.i1[x];
        const wx = tx.w[x];
        const a =
          src[r00 + x0] * w00 + src[r01 + x0] * w01 + src[r10 + x0] * w10 + src[r11 + x0] * w11;
        const b =
          src[r00 + x1] * w00 + src[r01 + x1] * w01 + src[r10 + x1] * w10 + src[r11 + x1] * w11;
        dst[o++] = a * (1 - wx) + b * wx;
      }
    }
  }
}
