// gzip detection and decompression with an integrity check. fflate's gunzipSync does not verify
// the CRC-32/ISIZE trailer, so a corrupted (but still inflatable) file would pass silently.
import { gunzipSync } from 'fflate';

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

let crcTable: Uint32Array | undefined;
export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Decompresses a single-member gzip stream; throws a readable error when it is truncated or corrupt. */
export function gunzip(bytes: Uint8Array, what = 'file'): Uint8Array {
  let out: Uint8Array;
  try {
    out = gunzipSync(bytes);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`${what}: truncated or corrupt gzip data (${msg})`);
  }
  if (bytes.length < 18) throw new Error(`${what}: truncated gzip data (${bytes.length} bytes)`);
  const t = bytes.length - 8;
  const crc = (bytes[t] | (bytes[t + 1] << 8) | (bytes[t + 2] << 16) | (bytes[t + 3] << 24)) >>> 0;
  const isize = (bytes[t + 4] | (bytes[t + 5] << 8) | (bytes[t + 6] << 16) | (bytes[t + 7] << 24)) >>> 0;
  if (isize !== out.length >>> 0 || crc !== crc32(out)) {
    throw new Error(`${what}: gzip check failed: the CRC-32/size trailer does not match the data (corrupt, truncated or multi-member gzip)`);
  }
  return out;
}
