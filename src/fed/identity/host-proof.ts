// The host's proof of its key, for a workshop host tab (issue 15 item 5). A workshop is reached
// through a PeerJS id derived from its code, and the signalling server gives that id to whoever
// registers it first: once the host tab's socket closes, anyone with the code can take it and
// receive the participants' offers. So the join link carries the host key's fingerprint, and a
// participant checks the host's signed answer to a challenge of its own before it sends anything
// (no hello, no fingerprint, no update).
//
// Host challenge, site → host, the site's first frame on a connection (before its signed hello):
//   "FNHC" | u8 version | u8 0 | u16 0 | nonce (32 bytes)
// Host proof, host → site, the answer (after the host's own challenge, envelope.ts):
//   "FNHP" | u8 version | u8 0 | u16 keyLength | signature (64 bytes) | public key (SPKI DER)
// The signature (ECDSA P-256, SHA-256, the host browser profile's key: site-key.ts) covers
//   "fednnunet host hello v1" | site nonce | host nonce | u16 keyLength | public key
// The site nonce makes a recorded proof worthless on another connection; the host nonce binds the
// proof to the challenge the site is about to sign its hello for. The key is the one this profile
// also signs site frames with (envelope.ts); the two domain strings keep either signature from
// standing for the other.
import { ENVELOPE_VERSION, NONCE_BYTES, newNonce } from './envelope.ts';
import {
  fingerprintOf,
  IdentityError,
  importSitePublicKey,
  normalizeFingerprint,
  SIGNATURE_BYTES,
  verifySignature,
  type SiteIdentity,
} from './site-key.ts';

const HOST_CHALLENGE_MAGIC = [0x46, 0x4e, 0x48, 0x43]; // "FNHC"
const HOST_PROOF_MAGIC = [0x46, 0x4e, 0x48, 0x50]; // "FNHP"
const PROOF_HEAD = 8 + SIGNATURE_BYTES;
const MAX_KEY_BYTES = 1024;
const DOMAIN = new TextEncoder().encode('fednnunet host hello v1');

/** The host did not prove the key the participant expects; the participant sent nothing and stops. */
export class HostKeyRefused extends IdentityError {
  override name = 'HostKeyRefused';
}

const hasMagic = (b: Uint8Array, magic: number[]) =>
  b.length >= 4 && magic.every((m, i) => b[i] === m);

export const isHostChallenge = (b: Uint8Array) => hasMagic(b, HOST_CHALLENGE_MAGIC);
export const isHostProof = (b: Uint8Array) => hasMagic(b, HOST_PROOF_MAGIC);

/** A site's challenge to the host, and the nonce to check the proof against. */
export function hostChallenge(): { nonce: Uint8Array; bytes: Uint8Array } {
  const nonce = newNonce();
  const bytes = new Uint8Array(8 + NONCE_BYTES);
  bytes.set(HOST_CHALLENGE_MAGIC, 0);
  bytes[4] = ENVELOPE_VERSION;
  bytes.set(nonce, 8);
  return { nonce, bytes };
}

export function decodeHostChallenge(b: Uint8Array): Uint8Array {
  if (!isHostChallenge(b)) throw new IdentityError('not a host challenge');
  if (b[4] !== ENVELOPE_VERSION)
    throw new IdentityError(
      `host challenge version ${b[4]} is not supported (this is version ${ENVELOPE_VERSION})`,
    );
  if (b.length !== 8 + NONCE_BYTES) throw new IdentityError('malformed host challenge');
  return b.slice(8);
}

function signedData(siteNonce: Uint8Array, hostNonce: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(DOMAIN.length + 2 * NONCE_BYTES + 2 + key.length);
  out.set(DOMAIN, 0);
  out.set(siteNonce, DOMAIN.length);
  out.set(hostNonce, DOMAIN.length + NONCE_BYTES);
  new DataView(out.buffer).setUint16(DOMAIN.length + 2 * NONCE_BYTES, key.length, true);
  out.set(key, DOMAIN.length + 2 * NONCE_BYTES + 2);
  return out;
}

/** The host's answer to a site's challenge on a connection whose host nonce is `hostNonce`. */
export async function signHostProof(
  id: SiteIdentity,
  siteNonce: Uint8Array,
  hostNonce: Uint8Array,
): Promise<Uint8Array> {
  const key = id.publicKey;
  const sig = await id.sign(signedData(siteNonce, hostNonce, key));
  if (sig.length !== SIGNATURE_BYTES)
    throw new IdentityError(`expected a ${SIGNATURE_BYTES}-byte signature, got ${sig.length}`);
  const out = new Uint8Array(PROOF_HEAD + key.length);
  out.set(HOST_PROOF_MAGIC, 0);
  out[4] = ENVELOPE_VERSION;
  new DataView(out.buffer).setUint16(6, key.length, true);
  out.set(sig, 8);
  out.set(key, PROOF_HEAD);
  return out;
}

/**
 * Checks a host proof: its key must be the one of `expected` (a fingerprint, as in the join link)
 * and its signature must cover this connection's two nonces. Returns the host's fingerprint;
 * HostKeyRefused otherwise.
 */
export async function verifyHostProof(
  b: Uint8Array,
  siteNonce: Uint8Array,
  hostNonce: Uint8Array,
  expected: string,
): Promise<string> {
  const want = normalizeFingerprint(expected);
  if (!isHostProof(b) || b.length < PROOF_HEAD)
    throw new HostKeyRefused('the workshop host sent no proof of its key');
  if (b[4] !== ENVELOPE_VERSION)
    throw new HostKeyRefused(
      `host proof version ${b[4]} is not supported (this is version ${ENVELOPE_VERSION})`,
    );
  const keyLength = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(6, true);
  if (keyLength > MAX_KEY_BYTES || PROOF_HEAD + keyLength !== b.length)
    throw new HostKeyRefused('malformed host proof (key length)');
  const key = b.slice(PROOF_HEAD);
  const got = await fingerprintOf(key);
  if (got !== want) {
    throw new HostKeyRefused(
      `the workshop host presented key ${got}, not the key in the join link (${want}): someone else may hold this workshop's code. Nothing was sent to it; ask the host for the current link`,
    );
  }
  let pub: CryptoKey;
  try {
    pub = await importSitePublicKey(key);
  } catch (e) {
    throw new HostKeyRefused((e as Error).message);
  }
  if (
    !(await verifySignature(pub, b.subarray(8, PROOF_HEAD), signedData(siteNonce, hostNonce, key)))
  ) {
    throw new HostKeyRefused(
      `the workshop host's proof is not signed by key ${want} for this connection (replayed or forged)`,
    );
  }
  return got;
}
