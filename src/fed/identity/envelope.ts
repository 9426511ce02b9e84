// Signed site frames: a layer under the federation protocol (protocol.ts frames travel inside it
// unchanged). The host opens every connection with a fresh random nonce; the site signs every
// frame it sends over (nonce, counter, frame), its first frame also over its public key. A frame
// replayed from another connection fails on the nonce; one replayed, dropped or reordered within
// a connection fails on the counter; a changed bit fails on the signature.
//
// Challenge, host → site, the first frame of every connection:
//   "FNCH" | u8 version | u8 0 | u16 0 | nonce (32 bytes)
// Signed frame, site → host, every frame:
//   "FNSG" | u8 version | u8 0 | u16 keyLength | u32 counter | signature (64 bytes)
//   | public key (keyLength bytes of SPKI DER; in frame 0 only, else keyLength = 0) | protocol frame
// The signature (ECDSA P-256, SHA-256) covers
//   "fednnunet site frame v1" | nonce | u32 counter | u16 keyLength | public key | SHA-256(frame)
// Hashing the frame first lets a 60 MB update be signed without copying it.
import {
  IdentityError,
  sha256,
  SIGNATURE_BYTES,
  verifySignature,
  type SiteIdentity,
} from './site-key.ts';

export const ENVELOPE_VERSION = 1;
export const NONCE_BYTES = 32;
const CHALLENGE_MAGIC = [0x46, 0x4e, 0x43, 0x48]; // "FNCH"
const SIGNED_MAGIC = [0x46, 0x4e, 0x53, 0x47]; // "FNSG"
const SIGNED_HEAD = 12 + SIGNATURE_BYTES;
const MAX_KEY_BYTES = 1024;
const DOMAIN = new TextEncoder().encode('fednnunet site frame v1');
/** Most bytes a signed frame adds to the protocol frame it carries. */
export const ENVELOPE_OVERHEAD = SIGNED_HEAD + MAX_KEY_BYTES;

const hasMagic = (b: Uint8Array, magic: number[]) =>
  b.length >= 4 && magic.every((m, i) => b[i] === m);

export function newNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
}

export function encodeChallenge(nonce: Uint8Array): Uint8Array {
  if (nonce.length !== NONCE_BYTES)
    throw new IdentityError(`a challenge nonce has ${NONCE_BYTES} bytes`);
  const out = new Uint8Array(8 + NONCE_BYTES);
  out.set(CHALLENGE_MAGIC, 0);
  out[4] = ENVELOPE_VERSION;
  out.set(nonce, 8);
  return out;
}

export const isChallenge = (b: Uint8Array) => hasMagic(b, CHALLENGE_MAGIC);

export function decodeChallenge(b: Uint8Array): Uint8Array {
  if (!isChallenge(b)) throw new IdentityError('not an identity challenge');
  if (b[4] !== ENVELOPE_VERSION)
    throw new IdentityError(
      `identity challenge version ${b[4]} is not supported (this is version ${ENVELOPE_VERSION})`,
    );
  if (b.length !== 8 + NONCE_BYTES) throw new IdentityError('malformed identity challenge');
  return b.slice(8);
}

function signedData(
  nonce: Uint8Array,
  counter: number,
  key: Uint8Array,
  frameHash: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(DOMAIN.length + NONCE_BYTES + 6 + key.length + frameHash.length);
  out.set(DOMAIN, 0);
  let o = DOMAIN.length;
  out.set(nonce, o);
  o += NONCE_BYTES;
  const dv = new DataView(out.buffer);
  dv.setUint32(o, counter, true);
  dv.setUint16(o + 4, key.length, true);
  o += 6;
  out.set(key, o);
  out.set(frameHash, o + key.length);
  return out;
}

/** Wraps and signs one protocol frame; `withKey` for a connection's first frame. */
export async function sealFrame(
  id: SiteIdentity,
  nonce: Uint8Array,
  counter: number,
  frame: Uint8Array,
  withKey: boolean,
): Promise<Uint8Array> {
  if (!Number.isSafeInteger(counter) || counter < 0 || counter > 0xffffffff)
    throw new IdentityError(`frame counter ${counter} is out of range`);
  const key = withKey ? id.publicKey : new Uint8Array(0);
  const sig = await id.sign(signedData(nonce, counter, key, await sha256(frame)));
  if (sig.length !== SIGNATURE_BYTES)
    throw new IdentityError(`expected a ${SIGNATURE_BYTES}-byte signature, got ${sig.length}`);
  const out = new Uint8Array(SIGNED_HEAD + key.length + frame.length);
  out.set(SIGNED_MAGIC, 0);
  out[4] = ENVELOPE_VERSION;
  const dv = new DataView(out.buffer);
  dv.setUint16(6, key.length, true);
  dv.setUint32(8, counter, true);
  out.set(sig, 12);
  out.set(key, SIGNED_HEAD);
  out.set(frame, SIGNED_HEAD + key.length);
  return out;
}

export interface SignedFrame {
  counter: number;
  signature: Uint8Array;
  /** SPKI DER; empty except in a connection's first frame. */
  key: Uint8Array;
  frame: Uint8Array;
}

/** Splits a signed frame (no crypto); IdentityError on a malformed or unsigned one. */
export function parseSignedFrame(b: Uint8Array): SignedFrame {
  if (!hasMagic(b, SIGNED_MAGIC))
    throw new IdentityError(
      'the frame is not signed; this federation accepts signed site frames only',
    );
  if (b[4] !== ENVELOPE_VERSION)
    throw new IdentityError(
      `signed frame version ${b[4]} is not supported (this is version ${ENVELOPE_VERSION})`,
    );
  if (b.length < SIGNED_HEAD) throw new IdentityError('truncated signed frame');
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const keyLength = dv.getUint16(6, true);
  if (keyLength > MAX_KEY_BYTES || SIGNED_HEAD + keyLength > b.length)
    throw new IdentityError('malformed signed frame (key length)');
  return {
    counter: dv.getUint32(8, true),
    signature: b.subarray(12, SIGNED_HEAD),
    key: b.subarray(SIGNED_HEAD, SIGNED_HEAD + keyLength),
    frame: b.subarray(SIGNED_HEAD + keyLength),
  };
}

/** Checks a parsed frame's signature under `publicKey` (the key of frame 0 of this connection). */
export async function verifySignedFrame(
  publicKey: CryptoKey,
  nonce: Uint8Array,
  f: SignedFrame,
): Promise<boolean> {
  return verifySignature(
    publicKey,
    f.signature,
    signedData(nonce, f.counter, f.key, await sha256(f.frame)),
  );
}
