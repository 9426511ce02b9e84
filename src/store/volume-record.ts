// Volume ⇄ (header in `cases`, bytes in `volumes`). Round trip is bit-exact and keeps the typed
// array class, because the class follows from the stored dtype.

import { VOXEL_ARRAY, type DataTypeName, type Volume, type VoxelArray } from '../io/volume.ts';
import type { VolumeHeader } from './db.ts';

const ARRAY_OF = VOXEL_ARRAY;

export function dtypeOf(data: VoxelArray): DataTypeName {
  for (const [name, C] of Object.entries(ARRAY_OF))
    if (data.constructor === C) return name as DataTypeName;
  throw new TypeError(`store: unsupported voxel array ${Object.prototype.toString.call(data)}`);
}

/** Splits a volume; the bytes are exactly the view's (a view into a larger buffer is copied out). */
export function splitVolume(v: Volume): {
  header: VolumeHeader;
  dtype: DataTypeName;
  bytes: ArrayBuffer;
} {
  const { data, ...rest } = v;
  const dtype = dtypeOf(data);
  if (dtype !== v.datatype)
    throw new TypeError(`store: volume says ${v.datatype} but holds ${dtype} voxels`);
  const expected = v.dims[0] * v.dims[1] * v.dims[2] * v.channels;
  if (data.length !== expected)
    throw new RangeError(
      `store: volume has ${data.length} voxels, dims × channels say ${expected}`,
    );
  const whole =
    data.byteOffset === 0 &&
    data.byteLength === data.buffer.byteLength &&
    data.buffer instanceof ArrayBuffer;
  // Structured clone copies a view's whole buffer, so store only the view's bytes.
  const bytes = whole
    ? (data.buffer as ArrayBuffer)
    : (new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice().buffer as ArrayBuffer);
  return { header: { ...rest, byteLength: data.byteLength }, dtype, bytes };
}

export async function joinVolume(
  header: VolumeHeader,
  dtype: DataTypeName,
  data: ArrayBuffer | Blob,
): Promise<Volume> {
  const buf = data instanceof ArrayBuffer ? data : await data.arrayBuffer();
  if (buf.byteLength !== header.byteLength)
    throw new RangeError(
      `store: stored volume has ${buf.byteLength} bytes, header says ${header.byteLength}`,
    );
  const { byteLength: _, ...rest } = header;
  return { ...rest, data: new ARRAY_OF[dtype](buf) };
}
