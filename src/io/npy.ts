// numpy .npy (format 1.0, C order, little-endian) and .npy.gz: the format of the reference arrays and
// a simple way to hand preprocessed arrays to Python for checking.
import { gunzipSync, gzipSync } from 'fflate';

export type NpyArray =
  Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array;

export interface Npy<T extends NpyArray = NpyArray> {
  data: T;
  shape: number[];
  descr: string;
}

type Ctor = {
  new (n: number): NpyArray;
  new (b: ArrayBuffer, off: number, n: number): NpyArray;
  BYTES_PER_ELEMENT: number;
};
const DESCR: Record<string, Ctor> = {
  '<f4': Float32Array,
  '<f8': Float64Array,
  '|i1': Int8Array,
  '|u1': Uint8Array,
  '<i2': Int16Array,
  '<u2': Uint16Array,
  '<i4': Int32Array,
};
// Single-byte types are also written with '<' or '=' by some writers.
const ALIAS: Record<string, string> = {
  '<i1': '|i1',
  '<u1': '|u1',
  '=i1': '|i1',
  '=u1': '|u1',
  '|b1': '|u1',
};

function descrOf(a: NpyArray): string {
  if (a instanceof Float32Array) return '<f4';
  if (a instanceof Float64Array) return '<f8';
  if (a instanceof Int8Array) return '|i1';
  if (a instanceof Uint8Array) return '|u1';
  if (a instanceof Int16Array) return '<i2';
  if (a instanceof Uint16Array) return '<u2';
  if (a instanceof Int32Array) return '<i4';
  throw new Error('npy: unsupported array type');
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

export interface NpyHeader {
  /** The dtype descr as written (e.g. '<f4', '<f2', '<i8'; single-byte aliases normalised). */
  descr: string;
  shape: number[];
  /** Where the data starts in the bytes. */
  dataOffset: number;
}

/** Parses the header of .npy bytes (not gzipped): dtype, shape and where the data starts. */
export function readNpyHeader(bytes: Uint8Array): NpyHeader {
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m))
    throw new Error('npy: not a .npy file (bad magic)');
  const major = bytes[6];
  let hlen: number, hstart: number;
  if (major === 1) {
    hlen = bytes[8] | (bytes[9] << 8);
    hstart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new Error('npy: truncated header');
    hlen = new DataView(bytes.buffer, bytes.byteOffset + 8, 4).getUint32(0, true);
    hstart = 12;
  } else throw new Error(`npy: unsupported format version ${major}.${bytes[7]}`);
  if (hstart + hlen > bytes.length) throw new Error('npy: truncated header');
  const header = new TextDecoder('latin1').decode(bytes.subarray(hstart, hstart + hlen));
  const descrM = /'descr'\s*:\s*'([^']*)'/.exec(header);
  const fortM = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeM = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descrM || !fortM || !shapeM) throw new Error(`npy: malformed header ${header.trim()}`);
  if (fortM[1] === 'True')
    throw new Error('npy: fortran_order arrays are not supported (write with C order)');
  const shape = shapeM[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    throw new Error(`npy: bad shape (${shapeM[1]})`);
  return { descr: ALIAS[descrM[1]] ?? descrM[1], shape, dataOffset: hstart + hlen };
}

/** Parses .npy bytes (gzipped input is detected and inflated). The result never aliases `bytes`. */
export function readNpy(bytes: Uint8Array): Npy {
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  const { descr, shape, dataOffset: off } = readNpyHeader(bytes);
  const ctor = DESCR[descr];
  if (!ctor)
    throw new Error(
      `npy: unsupported dtype descr '${descr}' (supported: ${Object.keys(DESCR).join(', ')})`,
    );
  const n = shape.reduce((a, b) => a * b, 1);
  const nbytes = n * ctor.BYTES_PER_ELEMENT;
  if (bytes.length - off < nbytes)
    throw new Error(`npy: truncated data (${bytes.length - off} of ${nbytes} bytes)`);
  // Copy into a fresh, aligned buffer (the data offset is usually 64- or 128-aligned, but not always).
  const buf = bytes.buffer.slice(
    bytes.byteOffset + off,
    bytes.byteOffset + off + nbytes,
  ) as ArrayBuffer;
  return { data: new ctor(buf, 0, n), shape, descr };
}

/** Serialises to .npy 1.0 (C order, little-endian); `gzip` wraps it as .npy.gz. */
export function writeNpy(
  data: NpyArray,
  shape: readonly number[],
  opts: { gzip?: boolean } = {},
): Uint8Array {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length)
    throw new Error(`npy: shape (${shape.join(', ')}) does not match ${data.length} elements`);
  const out = writeNpyBytes(
    descrOf(data),
    shape,
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  );
  return opts.gzip ? gzipSync(out, { level: 6, mtime: 0 }) : out;
}

/**
 * .npy 1.0 of little-endian element bytes under any descr (e.g. '<f2' float16 bits, '<i8' int64),
 * for dtypes that have no typed array here. The caller vouches that `body` matches descr and shape.
 */
export function writeNpyBytes(
  descr: string,
  shape: readonly number[],
  body: Uint8Array,
): Uint8Array {
  if (!/^[<|][a-z]\d+$/.test(descr)) throw new Error(`npy: bad descr '${descr}'`);
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64 (as numpy does).
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  if (header.length > 0xffff) throw new Error('npy: header too long for format 1.0');
  const out = new Uint8Array(total + body.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  out[8] = header.length & 0xff;
  out[9] = header.length >> 8;
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(body, total);
  return out;
}
