// Plain zip archives without holding them whole: a writer of STORED entries whose data starts at
// 64-byte aligned offsets (what `torch.save` writes, so storages can be memory-mapped), and a
// central-directory reader that reads one entry at a time through a random-access callback
// (bytes in memory, or a file read by ranges in Node).
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

/** Reads `length` bytes at `offset` (must return exactly that many, or throw). */
export type ReadAt = (offset: number, length: number) => Uint8Array;

/** A zip opened by its central directory; entries are read one at a time. */
export interface ZipReader {
  entries: ZipEntry[];
  /** The entry's bytes: a view for STORED data in memory, inflated for DEFLATE. */
  read(e: ZipEntry, opts?: { maxBytes?: number; checkCrc?: boolean }): Uint8Array;
}

/** Opens a zip of `size` bytes through `readAt`. Reads only its end records and directory. */
export function openZip(size: number, readAt: ReadAt, what = 'zip'): ZipReader {
  if (size < 22) throw new ZipError(`${what}: too short to be a zip`);
  const tailLen = Math.min(size, 22 + 0xffff);
  const tail = readAt(size - tailLen, tailLen);
  const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === END) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ZipError(`${what}: no end of central directory (not a zip, or cut off)`);
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === MAX32 || cdOffset === MAX32) {
    // ZIP64: the locator sits right before the end record and points at the ZIP64 end record.
    const loc = eocd - 20;
    if (loc < 0 || tv.getUint32(loc, true) !== END64_LOCATOR)
      throw new ZipError(`${what}: ZIP64 end record locator missing`);
    const at = u64(tv, loc + 8, what);
    if (at + 56 > size) throw new ZipError(`${what}: ZIP64 end record outside the file`);
    const r = readAt(at, 56);
    const rv = new DataView(r.buffer, r.byteOffset, 56);
    if (rv.getUint32(0, true) !== END64) throw new ZipError(`${what}: ZIP64 end record malformed`);
    count = u64(rv, 32, what);
    cdSize = u64(rv, 40, what);
    cdOffset = u64(rv, 48, what);
  }
  if (cdOffset + cdSize > size || count * 46 > cdSize)
    throw new ZipError(`${what}: central directory lies outside the file`);
  const cd = readAt(cdOffset, cdSize);
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
  return {
    entries,
    read(e, opts = {}) {
      const max = opts.maxBytes ?? Infinity;
      if (e.size > max)
        throw new ZipError(`${what}: ${e.name} declares ${e.size} bytes, more than ${max}`);
      // The data starts after the LOCAL header, whose extra field may differ from the central one.
      const h = readAt(e.localHeaderOffset, 30);
      const hv = new DataView(h.buffer, h.byteOffset, 30);
      if (hv.getUint32(0, true) !== LOCAL)
        throw new ZipError(`${what}: ${e.name}: local header malformed`);
      const start = e.localHeaderOffset + 30 + hv.getUint16(26, true) + hv.getUint16(28, true);
      if (start + e.compressedSize > size)
        throw new ZipError(`${what}: ${e.name}: data lies outside the file`);
      let data: Uint8Array;
      if (e.method === 0) {
        if (e.compressedSize !== e.size)
          throw new ZipError(`${what}: ${e.name}: stored entry with two different sizes`);
        data = readAt(start, e.size);
      } else if (e.method === 8) {
        // Inflate into a buffer of the declared size: a bomb cannot grow past it.
        const out = new Uint8Array(e.size);
        let got: Uint8Array;
        try {
          got = inflateSync(readAt(start, e.compressedSize), { out });
        } catch (err) {
          throw new ZipError(`${what}: ${e.name}: cannot inflate (${(err as Error).message})`);
        }
        if (got.length !== e.size || got.buffer !== out.buffer)
          throw new ZipError(`${what}: ${e.name}: inflates to a different size than declared`);
        data = out;
      } else {
        throw new ZipError(`${what}: ${e.name}: compression method ${e.method} is not supported`);
      }
      if (opts.checkCrc !== false && crc32(data) !== e.crc)
        throw new ZipError(`${what}: ${e.name}: CRC-32 mismatch (damaged file)`);
      return data;
    },
  };
}

/** A zip held in memory (STORED entries come back as views, no copy). */
export function openZipBytes(bytes: Uint8Array, what = 'zip'): ZipReader {
  return openZip(
    bytes.length,
    (o, n) => {
      if (o < 0 || o + n > bytes.length) throw new ZipError(`${what}: read past the end`);
      return bytes.subarray(o, o + n);
    },
    what,
  );
}

function u64(v: DataView, at: number, what: string): number {
  const n = Number(v.getBigUint64(at, true));
  if (!Number.isSafeInteger(n)) throw new ZipError(`${what}: 64-bit size out of range`);
  return n;
}
