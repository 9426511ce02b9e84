// Plain zip archives without holding them whole: a writer of STORED entries whose data starts at
// 64-byte aligned offsets (what `torch.save` writes, so storages can be memory-mapped), and a
// central-directory reader that reads one entry at a time through an async random-access callback
// (a file on disk by ranges in Node, a picked/dropped Blob by slices in the browser), so only the
// directory and the entry being read are in memory; and its synchronous twin for bytes already in
// memory (a .pth checkpoint, whose tensors are views of it).
//
// Written by hand: fflate (the zip library used elsewhere here) builds a zip only as one buffer
// from whole inputs and cannot pad the local header's extra field to align entry data, and its
// unzip inflates or copies every entry it keeps. Both sides here are small and bounded: the
// reader trusts no size until it has checked it against the archive's length.
import { inflateSync } from 'fflate';
import { crc32 } from '../util/crc32.ts';

export class ZipError extends Error {
  override name = 'ZipError';
}

/** One file to write: its name and its bytes in parts (never concatenated here). */
export interface ZipWriteEntry {
  name: string;
  parts: readonly Uint8Array[];
}

const LOCAL = 0x04034b50;
const CENTRAL = 0x02014b50;
const END = 0x06054b50;
const END64 = 0x06064b50;
const END64_LOCATOR = 0x07064b50;
const DOS_DATE_1980 = 0x21; // 1980-01-01: a valid DOS date (0 is not)
const MAX32 = 0xffffffff;

/**
 * A zip of STORED entries as parts to write or Blob in order. `align` pads each local header's
 * extra field (id "FB", as torch does) so that the entry's data starts at a multiple of `align`.
 * Refuses what needs ZIP64 (an archive of 4 GiB or more, or 65535 entries or more).
 */
export function storedZip(entries: readonly ZipWriteEntry[], align = 64): Uint8Array[] {
  if (entries.length >= 0xffff) throw new ZipError(`${entries.length} entries need ZIP64`);
  const enc = new TextEncoder();
  const out: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = enc.encode(e.name);
    const utf8 = /[^\x20-\x7e]/.test(e.name) ? 0x0800 : 0;
    let size = 0;
    let crc = 0;
    for (const p of e.parts) {
      size += p.byteLength;
      crc = crc32(p, crc);
    }
    const base = offset + 30 + name.length + 4;
    const pad = align > 1 ? (align - (base % align)) % align : 0;
    const extraLen = align > 1 ? 4 + pad : 0;
    const h = new Uint8Array(30 + name.length + extraLen);
    const v = new DataView(h.buffer);
    v.setUint32(0, LOCAL, true);
    v.setUint16(4, 20, true); // version needed: 2.0
    v.setUint16(6, utf8, true);
    v.setUint16(8, 0, true); // STORED
    v.setUint16(10, 0, true);
    v.setUint16(12, DOS_DATE_1980, true);
    v.setUint32(14, crc, true);
    v.setUint32(18, size, true);
    v.setUint32(22, size, true);
    v.setUint16(26, name.length, true);
    v.setUint16(28, extraLen, true);
    h.set(name, 30);
    if (extraLen) {
      v.setUint16(30 + name.length, 0x4246, true); // "FB"
      v.setUint16(32 + name.length, pad, true);
      h.fill(0x5a, 34 + name.length); // torch pads with 'Z'
    }
    const c = new Uint8Array(46 + name.length);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, CENTRAL, true);
    cv.setUint16(4, 20, true); // made by 2.0
    cv.setUint16(6, 20, true);
    cv.setUint16(8, utf8, true);
    cv.setUint16(10, 0, true);
    cv.setUint16(12, 0, true);
    cv.setUint16(14, DOS_DATE_1980, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, size, true);
    cv.setUint32(24, size, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    c.set(name, 46);
    central.push(c);
    out.push(h, ...e.parts);
    offset += h.length + size;
    if (offset >= MAX32) throw new ZipError('archive reaches 4 GiB: ZIP64 is not written here');
  }
  let cdSize = 0;
  for (const c of central) cdSize += c.length;
  if (offset + cdSize >= MAX32)
    throw new ZipError('archive reaches 4 GiB: ZIP64 is not written here');
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, END, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  out.push(...central, end);
  return out;
}

/** Total bytes of parts. */
export function partsLength(parts: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of parts) n += p.byteLength;
  return n;
}

