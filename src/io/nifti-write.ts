// NIfTI-1 writer: a Volume (e.g. a label or probability map) with the geometry of its source image,
// so nibabel reads back the same shape and affine.
import { gzipSync } from 'fflate';
import { affineToQform } from './geometry.ts';
import {
  bestAffine,
  parseNiftiHeader,
  writeNifti1Header,
  type NiftiHeader,
} from './nifti-header.ts';
import { NIFTI_CODE } from './nifti.ts';
import type { DataTypeName, Volume, VoxelArray } from './volume.ts';

export interface NiftiWriteOptions {
  /** gzip the output (.nii.gz). Default false. */
  gzip?: boolean;
  /** Stored datatype; default the volume's. Integer types refuse values they cannot hold. */
  datatype?: DataTypeName;
  /** Header to copy fields and geometry from; default `volume.source.header` when it is NIfTI-1. */
  sourceHeader?: ArrayBuffer;
}

const CTORS: Record<DataTypeName, { new (n: number): VoxelArray; BYTES_PER_ELEMENT: number }> = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
};

export function writeNifti(v: Volume, opts: NiftiWriteOptions = {}): Uint8Array {
  const datatype = opts.datatype ?? v.datatype;
  const data = convert(v.data, datatype);
  const headerBuf =
    opts.sourceHeader ?? (v.source?.format === 'nifti1' ? v.source.header : undefined);
  const base = headerBuf ? parseNiftiHeader(new Uint8Array(headerBuf), 'source header') : undefined;
  const ctor = CTORS[datatype];
  const [nx, ny, nz] = v.dims;
  const fourD = v.channels > 1;
  const dim = [fourD ? 4 : 3, nx, ny, nz, fourD ? v.channels : 1, 1, 1, 1];
  const h: Omit<NiftiHeader, 'raw' | 'version' | 'littleEndian'> = {
    dim,
    datatype: NIFTI_CODE[datatype],
    bitpix: ctor.BYTES_PER_ELEMENT * 8,
    pixdim: [
      1,
      v.spacing[0],
      v.spacing[1],
      v.spacing[2],
      fourD ? base?.pixdim[4] || 1 : 1,
      1,
      1,
      1,
    ],
    voxOffset: 352,
    sclSlope: 1,
    sclInter: 0,
    xyztUnits: base ? base.xyztUnits : 2, // 2 = mm
    qformCode: 1,
    sformCode: 1,
    quatern: [0, 0, 0],
    qoffset: [0, 0, 0],
    srow: [],
    descrip: base?.descrip ?? '',
    intentCode: 0,
  };
  if (base && sameAffine(bestAffine(base).affine, v.affine)) {
    // Keep the source's geometry fields verbatim: nibabel then derives the identical affine.
    Object.assign(h, {
      qformCode: base.qformCode,
      sformCode: base.sformCode,
      quatern: base.quatern,
      qoffset: base.qoffset,
      srow: base.srow,
    });
    h.pixdim[0] = base.pixdim[0];
    for (let k = 1; k <= 3; k++) h.pixdim[k] = base.pixdim[k];
  } else {
    const q = affineToQform(v.affine);
    h.srow = v.affine.slice(0, 12);
    h.sformCode = base && base.sformCode > 0 ? base.sformCode : 1;
    h.qformCode = base && base.qformCode > 0 ? base.qformCode : 1;
    h.quatern = [q.b, q.c, q.d];
    h.qoffset = [q.offset[0], q.offset[1], q.offset[2]];
    h.pixdim[0] = q.qfac;
    for (let k = 0; k < 3; k++) h.pixdim[k + 1] = q.zooms[k];
  }
  const header = writeNifti1Header(h, base?.version === 1 ? base.raw : undefined);
  const body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(header.length + body.length);
  out.set(header);
  out.set(body, header.length);
  return opts.gzip ? gzipSync(out, { level: 6, mtime: 0 }) : out;
}

function sameAffine(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const RANGES: Partial<Record<DataTypeName, [number, number]>> = {
  uint8: [0, 255],
  int8: [-128, 127],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
};

/** Copies into the target type; integer targets refuse values they cannot hold exactly, float targets round. */
function convert(src: VoxelArray, to: DataTypeName): VoxelArray {
  if (CTORS[to] === src.constructor) return src;
  const out = new CTORS[to](src.length);
  const range = RANGES[to];
  for (let i = 0; i < src.length; i++) {
    const x = src[i];
    if (range && (!Number.isInteger(x) || x < range[0] || x > range[1])) {
      throw new Error(`cannot write value ${x} (voxel ${i}) as ${to}`);
    }
    out[i] = x;
  }
  return out;
}
