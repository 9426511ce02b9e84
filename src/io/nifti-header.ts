// NIfTI-1 / NIfTI-2 header: parse (either byte order) and write (NIfTI-1, little-endian), plus
// the voxel-to-world affine chosen as nibabel chooses it.
import { quatToMatrix, type Affine } from './geometry.ts';

export interface NiftiHeader {
  version: 1 | 2;
  littleEndian: boolean;
  /** dim[0..7] */
  dim: number[];
  datatype: number;
  bitpix: number;
  /** pixdim[0..7]; pixdim[0] is qfac. NIfTI-1 stores float32, widened here exactly. */
  pixdim: number[];
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  xyztUnits: number;
  qformCode: number;
  sformCode: number;
  quatern: [number, number, number];
  qoffset: [number, number, number];
  /** srow_x, srow_y, srow_z (12 numbers). */
  srow: number[];
  descrip: string;
  intentCode: number;
  /** The header bytes as read (348 or 540), to keep fields we do not model. */
  raw: Uint8Array;
}

function str(bytes: Uint8Array, off: number, len: number): string {
  let s = '';
  for (let i = off; i < off + len && bytes[i] !== 0; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/** Parses the header; throws on short input, unknown sizeof_hdr or wrong magic. */
export function parseNiftiHeader(bytes: Uint8Array, what = 'NIfTI'): NiftiHeader {
  if (bytes.length < 4)
    throw new Error(`${what}: header too short (${bytes.length} bytes; a NIfTI-1 header is 348)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = dv.getInt32(0, true),
    be = dv.getInt32(0, false);
  const size = le === 348 || le === 540 ? le : be === 348 || be === 540 ? be : -1;
  if (size < 0)
    throw new Error(
      `${what}: not a NIfTI file: sizeof_hdr is ${le} (expected 348 for NIfTI-1 or 540 for NIfTI-2)`,
    );
  const little = le === size;
  if (bytes.length < size)
    throw new Error(
      `${what}: header too short (${bytes.length} bytes; NIfTI-${size === 348 ? 1 : 2} needs ${size})`,
    );
  const i16 = (o: number) => dv.getInt16(o, little);
  const i32 = (o: number) => dv.getInt32(o, little);
  const f32 = (o: number) => dv.getFloat32(o, little);
  const f64 = (o: number) => dv.getFloat64(o, little);
  const i64 = (o: number) => Number(dv.getBigInt64(o, little));
  if (size === 348) {
    const magic = str(bytes, 344, 4);
    if (magic === 'ni1')
      throw new Error(
        `${what}: a NIfTI-1 header/image pair (.hdr/.img) is not supported; convert it to a single .nii file`,
      );
    if (magic !== 'n+1')
      throw new Error(`${what}: wrong NIfTI-1 magic ${JSON.stringify(magic)} (expected "n+1")`);
    return {
      version: 1,
      littleEndian: little,
      dim: Array.from({ length: 8 }, (_, k) => i16(40 + 2 * k)),
      datatype: i16(70),
      bitpix: i16(72),
      pixdim: Array.from({ length: 8 }, (_, k) => f32(76 + 4 * k)),
      voxOffset: f32(108),
      sclSlope: f32(112),
      sclInter: f32(116),
      xyztUnits: bytes[123],
      qformCode: i16(252),
      sformCode: i16(254),
      quatern: [f32(256), f32(260), f32(264)],
      qoffset: [f32(268), f32(272), f32(276)],
      srow: Array.from({ length: 12 }, (_, k) => f32(280 + 4 * k)),
      descrip: str(bytes, 148, 80),
      intentCode: i16(68),
      raw: bytes.slice(0, 348),
    };
  }
  const magic = str(bytes, 4, 8);
  if (magic === 'ni2')
    throw new Error(
      `${what}: a NIfTI-2 header/image pair (.hdr/.img) is not supported; convert it to a single .nii file`,
    );
  if (
    magic !== 'n+2' ||
    bytes[8] !== 0x0d ||
    bytes[9] !== 0x0a ||
    bytes[10] !== 0x1a ||
    bytes[11] !== 0x0a
  ) {
    throw new Error(
      `${what}: wrong NIfTI-2 magic ${JSON.stringify(magic)} (expected "n+2\\0\\r\\n\\x1a\\n")`,
    );
  }
  return {
    version: 2,
    littleEndian: little,
    dim: Array.from({ length: 8 }, (_, k) => i64(16 + 8 * k)),
    datatype: i16(12),
    bitpix: i16(14),
    pixdim: Array.from({ length: 8 }, (_, k) => f64(104 + 8 * k)),
    voxOffset: i64(168),
    sclSlope: f64(176),
    sclInter: f64(184),
    xyztUnits: i32(500),
    qformCode: i32(344),
    sformCode: i32(348),
    quatern: [f64(352), f64(360), f64(368)],
    qoffset: [f64(376), f64(384), f64(392)],
    srow: Array.from({ length: 12 }, (_, k) => f64(400 + 8 * k)),
    descrip: str(bytes, 240, 80),
    intentCode: i32(504),
    raw: bytes.slice(0, 540),
  };
}

/** qform affine as nibabel's get_qform: R(quaternion) * diag(|pixdim1..3| with qfac on z) + qoffset. */
export function qformAffine(h: NiftiHeader): Affine {
  const [b, c, d] = h.quatern;
  const w2 = 1 - (b * b + c * c + d * d);
  // nibabel tolerates a slightly negative w^2 (float32 rounding) as w = 0.
  if (w2 < -3 * 1.1920928955078125e-7)
    throw new Error(
      `NIfTI: invalid qform quaternion (b, c, d) = (${b}, ${c}, ${d}): |(b,c,d)| > 1`,
    );
  const r = quatToMatrix(w2 > 0 ? Math.sqrt(w2) : 0, b, c, d);
  // nibabel fixes qfac to 1 unless it is exactly -1, and negative pixdims to their absolute value.
  const qfac = h.pixdim[0] === -1 ? -1 : 1;
  const vox = [Math.abs(h.pixdim[1]), Math.abs(h.pixdim[2]), Math.abs(h.pixdim[3]) * qfac];
  const a: Affine = [];
  for (let i = 0; i < 3; i++)
    a.push(r[i][0] * vox[0], r[i][1] * vox[1], r[i][2] * vox[2], h.qoffset[i]);
  a.push(0, 0, 0, 1);
  return a;
}

export function sformAffine(h: NiftiHeader): Affine {
  return [...h.srow, 0, 0, 0, 1];
}

/**
 * nibabel's `get_best_affine`: sform if sform_code != 0, else qform if qform_code != 0, else the
 * pixdim diagonal centred on the image with x flipped (Analyze's radiological default).
 */
export function bestAffine(h: NiftiHeader): { affine: Affine; from: 'sform' | 'qform' | 'pixdim' } {
  // `+ 0` turns -0 into 0 so affines compare and print as nibabel's do.
  if (h.sformCode !== 0) return { affine: sformAffine(h).map((x) => x + 0), from: 'sform' };
  if (h.qformCode !== 0) return { affine: qformAffine(h).map((x) => x + 0), from: 'qform' };
  const n = Math.min(Math.max(h.dim[0], 0), 3);
  const shape = [1, 1, 1],
    zooms = [1, 1, 1];
  for (let k = 0; k < n; k++) {
    shape[k] = h.dim[k + 1];
    zooms[k] = Math.abs(h.pixdim[k + 1]);
  }
  zooms[0] = -zooms[0];
  const a = identity3(zooms);
  for (let k = 0; k < 3; k++) a[k * 4 + 3] = (-(shape[k] - 1) / 2) * zooms[k];
  return { affine: a.map((x) => x + 0), from: 'pixdim' };
}

function identity3(z: number[]): Affine {
  return [z[0], 0, 0, 0, 0, z[1], 0, 0, 0, 0, z[2], 0, 0, 0, 0, 1];
}

/** Serialises a NIfTI-1 single-file header (little-endian, 348 bytes + 4 empty extension bytes). */
export function writeNifti1Header(
  h: Omit<NiftiHeader, 'raw' | 'version' | 'littleEndian'>,
  base?: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(352);
  // Keep fields we do not model (intent parameters, description, aux_file, ...) from a NIfTI-1 base.
  if (base && base.length >= 348) out.set(base.subarray(0, 348));
  const dv = new DataView(out.buffer);
  if (base && base.length >= 348 && dv.getInt32(0, true) !== 348) {
    // The base is big-endian: byte-swap the fields we keep as numbers by re-reading them.
    swapNifti1Numbers(out);
  }
  dv.setInt32(0, 348, true);
  for (let k = 0; k < 8; k++) {
    const v = h.dim[k] ?? 0;
    if (v > 32767) throw new Error(`NIfTI-1 cannot store dimension ${v} (> 32767)`);
    dv.setInt16(40 + 2 * k, v, true);
  }
  dv.setInt16(68, h.intentCode, true);
  dv.setInt16(70, h.datatype, true);
  dv.setInt16(72, h.bitpix, true);
  for (let k = 0; k < 8; k++) dv.setFloat32(76 + 4 * k, h.pixdim[k] ?? 0, true);
  dv.setFloat32(108, h.voxOffset, true);
  dv.setFloat32(112, h.sclSlope, true);
  dv.setFloat32(116, h.sclInter, true);
  out[123] = h.xyztUnits;
  dv.setFloat32(124, 0, true); // cal_max/cal_min describe the old data's display range
  dv.setFloat32(128, 0, true);
  dv.setInt16(252, h.qformCode, true);
  dv.setInt16(254, h.sformCode, true);
  for (let k = 0; k < 3; k++) dv.setFloat32(256 + 4 * k, h.quatern[k], true);
  for (let k = 0; k < 3; k++) dv.setFloat32(268 + 4 * k, h.qoffset[k], true);
  for (let k = 0; k < 12; k++) dv.setFloat32(280 + 4 * k, h.srow[k], true);
  out.set([0x6e, 0x2b, 0x31, 0], 344); // "n+1\0"
  return out;
}

/** In-place byte swap of every multi-byte numeric field of a NIfTI-1 header. */
function swapNifti1Numbers(b: Uint8Array): void {
  const fields: [number, number][] = [
    [0, 4],
    [32, 4],
    [36, 2],
  ];
  for (let o = 40; o < 56; o += 2) fields.push([o, 2]); // dim
  for (let o = 56; o < 68; o += 4) fields.push([o, 4]); // intent_p1..3
  for (let o = 68; o < 76; o += 2) fields.push([o, 2]); // intent_code, datatype, bitpix, slice_start
  for (let o = 76; o < 120; o += 4) fields.push([o, 4]); // pixdim, vox_offset, scl_slope, scl_inter
  fields.push([120, 2]);
  for (let o = 124; o < 148; o += 4) fields.push([o, 4]); // cal_max .. glmin
  fields.push([252, 2], [254, 2]);
  for (let o = 256; o < 328; o += 4) fields.push([o, 4]); // quatern, qoffset, srow
  for (const [off, n] of fields) b.subarray(off, off + n).reverse();
}
