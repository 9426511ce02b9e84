// This browser profile's site key (`identity` store, record 'site'): made on first need and kept
// in IndexedDB as a CryptoKeyPair. IndexedDB stores CryptoKeys by structured clone, so the
// private key stays non-extractable: this app can sign with it but never read it out. Clearing
// the site's data for this origin deletes it; a new key is then a new site for the relays.
import { generateSiteKeyPair, identityOf, type SiteIdentity } from '../fed/identity/site-key.ts';
import type { StoreDB } from './db.ts';

const RECORD_ID = 'site';

export interface SiteKeyRecord {
  id: typeof RECORD_ID;
  keys: CryptoKeyPair;
  fingerprint: string;
  createdAt: number;
}

export interface StoredIdentity {
  identity: SiteIdentity;
  createdAt: number;
  /** True when this call made the key. */
  created: boolean;
}

function isKeyRecord(v: unknown): v is SiteKeyRecord {
  const r = v as SiteKeyRecord | undefined;
  return !!r && r.keys?.privateKey instanceof CryptoKey && r.keys?.publicKey instanceof CryptoKey && typeof r.fingerprint === 'string';
}

/** The stored site key, if this profile has one. */
export async function loadSiteKey(db: StoreDB): Promise<SiteKeyRecord | undefined> {
  const v = await db.get('identity', RECORD_ID);
  if (v === undefined) return undefined;
  if (!isKeyRecord(v)) throw new Error('the stored site key record is malformed');
  return v;
}

/** The site key of this profile, made and stored now if there is none (two tabs racing get the same key). */
export async function siteIdentity(db: StoreDB, now: () => number = Date.now): Promise<StoredIdentity> {
  const existing = await loadSiteKey(db);
  if (existing) return { identity: await identityOf(existing.keys), createdAt: existing.createdAt, created: false };
  // Key generation is asynchronous and cannot run inside an IndexedDB transaction: make the key,
  // then `add` it, which fails if another tab or worker stored one meanwhile; that one wins.
  const keys = await generateSiteKeyPair();
  const identity = await identityOf(keys);
  const record: SiteKeyRecord = { id: RECORD_ID, keys, fingerprint: identity.fingerprint, createdAt: now() };
  try {
    await db.add('identity', record as never);
    return { identity, createdAt: record.createdAt, created: true };
  } catch (e) {
    if ((e as DOMException)?.name !== 'ConstraintError') throw e;
    const winner = (await loadSiteKey(db))!;
    return { identity: await identityOf(winner.keys), createdAt: winner.createdAt, created: false };
  }
}
