// This browser profile's site key (`identity` store, record 'site'), kept in IndexedDB as a
// CryptoKeyPair. IndexedDB stores CryptoKeys by structured clone, so the private key stays
// non-extractable: this app can sign with it but never read it out. Clearing the site's data for
// this origin deletes it; a new key is then a new site for the relays. Making the key and turning
// it into a SiteIdentity is fed/identity/kept-key.ts's (siteIdentity(siteKeyStore(db))).
import type { StoreDB } from './db.ts';

const RECORD_ID = 'site';

export interface SiteKeyRecord {
  id: typeof RECORD_ID;
  keys: CryptoKeyPair;
  fingerprint: string;
  createdAt: number;
}

function isKeyRecord(v: unknown): v is SiteKeyRecord {
  const r = v as SiteKeyRecord | undefined;
  return (
    !!r &&
    r.keys?.privateKey instanceof CryptoKey &&
    r.keys?.publicKey instanceof CryptoKey &&
    typeof r.fingerprint === 'string'
  );
}

/** The stored site key, if this profile has one. */
export async function loadSiteKey(db: StoreDB): Promise<SiteKeyRecord | undefined> {
  const v = await db.get('identity', RECORD_ID);
  if (v === undefined) return undefined;
  if (!isKeyRecord(v)) throw new Error('the stored site key record is malformed');
  return v;
}

/** The profile's key slot: `addFirst` adds a key unless another tab or worker stored one first (that one wins). */
export function siteKeyStore(db: StoreDB) {
  return {
    load: () => loadSiteKey(db),
    async addFirst<K extends Omit<SiteKeyRecord, 'id'>>(key: K): Promise<K | SiteKeyRecord> {
      // Key generation is asynchronous and cannot run inside an IndexedDB transaction: the key is
      // made first, then `add`ed, which fails if another tab or worker stored one meanwhile.
      try {
        await db.add('identity', {
          id: RECORD_ID,
          keys: key.keys,
          fingerprint: key.fingerprint,
          createdAt: key.createdAt,
        } as never);
        return key;
      } catch (e) {
        if ((e as DOMException)?.name !== 'ConstraintError') throw e;
        return (await loadSiteKey(db))!;
      }
    },
  };
}
