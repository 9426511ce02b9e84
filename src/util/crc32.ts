// CRC-32 (IEEE 802.3, as zip/gzip use): a cheap integrity check for tensor payloads.
//
// Pure JS by default (the page and workers have no native CRC), slice-by-8: eight table lookups per
// 8 bytes instead of one per byte, several times faster than the byte-wise loop. Node entry points
// (relay, CLI) install zlib's native crc32 with setCrc32Impl (src/node/native-crc.ts); this module
// stays platform-free.
const TABLES = (() => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c >>> 0;
    }
  }
  return t;
})();

/** Slice-by-8 CRC-32 in JS (the fallback where no native one is installed). */
export function crc32Js(bytes: Uint8Array, seed = 0): number {
  const T = TABLES;
  let c = ~seed;
  let i = 0;
  const n = bytes.length;
  const end8 = n - (n % 8);
  for (; i < end8; i += 8) {
    const a = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c =
      T[1792 + (a & 0xff)] ^
      T[1536 + ((a >>> 8) & 0xff)] ^
      T[1280 + ((a >>> 16) & 0xff)] ^
      T[1024 + (a >>> 24)] ^
      T[768 + bytes[i + 4]] ^
      T[512 + bytes[i + 5]] ^
      T[256 + bytes[i + 6]] ^
      T[bytes[i + 7]];
  }
  for (; i < n; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

type Crc32Impl = (bytes: Uint8Array, seed?: number) => number;
let impl: Crc32Impl = crc32Js;

/** Installs a faster CRC-32 with the same contract (Node: zlib.crc32); undefined restores the JS one. */
export function setCrc32Impl(f: Crc32Impl | undefined): void {
  impl = f ?? crc32Js;
}

export function crc32(bytes: Uint8Array, seed = 0): number {
  return impl(bytes, seed) >>> 0;
}
