// NRRD reader (.nrrd with attached data, .nhdr with a detached data file) -> Volume.
// Written here rather than taken from npm: nrrd-js (one release, untyped) reads neither gzip nor
// detached data, and itk-wasm's image-io loads tens of MB of WebAssembly per format for what is a
// text header plus a raw or gzip block. Reference: https://teem.sourceforge.net/nrrd/format.html
import { inflateBounded } from './gzip.ts';
import { assertValidGeometry, axcodes } from './geometry.ts';
import { readLimits } from './read-limits.ts';
import {
  assertFiniteVoxels,
  decodeVoxels,
  deinterleave,
  frameAffine,
  FRAME_TO_RAS,
} from './voxels.ts';
import { VOXEL_ARRAY, type DataTypeName, type Volume } from './volume.ts';

export interface VolumeReadOptions {
  /** Reads a file a header names (relative to the header's folder); absent for lone bytes. */
  readRelative?: (path: string) => Promise<Uint8Array>;
  maxBytes?: number;
}

const TYPES: Record<string, DataTypeName> = {};
for (const [t, names] of Object.entries({
  int8: ['signed char', 'int8', 'int8_t'],
  uint8: ['uchar', 'unsigned char', 'uint8', 'uint8_t'],
  int16: ['short', 'short int', 'signed short', 'signed short int', 'int16', 'int16_t'],
  uint16: ['ushort', 'unsigned short', 'unsigned short int', 'uint16', 'uint16_t'],
  int32: ['int', 'signed int', 'int32', 'int32_t'],
  uint32: ['uint', 'unsigned int', 'uint32', 'uint32_t'],
  float32: ['float'],
  float64: ['double'],
}))
  for (const n of names) TYPES[n] = t as DataTypeName;

/** NRRD `space` values -> the patient frame of its coordinates. */
const SPACES: Record<string, keyof typeof FRAME_TO_RAS> = {
  'right-anterior-superior': 'RAS',
  ras: 'RAS',
  'left-anterior-superior': 'LAS',
  las: 'LAS',
  'left-posterior-superior': 'LPS',
  lps: 'LPS',
  // No anatomical frame: ITK (and so Slicer and nnU-Net's SimpleITK reader) reads these as LPS.
  'scanner-xyz': 'LPS',
  '3d-right-handed': 'LPS',
};

/** First bytes of an NRRD file. */
export function isNrrd(b: Uint8Array): boolean {
  return (
    b.length >= 8 &&
    String.fromCharCode(...b.subarray(0, 7)) === 'NRRD000' &&
    b[7] >= 0x31 &&
    b[7] <= 0x39
  );
}

const MAX_HEADER = 1 << 20;

function vector(s: string, what: string): number[] {
  const m = /^\(([^)]*)\)$/.exec(s.trim());
  if (!m) throw new Error(`${what}: expected a vector like (1,0,0), got ${JSON.stringify(s)}`);
  return m[1].split(',').map((x) => Number(x.trim()));
}

