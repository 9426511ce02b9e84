// Sliding-window geometry (nnU-Net §8 steps 2-3): padding to the patch size and tile positions.

// numpy's round(): half to even (JS Math.round rounds half up, which shifts some offsets).
import { roundHalfEven } from '../util/numeric.ts';

/**
 * Tile start offsets along one axis, as compute_steps_for_sliding_window: the fewest tiles whose
 * step is at most tile*stepSize, spread evenly so the last tile ends exactly at the border.
 */
export function tilePositions(size: number, tile: number, stepSize = 0.5): number[] {
  if (size < tile) throw new Error(`tilePositions: size ${size} < tile ${tile} (pad first)`);
  if (!(stepSize > 0 && stepSize <= 1))
    throw new Error(`tilePositions: step size ${stepSize} not in (0, 1]`);
  const n = Math.ceil((size - tile) / (tile * stepSize)) + 1;
  if (n === 1) return [0];
  const step = (size - tile) / (n - 1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(roundHalfEven(step * i));
  return out;
}

/** Per-axis offsets for a whole image (sizes and tile of equal length). */
export function slidingWindowSteps(
  sizes: readonly number[],
  tile: readonly number[],
  stepSize = 0.5,
): number[][] {
  if (sizes.length !== tile.length) throw new Error('slidingWindowSteps: rank mismatch');
  return sizes.map((s, i) => tilePositions(s, tile[i], stepSize));
}

export interface Padding {
  /** Shape after padding (same rank as the input shape). */
  shape: number[];
  /** Voxels added before each axis (the extra odd voxel goes after: pad_nd_image). */
  below: number[];
  /** Half-open [start, end) per axis that recovers the unpadded array from the padded one. */
  slicer: [number, number][];
}

/**
 * Centred constant padding of the trailing axes up to at least `minSpatial` (pad_nd_image with
 * new_shape = patch size): leading axes (channels, and the slice axis for 2d) are never padded.
 */
export function paddingFor(shape: readonly number[], minSpatial: readonly number[]): Padding {
  const lead = shape.length - minSpatial.length;
  if (lead < 0) throw new Error('paddingFor: patch has more axes than the array');
  const below: number[] = [];
  const out: number[] = [];
  const slicer: [number, number][] = [];
  shape.forEach((s, i) => {
    const target = i < lead ? s : Math.max(s, minSpatial[i - lead]);
    const lo = Math.floor((target - s) / 2);
    below.push(lo);
    out.push(target);
    slicer.push([lo, lo + s]);
  });
  return { shape: out, below, slicer };
}

/** Copies a C-order array into a zero array of `pad.shape` at offset `pad.below`. */
export function padArray(src: Float32Array, shape: readonly number[], pad: Padding): Float32Array {
  if (pad.shape.every((s, i) => s === shape[i])) return src;
  const dst = new Float32Array(pad.shape.reduce((a, b) => a * b, 1));
  copyBox(
    src,
    shape,
    pad.below.map(() => 0),
    dst,
    pad.shape,
    pad.below,
    shape,
  );
  return dst;
}

/** Inverse of padArray: cuts the box `slicer` (half-open per axis) out of a padded C-order array. */
export function unpadArray(
  src: Float32Array,
  paddedShape: readonly number[],
  slicer: readonly [number, number][],
): Float32Array {
  const size = slicer.map(([a, b]) => b - a);
  if (size.every((s, i) => s === paddedShape[i])) return src;
  const dst = new Float32Array(size.reduce((a, b) => a * b, 1));
  copyBox(
    src,
    paddedShape,
    slicer.map(([a]) => a),
    dst,
    size,
    size.map(() => 0),
    size,
  );
  return dst;
}

/** Copies the box `size` from src at srcOff to dst at dstOff (both C-order, any rank ≥ 1). */
export function copyBox(
  src: Float32Array,
  srcShape: readonly number[],
  srcOff: readonly number[],
  dst: Float32Array,
  dstShape: readonly number[],
  dstOff: readonly number[],
  size: readonly number[],
): void {
  const rank = size.length;
  const rowLen = size[rank - 1];
  if (size.some((s) => s === 0)) return;
  const sStride = strides(srcShape);
  const dStride = strides(dstShape);
  const idx = new Array<number>(rank - 1).fill(0);
  for (;;) {
    let s = srcOff[rank - 1];
    let d = dstOff[rank - 1];
    for (let a = 0; a < rank - 1; a++) {
      s += (srcOff[a] + idx[a]) * sStride[a];
      d += (dstOff[a] + idx[a]) * dStride[a];
    }
    dst.set(src.subarray(s, s + rowLen), d);
    let a = rank - 2;
    while (a >= 0 && ++idx[a] === size[a]) idx[a--] = 0;
    if (a < 0) return;
  }
}

export function strides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}
