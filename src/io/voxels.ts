// Pieces every volume reader shares: raw voxel bytes -> typed array (either byte order), channel
// de-interleaving, the finite-values check, and the RAS affine of ITK-style geometry (origin,
// spacing, per-axis direction vectors in a patient frame such as LPS).
import type { Affine } from './geometry.ts';
import type { VoxelArray, VoxelArrayCtor } from './volume.ts';

/** Copies n values of `ctor` from bytes[offset..] into a new array, swapping big-endian data. */
export function decodeVoxels(
  bytes: Uint8Array,
  offset: number,
  n: number,
  ctor: VoxelArrayCtor,
  little: boolean,
): VoxelArray {
  const size = ctor.BYTES_PER_ELEMENT;
  const buf = bytes.buffer.slice(
    bytes.byteOffset + offset,
    bytes.byteOffset + offset + n * size,
  ) as ArrayBuffer;
  // Typed arrays use the host order (little-endian everywhere we run); swap big-endian data in place.
  if (!little && size > 1) {
    const u = new Uint8Array(buf);
    for (let i = 0; i < u.length; i += size) u.subarray(i, i + size).reverse();
  }
  return new ctor(buf);
}

/** Interleaved channels (channel fastest, as NRRD vectors and MetaImage store them) -> one block per channel. */
export function deinterleave(a: VoxelArray, channels: number): VoxelArray {
  if (channels === 1) return a;
  const n = a.length / channels;
  const out = new (a.constructor as VoxelArrayCtor)(a.length);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < channels; c++) out[c * n + i] = a[i * channels + c];
  return out;
}

export function assertFiniteVoxels(a: VoxelArray, name: string): void {
  if (!(a instanceof Float32Array || a instanceof Float64Array)) return;
  let bad = 0,
    first = -1;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad)
    throw new Error(
      `${name}: ${bad} voxel(s) are NaN or infinite (first at index ${first}); nnU-Net cannot use them`,
    );
}

/** Sign of each world axis relative to RAS for the patient frames NRRD and MetaImage name. */
export const FRAME_TO_RAS: Record<'RAS' | 'LPS' | 'LAS', [number, number, number]> = {
  RAS: [1, 1, 1],
  LPS: [-1, -1, 1],
  LAS: [-1, 1, 1],
};

/**
 * The RAS affine (row-major, as nibabel's) of axis vectors `axes[i]` (voxel step along axis i, in
 * mm, in `frame` coordinates) and `origin` (centre of voxel 0 in `frame`). ITK and Slicer use LPS;
 * converting to RAS negates the first two world coordinates, exactly what nibabel/SimpleITK give
 * for the same image saved as NIfTI.
 */
export function frameAffine(
  axes: number[][],
  origin: number[],
  frame: keyof typeof FRAME_TO_RAS,
): Affine {
  const s = FRAME_TO_RAS[frame];
  const a: Affine = [];
  for (let r = 0; r < 3; r++)
    a.push(
      s[r] * axes[0][r] + 0,
      s[r] * axes[1][r] + 0,
      s[r] * axes[2][r] + 0,
      s[r] * origin[r] + 0,
    );
  a.push(0, 0, 0, 1);
  return a;
}
