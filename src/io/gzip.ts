// gzip detection and decompression with an integrity check. fflate's gunzipSync does not verify
// the CRC-32/ISIZE trailer, so a corrupted (but still inflatable) file would pass silently.
// `inflateBounded` inflates incrementally (fflate's streaming classes) so a reader can parse the
// header first and then inflate at most the size the header declares. The trailer's CRC-32 is
// util/crc32.ts (zlib's native one in Node, slice-by-8 JS in the page; fflate keeps its own
// byte-wise CRC internal).
import { Gunzip, Inflate, Unzlib, gunzipSync } from 'fflate';
import { ReadLimitError, mib } from './read-limits.ts';
import { crc32 } from '../util/crc32.ts';
import { errorMessage } from '../util/errors.ts';

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Decompresses a single-member gzip stream; throws a readable error when it is truncated or corrupt. */
export function gunzip(bytes: Uint8Array, what = 'file'): Uint8Array {
  let out: Uint8Array;
  try {
    out = gunzipSync(bytes);
  } catch (e) {
    const msg = errorMessage(e);
    throw new Error(`${what}: truncated or corrupt gzip data (${msg})`);
  }
  if (bytes.length < 18) throw new Error(`${what}: truncated gzip data (${bytes.length} bytes)`);
  const t = bytes.length - 8;
  const crc = (bytes[t] | (bytes[t + 1] << 8) | (bytes[t + 2] << 16) | (bytes[t + 3] << 24)) >>> 0;
  const isize =
    (bytes[t + 4] | (bytes[t + 5] << 8) | (bytes[t + 6] << 16) | (bytes[t + 7] << 24)) >>> 0;
  if (isize !== out.length >>> 0 || crc !== crc32(out)) {
    throw new Error(
      `${what}: gzip check failed: the CRC-32/size trailer does not match the data (corrupt, truncated or multi-member gzip)`,
    );
  }
  return out;
}

export interface BoundedInflate {
  /** 'gzip' (CRC-32/ISIZE checked when the whole stream is read), 'zlib' or raw 'deflate'. */
  kind: 'gzip' | 'zlib' | 'deflate';
  /** Never inflate more than this many bytes (ReadLimitError beyond). */
  maxBytes: number;
  /** Bytes wanted in all, when known up front (e.g. a detached header declared them). */
  expectedBytes?: number;
  /**
   * Otherwise: inflate `headerBytes` (or less when the stream is shorter), then ask
   * `sizeFromHeader` how many bytes the stream should hold in all (it throws on a bad header).
   */
  headerBytes?: number;
  sizeFromHeader?: (head: Uint8Array) => number;
}

/**
 * Input fed per step. fflate hands over what one step inflates all at once, and deflate expands
 * up to ~1032×, so each step is sized to what may still be inflated: before the size is known,
 * at most that much past the limit (64-byte steps near it); once the declared size is allocated,
 * bytes past it are dropped and a step (≥ 16 KiB, so the tail is not crawled) overshoots by at most
 * ~16 MB for a moment.
 */
function stepSize(remaining: number, sized: boolean): number {
  return Math.min(256 * 1024, Math.max(sized ? 16 * 1024 : 64, Math.floor(remaining / 1032)));
}

/**
 * Inflates `input` but never more than the declared size (and `maxBytes`): memory is allocated once
 * the header is known, and the stream stops being read when the declared bytes are there. Returns
 * the bytes inflated (fewer than declared when the stream is shorter; callers report that).
 */