/** Parts joined into one buffer (tests, small archives). */
export function concatParts(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(partsLength(parts));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

/** One entry of a zip's central directory. */
export interface ZipEntry {
  name: string;
  /** 0 = STORED, 8 = DEFLATE. */
  method: number;
  compressedSize: number;
  size: number;
  crc: number;
  localHeaderOffset: number;
}

/** Reads `length` bytes at `offset`: resolves to exactly that many bytes, or rejects. */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

export interface ZipReadOptions {
  /** Refuse an entry that declares more bytes than this (before anything is read or allocated). */
  maxBytes?: number;
  /** Check the CRC-32 of what was read (default true). */
  checkCrc?: boolean;
}

/** A zip opened by its central directory; each entry is read by range when asked for. */
export interface ZipReader {
  entries: ZipEntry[];
  /** The entry's bytes: its data range for STORED, inflated into its declared size for DEFLATE. */
  read(e: ZipEntry, opts?: ZipReadOptions): Promise<Uint8Array>;
}

/** A zip held in memory: entries read synchronously (STORED ones as views of the bytes). */
export interface ZipBytesReader {
  entries: ZipEntry[];
  read(e: ZipEntry, opts?: ZipReadOptions): Uint8Array;
}

/**
 * Opens a zip of `size` bytes through `readAt`. Reads only its end records (at most the last
 * 64 KiB + 22 bytes) and its central directory; `read` then reads one entry's local header
 * (30 bytes) and its data range, nothing else.
 */
export async function openZip(size: number, readAt: ReadAt, what = 'zip'): Promise<ZipReader> {
  const get = async (o: number, n: number) => {
    const b = await readAt(o, n);
    if (b.byteLength !== n)
      throw new ZipError(
        `${what}: read ${b.byteLength} bytes at ${o}, expected ${n} (file changed?)`,
      );
    return b;
  };
  const [tailAt, tailLen] = tailRange(size, what);
  let dir = endRecord(await get(tailAt, tailLen), size, what);
  if ('zip64At' in dir) dir = zip64EndRecord(await get(dir.zip64At, 56), what);
  checkDirectory(dir, size, what);
  const entries = centralDirectory(await get(dir.cdOffset, dir.cdSize), dir.count, size, what);
  return {
    entries,
    async read(e, opts = {}) {
      checkDeclared(e, opts, what);
      const start = dataStart(e, await get(e.localHeaderOffset, 30), size, what);
      return entryData(e, await get(start, e.compressedSize), opts, what);
    },
  };
}

/** A zip held in memory (STORED entries come back as views, no copy). */
export function openZipBytes(bytes: Uint8Array, what = 'zip'): ZipBytesReader {
  const size = bytes.length;
  const get = (o: number, n: number) => {
    if (o < 0 || o + n > size) throw new ZipError(`${what}: read past the end`);
    return bytes.subarray(o, o + n);
  };
  const [tailAt, tailLen] = tailRange(size, what);
  let dir = endRecord(get(tailAt, tailLen), size, what);
  if ('zip64At' in dir) dir = zip64EndRecord(get(dir.zip64At, 56), what);
  checkDirectory(dir, size, what);
  const entries = centralDirectory(get(dir.cdOffset, dir.cdSize), dir.count, size, what);
  return {
    entries,
    read(e, opts = {}) {
      checkDeclared(e, opts, what);
      const start = dataStart(e, get(e.localHeaderOffset, 30), size, what);
      return entryData(e, get(start, e.compressedSize), opts, what);
    },
  };
}

// The steps both readers share: each checks what it was given and says what to read next, so
// the in-memory and the by-range reader refuse exactly the same archives.

interface Directory {
  count: number;
  cdSize: number;
  cdOffset: number;
}

/** Where the end record can be: the last 22 bytes plus a comment of up to 65535. */
function tailRange(size: number, what: string): [number, number] {
  if (size < 22) throw new ZipError(`${what}: too short to be a zip`);
  const tailLen = Math.min(size, 22 + 0xffff);
  return [size - tailLen, tailLen];
}

/** The end of central directory record in the tail, or where its ZIP64 record is. */
function endRecord(tail: Uint8Array, size: number, what: string): Directory | { zip64At: number } {
  const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === END) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ZipError(`${what}: no end of central directory (not a zip, or cut off)`);
  const count = tv.getUint16(eocd + 10, true);
  const cdSize = tv.getUint32(eocd + 12, true);
  const cdOffset = tv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === MAX32 || cdOffset === MAX32) {
    // ZIP64: the locator sits right before the end record and points at the ZIP64 end record.
    const loc = eocd - 20;
    if (loc < 0 || tv.getUint32(loc, true) !== END64_LOCATOR)
      throw new ZipError(`${what}: ZIP64 end record locator missing`);
    const at = u64(tv, loc + 8, what);
    if (at + 56 > size) throw new ZipError(`${what}: ZIP64 end record outside the file`);
    return { zip64At: at };
  }
  return { count, cdSize, cdOffset };
}

function zip64EndRecord(r: Uint8Array, what: string): Directory {
  const rv = new DataView(r.buffer, r.byteOffset, 56);
  if (rv.getUint32(0, true) !== END64) throw new ZipError(`${what}: ZIP64 end record malformed`);
  return { count: u64(rv, 32, what), cdSize: u64(rv, 40, what), cdOffset: u64(rv, 48, what) };
}

function checkDirectory({ count, cdSize, cdOffset }: Directory, size: number, what: string) {
  if (cdOffset + cdSize > size || count * 46 > cdSize)
    throw new ZipError(`${what}: central directory lies outside the file`);
  // Each entry is 46 bytes plus a name, an extra field and a comment of at most 65535 bytes each
  // (and a digital signature record may follow): a larger directory is not one, and reading it
  // would read (and hold) much of the file.
  if (cdSize > count * (46 + 3 * 0xffff) + 6 + 0xffff)
    throw new ZipError(`${what}: central directory declares more bytes than its entries can hold`);
}

