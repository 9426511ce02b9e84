// A site's identity: an ECDSA P-256 key pair (WebCrypto, the same API in Node, pages and workers).
// The private key is created non-extractable, so it can sign but never be read out (not even by
// this app's own code); the public key is shared as SPKI DER and named by its fingerprint.
//
// WebCrypto exists in browsers only in secure contexts (https, or http://localhost), like WebGPU.

const ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIG = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** Bytes of a P-256 ECDSA signature in WebCrypto's IEEE P1363 form (r ‖ s). */
export const SIGNATURE_BYTES = 64;
/** The fingerprint keeps the first 16 bytes (128 bits) of SHA-256(SPKI): 32 hex digits. */
const FINGERPRINT_BYTES = 16;

export class IdentityError extends Error {}

export interface SiteIdentity {
  /** The public key, SPKI DER. */
  readonly publicKey: Uint8Array;
  /** `ab12:cd34:…` (8 groups of 4 hex digits), see fingerprintOf. */
  readonly fingerprint: string;
  sign(data: Uint8Array): Promise<Uint8Array>;
}

function subtle(): SubtleCrypto {
  const s = (globalThis as { crypto?: Crypto }).crypto?.subtle;
  if (!s)
    throw new IdentityError(
      'site keys need WebCrypto, which browsers offer only on https:// or http://localhost pages (as WebGPU)',
    );
  return s;
}

/** Copies into a fresh ArrayBuffer-backed array (WebCrypto rejects views of shared memory). */
const own = (b: Uint8Array): Uint8Array<ArrayBuffer> =>
  b.buffer instanceof ArrayBuffer ? (b as Uint8Array<ArrayBuffer>) : new Uint8Array(b);

export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest('SHA-256', own(data)));
}

/** `ab12:cd34:…`: the first 128 bits of SHA-256 over the SPKI DER, in 8 groups of 4 hex digits. */
export async function fingerprintOf(spki: Uint8Array): Promise<string> {
  const h = (await sha256(spki)).subarray(0, FINGERPRINT_BYTES);
  return [...h]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join('')
    .replace(/(.{4})(?!$)/g, '$1:');
}

/**
 * A fingerprint as an admin may type it (any case; ':', '-', spaces or none between digits) in
 * the canonical form, or an IdentityError saying what is wrong.
 */
export function normalizeFingerprint(s: string): string {
  const hex = s
    .toLowerCase()
    .replace(/^sha256:/, '')
    .replace(/[\s:-]/g, '');
  if (!/^[0-9a-f]*$/.test(hex))
    throw new IdentityError(
      `'${s}' is not a key fingerprint (hex digits, optionally grouped with ':')`,
    );
  if (hex.length !== FINGERPRINT_BYTES * 2)
    throw new IdentityError(
      `'${s}' has ${hex.length} hex digits; a site key fingerprint has ${FINGERPRINT_BYTES * 2}`,
    );
  return hex.replace(/(.{4})(?!$)/g, '$1:');
}

/** A new key pair; the private key cannot be exported. */
export async function generateSiteKeyPair(): Promise<CryptoKeyPair> {
  return (await subtle().generateKey(ALG, false, ['sign', 'verify'])) as CryptoKeyPair;
}

/** The identity of a key pair (from generateSiteKeyPair, or one kept in IndexedDB). */
export async function identityOf(keys: CryptoKeyPair): Promise<SiteIdentity> {
  const publicKey = new Uint8Array(await subtle().exportKey('spki', keys.publicKey));
  const fingerprint = await fingerprintOf(publicKey);
  return {
    publicKey,
    fingerprint,
    sign: async (data) => new Uint8Array(await subtle().sign(SIG, keys.privateKey, own(data))),
  };
}

/** A fresh identity held in memory only (Node sites: `simulate`, tests). */
export async function ephemeralIdentity(): Promise<SiteIdentity> {
  return identityOf(await generateSiteKeyPair());
}

/** Imports a site's SPKI public key; refuses anything but an EC P-256 key. */
export async function importSitePublicKey(spki: Uint8Array): Promise<CryptoKey> {
  try {
    return await subtle().importKey('spki', own(spki), ALG, true, ['verify']);
  } catch {
    throw new IdentityError('the public key is not an ECDSA P-256 key in SPKI form');
  }
}

export async function verifySignature(
  key: CryptoKey,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  return subtle().verify(SIG, key, own(signature), own(data));
}

export function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(s: string): Uint8Array {
  let bin: string;
  try {
    bin = atob(s.replace(/\s/g, ''));
  } catch {
    throw new IdentityError('not valid base64');
  }
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
