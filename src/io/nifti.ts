// NIfTI-1/-2 reader (.nii or gzipped .nii.gz, either byte order) -> Volume.
import { inflateBounded, isGzip } from './gzip.ts';
import { assertValidGeometry, axcodes } from './geometry.ts';
import { readLimits } from './read-limits.ts';
import { assertFiniteVoxels, decodeVoxels } from './voxels.ts';
import { bestAffine, parseNiftiHeader, type NiftiHeader } from './nifti-header.ts';
import {
  VOXEL_ARRAY,
  type DataTypeName,
  type Volume,
  type VoxelArray,
  type VoxelArrayCtor,
} from './volume.ts';

/** NIfTI datatype codes we read and write. */
const CODES: Record<number, DataTypeName> = {
  2: 'uint8',
  4: 'int16',
  8: 'int32',
  16: 'float32',
  64: 'float64',
  256: 'int8',
  512: 'uint16',
  768: 'uint32',
};

export const NIFTI_DATATYPES: Record<number, { name: DataTypeName; ctor: VoxelArrayCtor }> =
  Object.fromEntries(
    Object.entries(CODES).map(([code, name]) => [code, { name, ctor: VOXEL_ARRAY[name] }]),
  );

export const NIFTI_CODE: Record<DataTypeName, number> = Object.fromEntries(
  Object.entries(NIFTI_DATATYPES).map(([k, v]) => [v.name, Number(k)]),
) as Record<DataTypeName, number>;

const UNSUPPORTED: Record<number, string> = {
  0: 'unknown',
  1: 'binary',
  32: 'complex64',
  128: 'RGB24',
  1024: 'int64',
  1280: 'uint64',
  1536: 'float128',
  1792: 'complex128',
  2048: 'complex256',
  2304: 'RGBA32',
};

export interface NiftiVolume extends Volume {
  /** nibabel's orientation code of the affine, e.g. 'RAS'. */
  orientation: string;
  header: NiftiHeader;
}

/**
 * Reads a NIfTI file (raw or gzipped bytes). `name` only labels error messages. A gzipped file is
 * inflated header first, then at most the voxel data the header declares (and `maxBytes`).
 */
export function readNifti(
  input: Uint8Array,
  name = 'NIfTI',
  maxBytes = readLimits().maxVolumeBytes,
): NiftiVolume {
  const bytes = isGzip(input)
    ? inflateBounded(input, name, {
        kind: 'gzip',
        maxBytes,
        headerBytes: 544,
        sizeFromHeader: (head) => layout(parseNiftiHeader(head, name), name).end,
      })
    : input;
  const h = parseNiftiHeader(bytes, name);
  const { dims, channels, type, offset, n, need } = layout(h, name);
  if (offset > bytes.length)
    throw new Error(
      `${name}: vox_offset ${offset} is past the end of the file (${bytes.length} bytes)`,
    );
  if (bytes.length - offset < need) {
    throw new Error(
      `${name}: dims ${[...dims, channels].join('x')} of ${type.name} need ${need} bytes of voxel data but the file has ${bytes.length - offset} after vox_offset ${offset}`,
    );
  }
  const stored = decodeVoxels(bytes, offset, n, type.ctor, h.littleEndian);
  const data = applyScaling(stored, type.name, h, name);
  const datatype = dtypeOf(data);
  assertFiniteVoxels(data, name);
  if (h.sformCode !== 0 && !h.srow.every(Number.isFinite))
    throw new Error(`${name}: sform (srow_x/y/z) has NaN or infinite entries`);
  if (h.qformCode !== 0 && ![...h.quatern, ...h.qoffset].every(Number.isFinite))
    throw new Error(`${name}: qform (quatern/qoffset) has NaN or infinite entries`);
  const { affine } = bestAffine(h);
  // nibabel reads negative pixdims as their magnitude (the sign belongs to qfac/the affine).
  const spacing: [number, number, number] = [
    Math.abs(h.pixdim[1]),
    Math.abs(h.pixdim[2]),
    Math.abs(h.pixdim[3]),
  ];
  // A 1-D or 2-D image need not define the spacing of its missing axes.
  if (h.dim[0] >= 3) assertValidGeometry(name, spacing, affine);
  else if (!spacing.slice(0, h.dim[0]).every((s) => Number.isFinite(s) && s > 0))
    throw new Error(
      `${name}: invalid voxel spacing ${spacing.join(' x ')} (every spacing must be a finite number > 0)`,
    );
  return {
    data,
    dims,
    channels,
    spacing,
    affine,
    datatype,
    storedDatatype: type.name,
    orientation: axcodes(affine),
    source: {
      format: h.version === 1 ? 'nifti1' : 'nifti2',
      header: h.raw.slice().buffer as ArrayBuffer,
    },
    header: h,
  };
}

/** Where the voxel data lies and how much of it the header declares. */
function layout(h: NiftiHeader, name: string) {
  const { dims, channels } = shapeOf(h, name);
  const type = NIFTI_DATATYPES[h.datatype];
  if (!type)
    throw new Error(
      `${name}: unsupported NIfTI datatype ${h.datatype} (${UNSUPPORTED[h.datatype] ?? 'not a NIfTI datatype code'}); supported: uint8, int8, int16, uint16, int32, uint32, float32, float64`,
    );
  if (!(Number.isFinite(h.voxOffset) && h.voxOffset >= 0))
    throw new Error(`${name}: invalid vox_offset ${h.voxOffset} (must be a finite number >= 0)`);
  // nibabel raises the offset of a single file to the header end when it is smaller.
  const minOffset = h.version === 1 ? 352 : 544;
  const offset = Math.max(Math.floor(h.voxOffset), minOffset);
  const n = dims[0] * dims[1] * dims[2] * channels;
  const need = n * type.ctor.BYTES_PER_ELEMENT;
  return { dims, channels, type, offset, n, need, end: offset + need };
}

function shapeOf(
  h: NiftiHeader,
  name: string,
): { dims: [number, number, number]; channels: number } {
  const nd = h.dim[0];
  if (!(nd >= 1 && nd <= 7))
    throw new Error(`${name}: invalid dim[0] = ${nd} (number of dimensions must be 1..7)`);
  const d = [1, 1, 1, 1];
  for (let k = 1; k <= nd; k++) {
    const v = h.dim[k];
    if (!(v >= 1)) throw new Error(`${name}: dimension ${k} is ${v}; every dimension must be >= 1`);
    if (k <= 4) d[k - 1] = v;
    else if (v > 1)
      throw new Error(
        `${name}: ${nd}-D NIfTI with dim[${k}] = ${v} is not supported (at most 3-D plus channels in dim[4])`,
      );
  }
  return { dims: [d[0], d[1], d[2]], channels: d[3] };
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
function applyScaling(
  raw: VoxelArray,
  type: DataTypeName,
  h: NiftiHeader,
  name: string,
): VoxelArray {
  const slope = h.sclSlope,
    inter = h.sclInter;
  if (slope === 0 || !Number.isFinite(slope)) return raw;
  if (!Number.isFinite(inter))
    throw new Error(`${name}: valid scl_slope ${slope} but invalid scl_inter ${inter}`);
  if (slope === 1 && inter === 0) return raw;
  const out = type === 'float64' ? new Float64Array(raw.length) : new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw[i] * slope + inter;
  return out;
}