function centralDirectory(cd: Uint8Array, count: number, size: number, what: string): ZipEntry[] {
  const cv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const dec = new TextDecoder('utf-8', { fatal: true });
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cv.getUint32(p, true) !== CENTRAL)
      throw new ZipError(`${what}: central directory entry ${i} malformed`);
    const flags = cv.getUint16(p + 8, true);
    const method = cv.getUint16(p + 10, true);
    const crc = cv.getUint32(p + 16, true);
    let compressedSize = cv.getUint32(p + 20, true);
    let size_ = cv.getUint32(p + 24, true);
    const nameLen = cv.getUint16(p + 28, true);
    const extraLen = cv.getUint16(p + 30, true);
    const commentLen = cv.getUint16(p + 32, true);
    let localHeaderOffset = cv.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length)
      throw new ZipError(`${what}: central directory entry ${i} runs past the directory`);
    let name: string;
    try {
      name = dec.decode(cd.subarray(p + 46, p + 46 + nameLen));
    } catch {
      throw new ZipError(`${what}: entry ${i} has a name that is not UTF-8`);
    }
    // ZIP64 extra field: the 64-bit values of the fields that read 0xffffffff, in order.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = cv.getUint16(x, true);
      const len = cv.getUint16(x + 2, true);
      if (id === 1) {
        let q = x + 4;
        const next = () => {
          if (q + 8 > x + 4 + len) throw new ZipError(`${what}: ${name}: ZIP64 field too short`);
          const v = u64(cv, q, what);
          q += 8;
          return v;
        };
        if (size_ === MAX32) size_ = next();
        if (compressedSize === MAX32) compressedSize = next();
        if (localHeaderOffset === MAX32) localHeaderOffset = next();
      }
      x += 4 + len;
    }
    if (flags & 1) throw new ZipError(`${what}: ${name} is encrypted`);
    if (localHeaderOffset + 30 + compressedSize > size)
      throw new ZipError(`${what}: ${name} lies outside the file`);
    entries.push({ name, method, compressedSize, size: size_, crc, localHeaderOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** What the directory says about an entry, checked before any of its bytes are read. */
function checkDeclared(e: ZipEntry, opts: ZipReadOptions, what: string) {
  const max = opts.maxBytes ?? Infinity;
  if (e.size > max)
    throw new ZipError(`${what}: ${e.name} declares ${e.size} bytes, more than ${max}`);
  if (e.method === 0) {
    if (e.compressedSize !== e.size)
      throw new ZipError(`${what}: ${e.name}: stored entry with two different sizes`);
  } else if (e.method === 8) {
    // Deflate never needs much more than the data itself (stored blocks add 5 bytes per block,
    // fixed-Huffman literals 9 bits a byte): a much larger compressed size is no real entry, and
    // its compressed range is read whole, so it stays bounded by the declared (limited) size.
    if (e.compressedSize > e.size + Math.ceil(e.size / 4) + 1024)
      throw new ZipError(
        `${what}: ${e.name}: ${e.compressedSize} compressed bytes for ${e.size} bytes of data`,
      );
  } else {
    throw new ZipError(`${what}: ${e.name}: compression method ${e.method} is not supported`);
  }
}

/** Where the entry's data starts: after the LOCAL header, whose extra field may differ. */
function dataStart(e: ZipEntry, h: Uint8Array, size: number, what: string): number {
  const hv = new DataView(h.buffer, h.byteOffset, 30);
  if (hv.getUint32(0, true) !== LOCAL)
    throw new ZipError(`${what}: ${e.name}: local header malformed`);
  const start = e.localHeaderOffset + 30 + hv.getUint16(26, true) + hv.getUint16(28, true);
  if (start + e.compressedSize > size)
    throw new ZipError(`${what}: ${e.name}: data lies outside the file`);
  return start;
}

/** The entry's bytes from its raw data range (checked by checkDeclared), CRC-checked. */
function entryData(e: ZipEntry, raw: Uint8Array, opts: ZipReadOptions, what: string): Uint8Array {
  let data: Uint8Array;
  if (e.method === 0) {
    data = raw;
  } else {
    // Inflate into a buffer of the declared size: a bomb cannot grow past it.
    const out = new Uint8Array(e.size);
    let got: Uint8Array;
    try {
      got = inflateSync(raw, { out });
    } catch (err) {
      throw new ZipError(`${what}: ${e.name}: cannot inflate (${(err as Error).message})`);
    }
    if (got.length !== e.size || got.buffer !== out.buffer)
      throw new ZipError(`${what}: ${e.name}: inflates to a different size than declared`);
    data = out;
  }
  if (opts.checkCrc !== false && crc32(data) !== e.crc)
    throw new ZipError(`${what}: ${e.name}: CRC-32 mismatch (damaged file)`);
  return data;
}

function u64(v: DataView, at: number, what: string): number {
  const n = Number(v.getBigUint64(at, true));
  if (!Number.isSafeInteger(n)) throw new ZipError(`${what}: 64-bit size out of range`);
  return n;
}
