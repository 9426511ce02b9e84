// NIfTI-1/-2 reader (.nii or gzipped .nii.gz, either byte order) -> Volume.
import { gunzip, isGzip } from './gzip.ts';
import { axcodes } from './geometry.ts';
import { bestAffine, parseNiftiHeader, type NiftiHeader } from './nifti-header.ts';
import { VOXEL_ARRAY, type DataTypeName, type Volume, type VoxelArray, type VoxelArrayCtor } from './volume.ts';

/** NIfTI datatype codes we read and write. */
const CODES: Record<number, DataTypeName> = { 2: 'uint8', 4: 'int16', 8: 'int32', 16: 'float32', 64: 'float64', 256: 'int8', 512: 'uint16', 768: 'uint32' };

export const NIFTI_DATATYPES: Record<number, { name: DataTypeName; ctor: VoxelArrayCtor }> = Object.fromEntries(
  Object.entries(CODES).map(([code, name]) => [code, { name, ctor: VOXEL_ARRAY[name] }]),
);

export const NIFTI_CODE: Record<DataTypeName, number> = Object.fromEntries(Object.entries(NIFTI_DATATYPES).map(([k, v]) => [v.name, Number(k)])) as Record<DataTypeName, number>;

const UNSUPPORTED: Record<number, string> = {
  0: 'unknown', 1: 'binary', 32: 'complex64', 128: 'RGB24', 1024: 'int64', 1280: 'uint64', 1536: 'float128', 1792: 'complex128', 2048: 'complex256', 2304: 'RGBA32',
};

export interface NiftiVolume extends Volume {
  /** nibabel's orientation code of the affine, e.g. 'RAS'. */
  orientation: string;
  header: NiftiHeader;
}

/** Reads a NIfTI file (raw or gzipped bytes). `name` only labels error messages. */
export function readNifti(input: Uint8Array, name = 'NIfTI'): NiftiVolume {
  const bytes = isGzip(input) ? gunzip(input, name) : input;
  const h = parseNiftiHeader(bytes, name);
  const { dims, channels } = shapeOf(h, name);
  const type = NIFTI_DATATYPES[h.datatype];
  if (!type) throw new Error(`${name}: unsupported NIfTI datatype ${h.datatype} (${UNSUPPORTED[h.datatype] ?? 'not a NIfTI datatype code'}); supported: uint8, int8, int16, uint16, int32, uint32, float32, float64`);
  // nibabel raises the offset of a single file to the header end when it is smaller.
  const minOffset = h.version === 1 ? 352 : 544;
  const offset = Math.max(Math.floor(h.voxOffset), minOffset);
  if (offset > bytes.length) throw new Error(`${name}: vox_offset ${offset} is past the end of the file (${bytes.length} bytes)`);
  const n = dims[0] * dims[1] * dims[2] * channels;
  const need = n * type.ctor.BYTES_PER_ELEMENT;
  if (bytes.length - offset < need) {
    throw new Error(`${name}: dims ${[...dims, channels].join('x')} of ${type.name} need ${need} bytes of voxel data but the file has ${bytes.length - offset} after vox_offset ${offset}`);
  }
  const stored = decode(bytes, offset, n, type.ctor, h.littleEndian);
  const data = applyScaling(stored, type.name, h, name);
  const datatype = dtypeOf(data);
  if (datatype === 'float32' || datatype === 'float64') assertFinite(data as Float32Array | Float64Array, name);
  const { affine } = bestAffine(h);
  return {
    data, dims, channels,
    spacing: [Math.abs(h.pixdim[1]), Math.abs(h.pixdim[2]), Math.abs(h.pixdim[3])],
    affine, datatype, storedDatatype: type.name,
    orientation: axcodes(affine),
    source: { format: h.version === 1 ? 'nifti1' : 'nifti2', header: h.raw.slice().buffer as ArrayBuffer },
    header: h,
  };
}

function shapeOf(h: NiftiHeader, name: string): { dims: [number, number, number]; channels: number } {
  const nd = h.dim[0];
  if (!(nd >= 1 && nd <= 7)) throw new Error(`${name}: invalid dim[0] = ${nd} (number of dimensions must be 1..7)`);
  const d = [1, 1, 1, 1];
  for (let k = 1; k <= nd; k++) {
    const v = h.dim[k];
    if (!(v >= 1)) throw new Error(`${name}: dimension ${k} is ${v}; every dimension must be >= 1`);
    if (k <= 4) d[k - 1] = v;
    else if (v > 1) throw new Error(`${name}: ${nd}-D NIfTI with dim[${k}] = ${v} is not supported (at most 3-D plus channels in dim[4])`);
  }
  return { dims: [d[0], d[1], d[2]], channels: d[3] };
}

function decode(bytes: Uint8Array, offset: number, n: number, ctor: VoxelArrayCtor, little: boolean): VoxelArray {
  const size = ctor.BYTES_PER_ELEMENT;
  const buf = bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + n * size) as ArrayBuffer;
  // Typed arrays use the host order (little-endian everywhere we run); swap big-endian data in place.
  if (!little && size > 1) {
    const u = new Uint8Array(buf);
    for (let i = 0; i < u.length; i += size) u.subarray(i, i + size).reverse();
  }
  return new ctor(buf);
}

function dtypeOf(a: VoxelArray): DataTypeName {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Uint8Array) return 'uint8';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Uint16Array) return 'uint16';
  if (a instanceof Int32Array) return 'int32';
  return 'uint32';
}

/**
 * scl_slope/scl_inter as nibabel: slope 0 or non-finite means unscaled; slope 1 and inter 0 keep
 * the stored type. Scaling is computed in double and stored as float32 (float64 stays float64),
 * which is what nnU-Net's NibabelIO gets from get_fdata() followed by astype(float32).
 */
function applyScaling(raw: VoxelArray, type: DataTypeName, h: NiftiHeader, name: string): VoxelArray {
  const slope = h.sclSlope, inter = h.sclInter;
  if (slope === 0 || !Number.isFinite(slope)) return raw;
  if (!Number.isFinite(inter)) throw new Error(`${name}: valid scl_slope ${slope} but invalid scl_inter ${inter}`);
  if (slope === 1 && inter === 0) return raw;
  const out = type === 'float64' ? new Float64Array(raw.length) : new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw[i] * slope + inter;
  return out;
}

function assertFinite(a: Float32Array | Float64Array, name: string): void {
  let bad = 0, first = -1;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad) throw new Error(`${name}: ${bad} voxel(s) are NaN or infinite (first at index ${first}); nnU-Net cannot use them`);
}