export function inflateBounded(input: Uint8Array, what: string, o: BoundedInflate): Uint8Array {
  let declared = o.expectedBytes;
  const checkDeclared = (n: number) => {
    if (!(Number.isSafeInteger(n) && n >= 0))
      throw new Error(`${what}: the header declares an invalid data size (${n} bytes)`);
    if (n > o.maxBytes) {
      throw new ReadLimitError(
        `${what}: the header declares ${mib(n)} of data, more than the ${mib(o.maxBytes)} read limit (a corrupt or hostile header, or raise the limit)`,
      );
    }
  };
  // Fast path: when a gzip trailer's size equals the declared size (every intact file), gunzipSync
  // inflates straight into a buffer of exactly that size (it never writes past a given buffer);
  // otherwise (padding, truncation, a lie) the stream is read step by step below.
  const isize =
    o.kind === 'gzip' && input.length >= 18
      ? new DataView(input.buffer, input.byteOffset + input.length - 4, 4).getUint32(0, true)
      : -1;
  let fast = false;
  const wholeGzip = (n: number) => (fast = isize === n >>> 0 && n > 0);
  if (declared !== undefined) checkDeclared(declared);
  let out: Uint8Array | undefined =
    declared !== undefined && !wholeGzip(declared) ? new Uint8Array(declared) : undefined;
  const head: Uint8Array[] = [];
  // `extra`: the stream holds more than declared; it is not read further (nor its trailer checked).
  let total = 0,
    crc = 0,
    extra = false,
    complete = false;
  const headerBytes = Math.min(o.headerBytes ?? 0, o.maxBytes);
  const settle = () => {
    // The header is in: find the declared size, allocate once, move what we have.
    const h = concat(head, total);
    declared = o.sizeFromHeader!(h);
    checkDeclared(declared);
    if (wholeGzip(declared)) return;
    out = new Uint8Array(declared);
    out.set(h.subarray(0, Math.min(h.length, declared)));
    if (total > declared) extra = true;
  };
  const ondata = (chunk: Uint8Array, final: boolean) => {
    if (final) complete = true;
    if (o.kind === 'gzip') crc = crc32(chunk, crc);
    if (extra || fast || chunk.length === 0) return;
    if (out) {
      const take = Math.min(chunk.length, declared! - total);
      out.set(chunk.subarray(0, take), total);
      total += take;
      if (take < chunk.length) extra = true;
      return;
    }
    if (total + chunk.length > o.maxBytes)
      throw new ReadLimitError(
        `${what}: decompresses to more than the ${mib(o.maxBytes)} read limit`,
      );
    head.push(chunk);
    total += chunk.length;
    if (total >= headerBytes) settle();
  };
  const sync = () => {
    let full: Uint8Array;
    try {
      full = gunzipSync(input, { out: new Uint8Array(declared!) });
    } catch (e) {
      throw new Error(`${what}: truncated or corrupt gzip data (${errorMessage(e)})`);
    }
    const t = input.length - 8;
    if (
      full.length !== declared ||
      new DataView(input.buffer, input.byteOffset + t, 4).getUint32(0, true) !== crc32(full)
    ) {
      throw new Error(
        `${what}: gzip check failed: the CRC-32/size trailer does not match the data (corrupt, truncated or multi-member gzip)`,
      );
    }
    return full;
  };
  if (fast) return sync();
  const stream =
    o.kind === 'gzip'
      ? new Gunzip(ondata)
      : o.kind === 'zlib'
        ? new Unzlib(ondata)
        : new Inflate(ondata);
  try {
    for (let p = 0; p < input.length && !extra && !fast;) {
      const step = stepSize((out ? declared! : headerBytes) - total, !!out);
      stream.push(input.subarray(p, Math.min(p + step, input.length)), p + step >= input.length);
      p += step;
    }
    if (input.length === 0) stream.push(input, true);
  } catch (e) {
    if (e instanceof ReadLimitError || (e instanceof Error && e.message.startsWith(`${what}:`)))
      throw e;
    const msg = errorMessage(e);
    throw new Error(`${what}: truncated or corrupt ${o.kind} data (${msg})`);
  }
  if (fast) return sync();
  if (!out) settle();
  if (fast) return sync();
  // The trailer can only be checked when the stream was read to its end.
  if (o.kind === 'gzip' && complete && !extra) {
    if (input.length < 18) throw new Error(`${what}: truncated gzip data (${input.length} bytes)`);
    const t = input.length - 8;
    const want =
      (input[t] | (input[t + 1] << 8) | (input[t + 2] << 16) | (input[t + 3] << 24)) >>> 0;
    const isize =
      (input[t + 4] | (input[t + 5] << 8) | (input[t + 6] << 16) | (input[t + 7] << 24)) >>> 0;
    // fflate's streaming inflate does not always notice a stream cut at a block boundary; the
    // size in the trailer (then whatever bytes were last) tells.
    if (isize !== total >>> 0)
      throw new Error(
        `${what}: truncated or corrupt gzip data (unexpected EOF: the stream gives ${total} bytes, its trailer says ${isize})`,
      );
    if (want !== crc) {
      throw new Error(
        `${what}: gzip check failed: the CRC-32/size trailer does not match the data (corrupt, truncated or multi-member gzip)`,
      );
    }
  } else if (!complete && !extra) {
    throw new Error(`${what}: truncated ${o.kind} data (the stream ends after ${total} bytes)`);
  }
  return total === out!.length ? out! : out!.subarray(0, total);
}

function concat(parts: Uint8Array[], n: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
