// Byte strings of the secure-aggregation messages (keys, IVs, sealed shares, Shamir shares) as
// base64 in the JSON header: all are at most a few hundred bytes. The masked vector itself is the
// frame's binary payload.

export const PUBKEY_BYTES = 65; // uncompressed P-256 point
export const IV_BYTES = 12;
export const SEALED_BYTES = 2 * 48 + 16; // a b-share and an s-share, plus the AES-GCM tag
export const SALT_BYTES = 16;

export function toB64(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** Decodes base64 and checks the length; `what` names the field in the error. */
export function fromB64(s: string, bytes: number, what: string): Uint8Array {
  let bin: string;
  try {
    bin = atob(s);
  } catch {
    throw new Error(`${what} is not valid base64`);
  }
  if (bin.length !== bytes) throw new Error(`${what} has ${bin.length} bytes, expected ${bytes}`);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** Reads a masked vector from a frame payload (copied: the payload may be unaligned). */
export function wordsOf(payload: Uint8Array, length: number): Uint32Array {
  if (payload.length !== length * 4)
    throw new Error(
      `payload holds ${payload.length} bytes, a vector of ${length} words needs ${length * 4}`,
    );
  const out = new Uint32Array(length);
  new Uint8Array(out.buffer).set(payload);
  return out;
}

export function bytesOf(words: Uint32Array): Uint8Array {
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
}
