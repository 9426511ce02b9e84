// DICOM files -> series (by SeriesInstanceUID) -> Volumes. Slices are ordered by their position
// along the slice normal, never by file name or InstanceNumber; the affine is converted from
// DICOM's LPS to RAS like NIfTI's.
import dicomParser from 'dicom-parser';
import type { DataSet } from 'dicom-parser';
import { inflateBounded } from './gzip.ts';
import { assertValidGeometry, axcodes, type Affine } from './geometry.ts';
import { readLimits } from './read-limits.ts';
import { VOXEL_ARRAY, type DataTypeName, type Volume, type VoxelArray } from './volume.ts';
import { errorMessage } from '../util/errors.ts';

export interface NamedBytes {
  name: string;
  bytes: Uint8Array;
}

export interface DicomVolume extends Volume {
  orientation: string;
}

export interface DicomSeries {
  seriesInstanceUID: string;
  seriesDescription?: string;
  modality?: string;
  /** File names in slice order (or as given when the series could not be built). */
  files: string[];
  volume?: DicomVolume;
  /** Why no volume could be built (the message names the series). */
  error?: string;
}

/** Uncompressed transfer syntaxes we decode; everything else is reported by name. */
const NATIVE: Record<string, string> = {
  '1.2.840.10008.1.2': 'Implicit VR Little Endian',
  '1.2.840.10008.1.2.1': 'Explicit VR Little Endian',
  '1.2.840.10008.1.2.1.99': 'Deflated Explicit VR Little Endian',
  '1.2.840.10008.1.2.2': 'Explicit VR Big Endian',
};
const COMPRESSED: Record<string, string> = {
  '1.2.840.10008.1.2.4.50': 'JPEG Baseline',
  '1.2.840.10008.1.2.4.51': 'JPEG Extended',
  '1.2.840.10008.1.2.4.57': 'JPEG Lossless',
  '1.2.840.10008.1.2.4.70': 'JPEG Lossless SV1',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS Near-Lossless',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 Lossless',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000',
  '1.2.840.10008.1.2.5': 'RLE Lossless',
  '1.2.840.10008.1.2.4.201': 'HTJ2K Lossless',
  '1.2.840.10008.1.2.4.203': 'HTJ2K',
};

/** Two slices count as the same orientation when every direction cosine differs by less than this. */
export const ORIENTATION_TOLERANCE = 1e-4;
/** A gap between neighbouring slices may differ from the median gap by max(0.01 mm, 1 % of it). */
export function gapTolerance(gap: number): number {
  return Math.max(0.01, 0.01 * gap);
}

interface Slice {
  name: string;
  ds: DataSet;
  iop?: number[];
  ipp?: number[];
}

const T = {
  transferSyntax: 'x00020010',
  modality: 'x00080060',
  seriesDescription: 'x0008103e',
  sliceThickness: 'x00180050',
  spacingBetweenSlices: 'x00180088',
  imagerPixelSpacing: 'x00181164',
  seriesUID: 'x0020000e',
  ipp: 'x00200032',
  iop: 'x00200037',
  samplesPerPixel: 'x00280002',
  numberOfFrames: 'x00280008',
  rows: 'x00280010',
  columns: 'x00280011',
  pixelSpacing: 'x00280030',
  bitsAllocated: 'x00280100',
  bitsStored: 'x00280101',
  pixelRepresentation: 'x00280103',
  intercept: 'x00281052',
  slope: 'x00281053',
  pixelData: 'x7fe00010',
};

function numbers(ds: DataSet, tag: string): number[] | undefined {
  const n = ds.numStringValues(tag);
  if (!n) return undefined;
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(ds.floatString(tag, i) ?? NaN);
  return out.every(Number.isFinite) ? out : undefined;
}

function parse(file: NamedBytes, maxFileBytes: number): DataSet {
  // dicom-parser calls `inflater` for the deflated transfer syntax and uses what it returns. The
  // inflated size is unknown up front, so it is capped (one slice; a 1 MB file could give 3 GB).
  const inflater = (arr: Uint8Array, pos: number): Uint8Array => {
    const body = inflateBounded(arr.subarray(pos), file.name, {
      kind: 'deflate',
      maxBytes: Math.max(0, maxFileBytes - pos),
      headerBytes: Infinity,
      sizeFromHeader: (all) => all.length,
    });
    const out = new Uint8Array(pos + body.length);
    out.set(arr.subarray(0, pos));
    out.set(body, pos);
    return out;
  };
  return dicomParser.parseDicom(file.bytes, {
    inflater,
  } as unknown as dicomParser.ParseDicomOptions);
}

