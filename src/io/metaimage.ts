// MetaImage reader (.mha with the data in the same file, .mhd with a .raw/.zraw data file) -> Volume.
// Written here for the reason given in nrrd.ts (no maintained small npm reader; itk-wasm is heavy).
// Geometry as ITK's MetaImageIO reads it: the world is LPS whatever AnatomicalOrientation says
// (ITK ignores that field on reading; it only describes the axes), TransformMatrix lists the
// direction of axis 0, then axis 1, then axis 2, and Offset is the centre of voxel 0.
import { inflateBounded } from './gzip.ts';
import { assertValidGeometry, axcodes } from './geometry.ts';
import type { VolumeReadOptions } from './nrrd.ts';
import { readLimits } from './read-limits.ts';
import { assertFiniteVoxels, decodeVoxels, deinterleave, frameAffine } from './voxels.ts';
import { VOXEL_ARRAY, type DataTypeName, type Volume } from './volume.ts';

const TYPES: Record<string, DataTypeName> = {
  MET_CHAR: 'int8',
  MET_UCHAR: 'uint8',
  MET_SHORT: 'int16',
  MET_USHORT: 'uint16',
  MET_INT: 'int32',
  MET_UINT: 'uint32',
  MET_FLOAT: 'float32',
  MET_DOUBLE: 'float64',
};

/** Field names MetaIO accepts for the same thing. */
const ALIASES: Record<string, string> = {
  position: 'offset',
  origin: 'offset',
  rotation: 'transformmatrix',
  orientation: 'transformmatrix',
  binarydatabyteordermsb: 'elementbyteordermsb',
};

const MAX_HEADER = 1 << 20;

/** First bytes of a MetaImage header: `Key = value` lines, usually starting with ObjectType or NDims. */
export function isMetaImage(b: Uint8Array): boolean {
  const head = new TextDecoder('latin1').decode(b.subarray(0, 64));
  return /^\s*(ObjectType|NDims|Comment|ObjectSubType)\s*=/.test(head);
}

export async function readMetaImage(
  bytes: Uint8Array,
  name = 'MetaImage',
  o: VolumeReadOptions = {},
): Promise<Volume & { orientation: string }> {
  const maxBytes = o.maxBytes ?? readLimits().maxVolumeBytes;
  // Header lines up to and including ElementDataFile (always the last field).
  const f = new Map<string, string>();
  const spelled = new Map<string, string>(); // the key as written, for messages
  let at = 0;
  for (;;) {
    if (at >= bytes.length || at > MAX_HEADER)
      throw new Error(`${name}: MetaImage header has no ElementDataFile line`);
    let nl = bytes.indexOf(0x0a, at);
    if (nl < 0) nl = bytes.length;
    const line = new TextDecoder('latin1').decode(bytes.subarray(at, nl)).replace(/\r$/, '');
    at = nl + 1;
    if (line.trim() === '') continue;
    const eq = line.indexOf('=');
    if (eq < 0)
      throw new Error(
        `${name}: malformed MetaImage header line ${JSON.stringify(line.slice(0, 80))}`,
      );
    const key = line.slice(0, eq).trim().toLowerCase();
    f.set(ALIASES[key] ?? key, line.slice(eq + 1).trim());
    spelled.set(ALIASES[key] ?? key, line.slice(0, eq).trim());
    if (key === 'elementdatafile') break;
  }
  const nums = (k: string, n: number, dflt?: number[]) => {
    const v = f.get(k);
    if (v === undefined) {
      if (dflt) return dflt;
      throw new Error(`${name}: MetaImage header has no ${spelled.get(k) ?? k} field`);
    }
    const out = v.split(/\s+/).map(Number);
    if (out.length !== n || !out.every(Number.isFinite))
      throw new Error(
        `${name}: MetaImage ${spelled.get(k) ?? k} "${v}" must be ${n} finite numbers`,
      );
    return out;
  };
  const bool = (k: string) => /^true$/i.test(f.get(k) ?? 'false');
  if (f.has('objecttype') && f.get('objecttype')!.toLowerCase() !== 'image')
    throw new Error(`${name}: MetaImage ObjectType ${f.get('objecttype')} is not Image`);
  const ndims = Number(f.get('ndims'));
  if (ndims !== 3)
    throw new Error(`${name}: MetaImage NDims = ${f.get('ndims')}; only 3-D images are supported`);
  const dims = nums('dimsize', 3) as [number, number, number];
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 1))
    throw new Error(`${name}: MetaImage DimSize ${dims.join(' ')} must be positive integers`);
  const type = TYPES[(f.get('elementtype') ?? '').toUpperCase()];
  if (!type)
    throw new Error(
      `${name}: unsupported MetaImage ElementType "${f.get('elementtype')}" (supported: ${Object.keys(TYPES).join(', ')})`,
    );
  const ctor = VOXEL_ARRAY[type];
  const channels = Number(f.get('elementnumberofchannels') ?? 1);
  if (!(Number.isSafeInteger(channels) && channels >= 1))
    throw new Error(`${name}: invalid ElementNumberOfChannels ${f.get('elementnumberofchannels')}`);

  const spacing = nums('elementspacing', 3, [1, 1, 1]) as [number, number, number];
  const tm = nums('transformmatrix', 9, [1, 0, 0, 0, 1, 0, 0, 0, 1]);
  const origin = nums('offset', 3, [0, 0, 0]);
  // Spacing is checked as given (ITK refuses a negative ElementSpacing too), then scales each axis.
  const axes = [0, 1, 2].map((i) => tm.slice(3 * i, 3 * i + 3).map((x) => x * spacing[i]));
  const affine = frameAffine(axes, origin, 'LPS');
  assertValidGeometry(name, spacing, affine);

  const n = dims[0] * dims[1] * dims[2] * channels;
  const nbytes = n * ctor.BYTES_PER_ELEMENT;
  const dataFile = f.get('elementdatafile')!;
  let file = bytes,
    start = at,
    fileName = name;
  if (dataFile.toUpperCase() !== 'LOCAL') {
    if (/^LIST\b/i.test(dataFile) || /%/.test(dataFile) || /\s/.test(dataFile))
      throw new Error(
        `${name}: MetaImage data split over several files (ElementDataFile = ${dataFile}) is not supported`,
      );
    if (!o.readRelative)
      throw new Error(
        `${name}: MetaImage header names data file ${dataFile}; give it together with the header (pick or drop both files)`,
      );
    file = await o.readRelative(dataFile);
    fileName = dataFile;
    const hs = Number(f.get('headersize') ?? 0);
    if (!(Number.isSafeInteger(hs) && hs >= -1))
      throw new Error(`${name}: invalid HeaderSize ${f.get('headersize')}`);
    start = hs === -1 ? file.length - nbytes : hs;
  }
  let raw: Uint8Array, offset: number;
  if (bool('compresseddata')) {
    raw = inflateBounded(file.subarray(Math.max(start, 0)), fileName, {
      kind: 'zlib',
      maxBytes,
      expectedBytes: nbytes,
    });
    offset = 0;
  } else {
    raw = file;
    offset = start;
  }
  if (offset < 0 || raw.length - offset < nbytes) {
    throw new Error(
      `${fileName}: DimSize ${dims.join('x')}${channels > 1 ? `x${channels}` : ''} of ${type} needs ${nbytes} bytes of MetaImage data but there are ${Math.max(0, raw.length - Math.max(offset, 0))}`,
    );
  }
  let data = decodeVoxels(raw, offset, n, ctor, !bool('elementbyteordermsb'));
  data = deinterleave(data, channels);
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
    source: { format: 'metaimage' },
  };
}
