// A site's long-lived key, made on first need and kept by the caller's store (in the browser:
// store/site-key.ts over IndexedDB, where the private key stays non-extractable). Two tabs racing
// to make one get the same key: the store keeps the first one added.
import { generateSiteKeyPair, identityOf, type SiteIdentity } from './site-key.ts';

export interface KeptSiteKey {
  keys: CryptoKeyPair;
  fingerprint: string;
  createdAt: number;
}

export interface SiteKeyStore {
  load(): Promise<KeptSiteKey | undefined>;
  /** Stores `key` unless a key is stored already; returns the stored one (this key, or the earlier one). */
  addFirst(key: KeptSiteKey): Promise<KeptSiteKey>;
}

export interface StoredIdentity {
  identity: SiteIdentity;
  createdAt: number;
  /** True when this call made the key. */
  created: boolean;
}

/** The kept site key, made and stored now if there is none. */
export async function siteIdentity(
  store: SiteKeyStore,
  now: () => number = Date.now,
): Promise<StoredIdentity> {
  const existing = await store.load();
  if (existing)
    return {
      identity: await identityOf(existing.keys),
      createdAt: existing.createdAt,
      created: false,
    };
  const keys = await generateSiteKeyPair();
  const identity = await identityOf(keys);
  const mine: KeptSiteKey = { keys, fingerprint: identity.fingerprint, createdAt: now() };
  const kept = await store.addFirst(mine);
  if (kept === mine) return { identity, createdAt: mine.createdAt, created: true };
  return { identity: await identityOf(kept.keys), createdAt: kept.createdAt, created: false };
}