/** Groups files into series and builds one Volume per series. Non-DICOM files are listed as skipped. */
export function readDicomFiles(
  files: NamedBytes[],
  o: { maxFileBytes?: number } = {},
): { series: DicomSeries[]; skipped: { name: string; reason: string }[] } {
  const maxFileBytes = o.maxFileBytes ?? readLimits().maxDicomFileBytes;
  const skipped: { name: string; reason: string }[] = [];
  const groups = new Map<string, Slice[]>();
  for (const f of files) {
    let ds: DataSet;
    try {
      ds = parse(f, maxFileBytes);
    } catch (e) {
      skipped.push({ name: f.name, reason: `not a readable DICOM file (${errorMessage(e)})` });
      continue;
    }
    const uid = ds.string(T.seriesUID);
    if (!uid) {
      skipped.push({
        name: f.name,
        reason: 'no SeriesInstanceUID (not an image, e.g. a DICOMDIR)',
      });
      continue;
    }
    const list = groups.get(uid) ?? [];
    list.push({ name: f.name, ds, iop: numbers(ds, T.iop), ipp: numbers(ds, T.ipp) });
    groups.set(uid, list);
  }
  const series: DicomSeries[] = [];
  for (const [uid, slices] of groups) {
    const first = slices[0].ds;
    const s: DicomSeries = {
      seriesInstanceUID: uid,
      seriesDescription: first.string(T.seriesDescription),
      modality: first.string(T.modality),
      files: slices.map((x) => x.name),
    };
    const label = `DICOM series ${uid}${s.seriesDescription ? ` (${s.seriesDescription})` : ''}`;
    try {
      s.volume = buildVolume(slices, label);
      s.files = (s.volume.source!.files as string[]).slice();
    } catch (e) {
      s.error = errorMessage(e);
    }
    series.push(s);
  }
  return { series, skipped };
}

/** Reads files that must hold exactly one series; throws with the series' problem otherwise. */
export function readDicomVolume(files: NamedBytes[]): DicomVolume {
  const { series, skipped } = readDicomFiles(files);
  if (series.length === 0) {
    throw new Error(
      `no DICOM image series found in ${files.length} file(s)${skipped.length ? `: ${skipped[0].name}: ${skipped[0].reason}` : ''}`,
    );
  }
  if (series.length > 1)
    throw new Error(
      `expected one DICOM series, found ${series.length}: ${series.map((s) => s.seriesInstanceUID).join(', ')}`,
    );
  if (series[0].error) throw new Error(series[0].error);
  return series[0].volume!;
}

