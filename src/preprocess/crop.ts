// nnU-Net's crop_to_nonzero (spec §2): mask = any channel != 0, filled with binary_fill_holes (face
// connectivity), cropped to its tight half-open bbox; label 0 outside the filled mask becomes -1.
// Arrays are C-order (C, Z, Y, X), i.e. a Volume's buffer as is.
import type { VoxelArray } from '../io/volume.ts';

export type Shape3 = [number, number, number];
/** Half-open [start, end) per axis (z, y, x), as nnU-Net's bbox_used_for_cropping. */
export type BBox = [[number, number], [number, number], [number, number]];

export interface CropResult {
  /** float32 (C, z, y, x) cropped: the only copy of the image made by preprocessing. */
  data: Float32Array;
  /** (z, y, x) cropped; -1 = outside the filled nonzero mask (only where the label was 0). */
  seg: Int16Array;
  shape: Shape3;
  bbox: BBox;
  /** Filled nonzero mask over the crop (1 inside). */
  mask: Uint8Array;
}

/** 1 where any channel is nonzero. */
export function nonzeroMask(data: ArrayLike<number>, channels: number, shape: Shape3): Uint8Array {
  const n = shape[0] * shape[1] * shape[2];
  const m = new Uint8Array(n);
  for (let c = 0; c < channels; c++) {
    const o = c * n;
    for (let i = 0; i < n; i++) if (data[o + i] !== 0) m[i] = 1;
  }
  return m;
}

/**
 * scipy.ndimage.binary_fill_holes with the default (face) structure, in place: background voxels not
 * connected to the image border through background become 1. Scanline flood fill from the border,
 * so the stack holds runs rather than voxels (volumes can be 512×512×300).
 */
export function fillHoles(mask: Uint8Array, shape: Shape3): void {
  const [nz, ny, nx] = shape;
  const OUT = 2;
  let stack = new Int32Array(1 << 14);
  let sp = 0;
  const push = (i: number) => {
    if (sp === stack.length) {
      const s = new Int32Array(stack.length * 2);
      s.set(stack);
      stack = s;
    }
    stack[sp++] = i;
  };
  // Fills the run of background containing i along x, then seeds each background segment of the
  // neighbouring rows (y±1, z±1) under that run.
  const seedRows = (row: number, x0: number, x1: number) => {
    let inSeg = false;
    for (let x = x0; x <= x1; x++) {
      const free = mask[row + x] === 0;
      if (free && !inSeg) push(row + x);
      inSeg = free;
    }
  };
  const flood = () => {
    while (sp > 0) {
      const i = stack[--sp];
      if (mask[i] !== 0) continue;
      const x = i % nx;
      const row = i - x;
      let a = x,
        b = x;
      while (a > 0 && mask[row + a - 1] === 0) a--;
      while (b < nx - 1 && mask[row + b + 1] === 0) b++;
      mask.fill(OUT, row + a, row + b + 1);
      const y = (row / nx) % ny;
      const z = Math.floor(row / (nx * ny));
      if (y > 0) seedRows(row - nx, a, b);
      if (y < ny - 1) seedRows(row + nx, a, b);
      if (z > 0) seedRows(row - nx * ny, a, b);
      if (z < nz - 1) seedRows(row + nx * ny, a, b);
    }
  };
  for (let z = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      const row = (z * ny + y) * nx;
      if (z === 0 || z === nz - 1 || y === 0 || y === ny - 1) seedRows(row, 0, nx - 1);
      else {
        if (mask[row] === 0) push(row);
        if (mask[row + nx - 1] === 0) push(row + nx - 1);
      }
      flood();
    }
  }
  for (let i = 0; i < mask.length; i++) mask[i] = mask[i] === OUT ? 0 : 1;
}

/** Tight half-open bbox of mask != 0; an all-zero mask gives the whole image (no crop). */
export function bboxOfMask(mask: Uint8Array, shape: Shape3): BBox {
  const [nz, ny, nx] = shape;
  let z0 = nz,
    z1 = -1,
    y0 = ny,
    y1 = -1,
    x0 = nx,
    x1 = -1;
  for (let z = 0, i = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++, i += nx) {
      let a = -1,
        b = -1;
      for (let x = 0; x < nx; x++)
        if (mask[i + x] !== 0) {
          if (a < 0) a = x;
          b = x;
        }
      if (a < 0) continue;
      if (z < z0) z0 = z;
      z1 = z;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      if (a < x0) x0 = a;
      if (b > x1) x1 = b;
    }
  }
  if (z1 < 0)
    return [
      [0, nz],
      [0, ny],
      [0, nx],
    ];
  return [
    [z0, z1 + 1],
    [y0, y1 + 1],
    [x0, x1 + 1],
  ];
}

/** Copies the bbox of every channel of a (C, Z, Y, X) array into a new array of type `ctor`. */
export function cropArray<T extends VoxelArray | Int16Array>(
  src: ArrayLike<number>,
  channels: number,
  shape: Shape3,
  bbox: BBox,
  out: T,
): T {
  const [, ny, nx] = shape;
  const [[z0, z1], [y0, y1], [x0, x1]] = bbox;
  const n = shape[0] * ny * nx;
  let o = 0;
  for (let c = 0; c < channels; c++) {
    for (let z = z0; z < z1; z++) {
      for (let y = y0; y < y1; y++) {
        const row = c * n + (z * ny + y) * nx;
        for (let x = x0; x < x1; x++) out[o++] = src[row + x];
      }
    }
  }
  return out;
}

/**
 * crop_to_nonzero. `data` is (C, Z, Y, X) of any numeric type (cast to float32 while cropping);
 * `seg` is (Z, Y, X) or null/undefined, in which case a label map (0 inside, -1 outside) is made.
 */
export function cropToNonzero(
  data: ArrayLike<number>,
  channels: number,
  shape: Shape3,
  seg?: ArrayLike<number> | null,
): CropResult {
  const full = nonzeroMask(data, channels, shape);
  fillHoles(full, shape);
  const bbox = bboxOfMask(full, shape);
  const cshape: Shape3 = [
    bbox[0][1] - bbox[0][0],
    bbox[1][1] - bbox[1][0],
    bbox[2][1] - bbox[2][0],
  ];
  const cn = cshape[0] * cshape[1] * cshape[2];
  const out = cropArray(data, channels, shape, bbox, new Float32Array(cn * channels));
  const mask = cropArray(full, 1, shape, bbox, new Uint8Array(cn));
  const s = seg ? cropArray(seg, 1, shape, bbox, new Int16Array(cn)) : new Int16Array(cn);
  for (let i = 0; i < cn; i++) if (mask[i] === 0 && s[i] === 0) s[i] = -1;
  return { data: out, seg: s, shape: cshape, bbox, mask };
}