export async function readNrrd(
  bytes: Uint8Array,
  name = 'NRRD',
  o: VolumeReadOptions = {},
): Promise<Volume & { orientation: string }> {
  const maxBytes = o.maxBytes ?? readLimits().maxVolumeBytes;
  if (!isNrrd(bytes)) throw new Error(`${name}: not an NRRD file (no NRRD000x magic)`);
  // The header is text up to the first empty line (or the end of a detached header).
  let end = -1,
    dataStart = bytes.length;
  for (let i = 0; i < Math.min(bytes.length, MAX_HEADER); i++) {
    if (bytes[i] !== 0x0a) continue;
    const j = bytes[i + 1] === 0x0d ? i + 2 : i + 1;
    if (bytes[j] === 0x0a || j >= bytes.length) {
      end = i;
      dataStart = Math.min(j + 1, bytes.length);
      break;
    }
  }
  if (end < 0) {
    if (bytes.length > MAX_HEADER)
      throw new Error(`${name}: no end of the NRRD header within ${MAX_HEADER} bytes`);
    end = dataStart = bytes.length;
  }
  const lines = new TextDecoder('latin1').decode(bytes.subarray(0, end)).split(/\r?\n/).slice(1);
  const f = new Map<string, string>();
  for (const line of lines) {
    if (line.startsWith('#') || line.trim() === '' || /^[^:]*:=/.test(line)) continue; // comments, key/values
    const i = line.indexOf(': ');
    if (i < 0)
      throw new Error(`${name}: malformed NRRD header line ${JSON.stringify(line.slice(0, 80))}`);
    f.set(
      line
        .slice(0, i)
        .trim()
        .toLowerCase()
        .replace(
          /^(datafile|lineskip|byteskip|centerings)$/,
          (k) =>
            ({
              datafile: 'data file',
              lineskip: 'line skip',
              byteskip: 'byte skip',
              centerings: 'centers',
            })[k]!,
        ),
      line.slice(i + 2).trim(),
    );
  }
  const need = (k: string) => {
    const v = f.get(k);
    if (v === undefined) throw new Error(`${name}: NRRD header has no "${k}" field`);
    return v;
  };
  const type = TYPES[need('type').toLowerCase()];
  if (!type)
    throw new Error(
      `${name}: unsupported NRRD type "${f.get('type')}" (supported: int8, uint8, int16, uint16, int32, uint32, float, double)`,
    );
  const ctor = VOXEL_ARRAY[type];
  const dimension = Number(need('dimension'));
  const sizes = need('sizes').split(/\s+/).map(Number);
  if (sizes.length !== dimension || !sizes.every((s) => Number.isSafeInteger(s) && s >= 1))
    throw new Error(
      `${name}: NRRD sizes "${f.get('sizes')}" must be ${dimension} positive integers`,
    );
  const encoding = need('encoding').toLowerCase();
  if (!['raw', 'gzip', 'gz'].includes(encoding))
    throw new Error(
      `${name}: NRRD encoding "${encoding}" is not supported (raw or gzip; re-save the file with one of them)`,
    );
  const endian = f.get('endian')?.toLowerCase();
  if (ctor.BYTES_PER_ELEMENT > 1 && endian !== 'little' && endian !== 'big')
    throw new Error(`${name}: NRRD header needs "endian: little" or "big" for ${type} data`);

  // Which axes are spatial: 'none' in space directions (or a non-spatial kind) marks a channel axis.
  const dirsField = f.get('space directions')?.split(/\s+(?=\(|none)/);
  if (dirsField && dirsField.length !== dimension)
    throw new Error(
      `${name}: NRRD space directions has ${dirsField.length} entries for ${dimension} axes`,
    );
  const kinds = f.get('kinds')?.toLowerCase().split(/\s+/);
  const isChannelAxis = (k: number) =>
    dirsField
      ? dirsField[k] === 'none'
      : !!kinds && !['domain', 'space', 'time', '???'].includes(kinds[k]);
  const channelAxes = sizes.map((_, k) => k).filter(isChannelAxis);
  if (
    dimension - channelAxes.length !== 3 ||
    channelAxes.length > 1 ||
    (channelAxes.length === 1 && channelAxes[0] !== 0 && channelAxes[0] !== 3)
  ) {
    throw new Error(
      `${name}: NRRD with ${dimension} axes (sizes ${sizes.join(' ')}) is not a 3-D image (at most one channel axis, first or last)`,
    );
  }
  const chAxis = channelAxes[0];
  const spatial = sizes.map((_, k) => k).filter((k) => k !== chAxis);
  const dims = spatial.map((k) => sizes[k]) as [number, number, number];
  const channels = chAxis === undefined ? 1 : sizes[chAxis];

  const spaceName = f.get('space')?.toLowerCase();
  const frame = spaceName === undefined ? 'LPS' : SPACES[spaceName];
  if (!frame)
    throw new Error(
      `${name}: NRRD space "${f.get('space')}" is not a 3-D patient space (supported: ${Object.keys(
        SPACES,
      )
        .filter((k) => k.includes('-'))
        .join(', ')})`,
    );
  if (f.has('space dimension') && f.get('space dimension') !== '3')
    throw new Error(`${name}: NRRD space dimension ${f.get('space dimension')} is not 3`);
  let axes: number[][];
  if (dirsField) {
    axes = spatial.map((k) => vector(dirsField[k], `${name}: space directions`));
    if (axes.some((v) => v.length !== 3))
      throw new Error(`${name}: NRRD space directions must be 3-vectors`);
  } else {
    // No space directions: spacings (NaN/absent = 1) along the frame's axes, as ITK reads it.
    const sp = f
      .get('spacings')
      ?.split(/\s+/)
      .map((x) => (x.toLowerCase() === 'nan' ? 1 : Number(x)));
    axes = spatial.map((k, i) => [0, 1, 2].map((r) => (r === i ? (sp ? sp[k] : 1) : 0)));
  }
  const origin = f.has('space origin')
    ? vector(f.get('space origin')!, `${name}: space origin`)
    : [0, 0, 0];
  if (origin.length !== 3) throw new Error(`${name}: NRRD space origin must be a 3-vector`);
  const spacing = axes.map((v) => Math.hypot(v[0], v[1], v[2])) as [number, number, number];
  const affine = frameAffine(axes, origin, frame);
  assertValidGeometry(name, spacing, affine);

  // The data: after the header, or in the detached file, past `line skip` lines and `byte skip` bytes.
  const n = dims[0] * dims[1] * dims[2] * channels;
  const nbytes = n * ctor.BYTES_PER_ELEMENT;
  const lineSkip = Number(f.get('line skip') ?? 0),
    byteSkip = Number(f.get('byte skip') ?? 0);
  if (
    !(Number.isSafeInteger(lineSkip) && lineSkip >= 0) ||
    !(Number.isSafeInteger(byteSkip) && byteSkip >= -1)
  )
    throw new Error(`${name}: invalid NRRD line skip/byte skip`);
  if (byteSkip === -1 && encoding !== 'raw')
    throw new Error(`${name}: NRRD byte skip -1 is only valid with raw encoding`);
  let file = bytes,
    at = dataStart,
    fileName = name;
  const dataFile = f.get('data file');
  if (dataFile !== undefined) {
    if (/^LIST\b/.test(dataFile) || /%/.test(dataFile) || /\s/.test(dataFile))
      throw new Error(
        `${name}: NRRD data split over several files ("data file: ${dataFile}") is not supported`,
      );
    if (!o.readRelative)
      throw new Error(
        `${name}: detached NRRD header; its data file ${dataFile} must be given with it (pick or drop both files)`,
      );
    file = await o.readRelative(dataFile);
    at = 0;
    fileName = dataFile;
  } else if (end === bytes.length)
    throw new Error(`${name}: NRRD header has neither data after it nor a "data file" field`);
  for (let l = 0; l < lineSkip; l++) {
    const nl = file.indexOf(0x0a, at);
    if (nl < 0) throw new Error(`${fileName}: fewer lines than NRRD line skip ${lineSkip}`);
    at = nl + 1;
  }
  let raw: Uint8Array;
  let offset: number;
  if (encoding === 'raw') {
    offset = byteSkip === -1 ? file.length - nbytes : at + byteSkip;
    raw = file;
  } else {
    raw = inflateBounded(file.subarray(at), fileName, {
      kind: 'gzip',
      maxBytes,
      expectedBytes: byteSkip + nbytes,
    });
    offset = byteSkip;
  }
  if (offset < 0 || raw.length - offset < nbytes) {
    throw new Error(
      `${fileName}: sizes ${sizes.join('x')} of ${type} need ${nbytes} bytes of NRRD data but the file has ${Math.max(0, raw.length - Math.max(offset, 0))}`,
    );
  }
  let data = decodeVoxels(raw, offset, n, ctor, endian !== 'big');
  if (chAxis === 0) data = deinterleave(data, channels);
  assertFiniteVoxels(data, name);
  return {
    data,
    dims,
    channels,
    spacing,
    affine,
    datatype: type,
    storedDatatype: type,
    orientation: axcodes(affine),
    source: { format: 'nrrd' },
  };
}