function buildVolume(slices: Slice[], label: string): DicomVolume {
  const first = slices[0];
  const ts = first.ds.string(T.transferSyntax) ?? '1.2.840.10008.1.2';
  for (const s of slices) {
    const t = s.ds.string(T.transferSyntax) ?? '1.2.840.10008.1.2';
    if (!NATIVE[t])
      throw new Error(
        `${label}: transfer syntax ${t}${COMPRESSED[t] ? ` (${COMPRESSED[t]})` : ''} is compressed or unknown and cannot be decoded here (${s.name}); convert the series to uncompressed DICOM or NIfTI`,
      );
    const px = s.ds.elements[T.pixelData];
    if (!px || px.length === 0) throw new Error(`${label}: ${s.name} has no pixel data`);
    if (px.encapsulatedPixelData)
      throw new Error(`${label}: ${s.name} has encapsulated (compressed) pixel data`);
    const frames = s.ds.intString(T.numberOfFrames) ?? 1;
    if (frames > 1)
      throw new Error(
        `${label}: ${s.name} is a multi-frame image (${frames} frames), which is not supported`,
      );
    const spp = s.ds.uint16(T.samplesPerPixel) ?? 1;
    if (spp !== 1)
      throw new Error(
        `${label}: ${s.name} has ${spp} samples per pixel (colour); only greyscale images are supported`,
      );
    if (!s.iop || s.iop.length !== 6)
      throw new Error(`${label}: ${s.name} has no valid ImageOrientationPatient`);
    if (!s.ipp || s.ipp.length !== 3)
      throw new Error(`${label}: ${s.name} has no valid ImagePositionPatient`);
  }
  const rows = first.ds.uint16(T.rows) ?? 0,
    cols = first.ds.uint16(T.columns) ?? 0;
  if (!(rows > 0 && cols > 0))
    throw new Error(`${label}: ${first.name} has Rows x Columns = ${rows} x ${cols}`);
  for (const s of slices) {
    const r = s.ds.uint16(T.rows),
      c = s.ds.uint16(T.columns);
    if (r !== rows || c !== cols)
      throw new Error(
        `${label}: inconsistent Rows/Columns: ${rows}x${cols} in ${first.name} but ${r}x${c} in ${s.name}`,
      );
    for (let i = 0; i < 6; i++) {
      if (Math.abs(s.iop![i] - first.iop![i]) >= ORIENTATION_TOLERANCE) {
        throw new Error(
          `${label}: mixed orientations: ImageOrientationPatient ${first.iop!.join('\\')} in ${first.name} but ${s.iop!.join('\\')} in ${s.name}`,
        );
      }
    }
  }
  const ps = numbers(first.ds, T.pixelSpacing) ?? numbers(first.ds, T.imagerPixelSpacing);
  if (!ps || ps.length !== 2) throw new Error(`${label}: ${first.name} has no PixelSpacing`);
  const [rowSpacing, colSpacing] = ps; // DICOM: spacing between rows, then between columns
  // A zero or negative spacing would silently mirror the affine (LPS read as RAS): refuse it.
  if (!(rowSpacing > 0 && colSpacing > 0))
    throw new Error(
      `${label}: ${first.name} has PixelSpacing ${ps.join('\\')}; both values must be > 0`,
    );
  const iop = first.iop!;
  const rn = Math.hypot(iop[0], iop[1], iop[2]),
    cn = Math.hypot(iop[3], iop[4], iop[5]);
  const cosine = (iop[0] * iop[3] + iop[1] * iop[4] + iop[2] * iop[5]) / (rn * cn || 1);
  // Direction cosines are unit vectors at right angles; a little rounding in the text is normal.
  if (Math.abs(rn - 1) > 0.01 || Math.abs(cn - 1) > 0.01 || Math.abs(cosine) > 0.01) {
    throw new Error(
      `${label}: ${first.name} has a degenerate ImageOrientationPatient ${iop.join('\\')} (two unit vectors at right angles expected)`,
    );
  }
  const rowDir = unit(iop.slice(0, 3)),
    colDir = unit(iop.slice(3, 6));
  const normal = unit(cross(rowDir, colDir));

  // Order by position along the normal.
  const sorted = slices.map((s) => ({ s, d: dot(normal, s.ipp!) })).sort((a, b) => a.d - b.d);
  let sliceVec: number[];
  let sliceSpacing: number;
  if (sorted.length === 1) {
    // One slice: no positions to measure; use the nominal spacing (SpacingBetweenSlices, else SliceThickness, else 1).
    const t =
      first.ds.floatString(T.spacingBetweenSlices) || first.ds.floatString(T.sliceThickness) || 1;
    sliceSpacing = Math.abs(t);
    sliceVec = normal.map((x) => x * sliceSpacing);
  } else {
    checkGaps(
      sorted.map((x) => ({ d: x.d, name: x.s.name })),
      label,
    );
    const n = sorted.length;
    const a = sorted[0].s.ipp!,
      b = sorted[n - 1].s.ipp!;
    sliceVec = [0, 1, 2].map((i) => (b[i] - a[i]) / (n - 1));
    sliceSpacing = Math.hypot(sliceVec[0], sliceVec[1], sliceVec[2]);
  }
  const origin = sorted[0].s.ipp!;
  // LPS voxel->world: column index (x) moves along the row direction, row index (y) along the column direction.
  const lps = [
    rowDir[0] * colSpacing,
    colDir[0] * rowSpacing,
    sliceVec[0],
    origin[0],
    rowDir[1] * colSpacing,
    colDir[1] * rowSpacing,
    sliceVec[1],
    origin[1],
    rowDir[2] * colSpacing,
    colDir[2] * rowSpacing,
    sliceVec[2],
    origin[2],
  ];
  const affine: Affine = lps.map((x, i) => (i < 8 ? -x : x) + 0).concat([0, 0, 0, 1]);
  assertValidGeometry(label, [colSpacing, rowSpacing, sliceSpacing], affine);

  const { data, datatype, stored } = pixels(
    sorted.map((x) => x.s),
    rows,
    cols,
    ts,
    label,
  );
  return {
    data,
    dims: [cols, rows, sorted.length],
    channels: 1,
    spacing: [colSpacing, rowSpacing, sliceSpacing],
    affine,
    datatype,
    storedDatatype: stored,
    orientation: axcodes(affine),
    source: {
      format: 'dicom',
      seriesInstanceUID: first.ds.string(T.seriesUID),
      files: sorted.map((x) => x.s.name),
    },
  };
}

function checkGaps(pos: { d: number; name: string }[], label: string): void {
  const gaps = pos.slice(1).map((p, i) => p.d - pos[i].d);
  const sortedGaps = gaps.slice().sort((a, b) => a - b);
  const median = sortedGaps[Math.floor(sortedGaps.length / 2)];
  for (let i = 0; i < gaps.length; i++) {
    if (gaps[i] < 1e-3)
      throw new Error(
        `${label}: ${pos[i].name} and ${pos[i + 1].name} are at the same position (${pos[i].d.toFixed(3)} mm along the normal); several acquisitions or echoes in one series are not supported`,
      );
  }
  const tol = gapTolerance(median);
  for (let i = 0; i < gaps.length; i++) {
    const g = gaps[i];
    if (Math.abs(g - median) <= tol) continue;
    const k = Math.round(g / median);
    if (k >= 2 && Math.abs(g - k * median) <= tol * k) {
      throw new Error(
        `${label}: ${k - 1} missing slice(s) between ${pos[i].name} and ${pos[i + 1].name}: gap ${g.toFixed(3)} mm where the slice spacing is ${median.toFixed(3)} mm`,
      );
    }
    throw new Error(
      `${label}: uneven slice spacing: gap ${g.toFixed(3)} mm between ${pos[i].name} and ${pos[i + 1].name}, median ${median.toFixed(3)} mm (tolerance ${tol.toFixed(3)} mm)`,
    );
  }
}

function pixels(
  slices: Slice[],
  rows: number,
  cols: number,
  ts: string,
  label: string,
): { data: VoxelArray; datatype: DataTypeName; stored: DataTypeName } {
  const per = rows * cols;
  const big = ts === '1.2.840.10008.1.2.2';
  const ds0 = slices[0].ds;
  const bits = ds0.uint16(T.bitsAllocated) ?? 16;
  const signed = (ds0.uint16(T.pixelRepresentation) ?? 0) === 1;
  if (![8, 16, 32].includes(bits))
    throw new Error(`${label}: BitsAllocated ${bits} is not supported (8, 16 or 32)`);
  const stored = ((signed ? 'int' : 'uint') + bits) as DataTypeName;
  let scaled = false;
  const scale = slices.map((s) => {
    const slope = s.ds.floatString(T.slope) ?? 1,
      inter = s.ds.floatString(T.intercept) ?? 0;
    if (slope !== 1 || inter !== 0) scaled = true;
    return [slope, inter];
  });
  const Ctor = scaled ? Float32Array : VOXEL_ARRAY[stored];
  const out = new Ctor(per * slices.length);
  slices.forEach((s, z) => {
    if (
      (s.ds.uint16(T.bitsAllocated) ?? 16) !== bits ||
      ((s.ds.uint16(T.pixelRepresentation) ?? 0) === 1) !== signed
    ) {
      throw new Error(
        `${label}: ${s.name} has a different BitsAllocated/PixelRepresentation than ${slices[0].name}`,
      );
    }
    const el = s.ds.elements[T.pixelData];
    const nbytes = per * (bits / 8);
    if (el.length < nbytes || el.dataOffset + nbytes > s.ds.byteArray.length) {
      throw new Error(
        `${label}: ${s.name} has ${el.length} bytes of pixel data, ${rows}x${cols}x${bits} bits need ${nbytes}`,
      );
    }
    const dv = new DataView(
      s.ds.byteArray.buffer,
      s.ds.byteArray.byteOffset + el.dataOffset,
      nbytes,
    );
    const storedBits = s.ds.uint16(T.bitsStored) ?? bits;
    const shift = 32 - storedBits;
    const [slope, inter] = scale[z];
    const base = z * per;
    for (let i = 0; i < per; i++) {
      let v: number;
      if (bits === 8) v = signed ? dv.getInt8(i) : dv.getUint8(i);
      else if (bits === 16) v = signed ? dv.getInt16(2 * i, !big) : dv.getUint16(2 * i, !big);
      else v = signed ? dv.getInt32(4 * i, !big) : dv.getUint32(4 * i, !big);
      if (storedBits < bits)
        v = signed ? (v << shift) >> shift : (v & ((1 << storedBits) - 1)) >>> 0; // ignore bits above BitsStored
      out[base + i] = scaled ? v * slope + inter : v;
    }
  });
  return { data: out, datatype: scaled ? 'float32' : stored, stored };
}

function unit(v: number[]): number[] {
  const n = Math.hypot(v[0], v[1], v[2]) || 1;
  return v.map((x) => x / n);
}
function cross(a: number[], b: number[]): number[] {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}
function dot(a: number[], b: number[]): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
