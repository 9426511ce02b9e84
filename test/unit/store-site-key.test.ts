// This browser profile's site key in IndexedDB (fake-indexeddb here; the browser federation test
// checks the same across a real reload): made once, the same after reopening, non-extractable.
import { describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/db.ts';
import { loadSiteKey, siteKeyStore } from '../../src/store/site-key.ts';
import { siteIdentity } from '../../src/fed/identity/kept-key.ts';
import {
  fingerprintOf,
  importSitePublicKey,
  verifySignature,
} from '../../src/fed/identity/site-key.ts';
import { freshStore, noEnv } from './store-helpers.ts';

describe('store: the site key', () => {
  it('is made on first need, then the same key after the database is closed and reopened (a reload)', async () => {
    const { db, factory } = await freshStore();
    expect(await loadSiteKey(db)).toBeUndefined();
    const first = await siteIdentity(siteKeyStore(db), () => 1234);
    expect(first.created).toBe(true);
    expect(first.createdAt).toBe(1234);
    expect(first.identity.fingerprint).toMatch(/^[0-9a-f]{4}(:[0-9a-f]{4}){7}$/);
    expect(first.identity.fingerprint).toBe(await fingerprintOf(first.identity.publicKey));
    db.close();

    const again = await openStore({ factory, env: noEnv });
    const second = await siteIdentity(siteKeyStore(again), () => 9999);
    expect(second.created).toBe(false);
    expect(second.createdAt).toBe(1234);
    expect(second.identity.fingerprint).toBe(first.identity.fingerprint);
    expect(
      Buffer.from(second.identity.publicKey).equals(Buffer.from(first.identity.publicKey)),
    ).toBe(true);
    // The reloaded private key signs what the original public key verifies.
    const msg = new TextEncoder().encode('round 3 update');
    const sig = await second.identity.sign(msg);
    const pub = await importSitePublicKey(first.identity.publicKey);
    expect(await verifySignature(pub, sig, msg)).toBe(true);
    expect(await verifySignature(pub, sig, new TextEncoder().encode('round 4 update'))).toBe(false);
  });

  it('keeps the private key non-extractable', async () => {
    const { db } = await freshStore();
    await siteIdentity(siteKeyStore(db));
    const rec = (await loadSiteKey(db))!;
    expect(rec.keys.privateKey).toBeInstanceOf(CryptoKey);
    expect(rec.keys.privateKey.extractable).toBe(false);
    expect(rec.keys.privateKey.algorithm).toMatchObject({ name: 'ECDSA', namedCurve: 'P-256' });
    await expect(crypto.subtle.exportKey('pkcs8', rec.keys.privateKey)).rejects.toThrow();
    await expect(crypto.subtle.exportKey('jwk', rec.keys.privateKey)).rejects.toThrow();
  });

  it('two callers racing for the first key (two tabs, or page and worker) end with one key', async () => {
    const { db, factory } = await freshStore();
    const other = await openStore({ factory, env: noEnv });
    const [a, b] = await Promise.all([
      siteIdentity(siteKeyStore(db)),
      siteIdentity(siteKeyStore(other)),
    ]);
    expect(a.identity.fingerprint).toBe(b.identity.fingerprint);
    expect([a.created, b.created].filter(Boolean).length).toBe(1);
    expect((await loadSiteKey(db))!.fingerprint).toBe(a.identity.fingerprint);
  });

  it('refuses a malformed stored record instead of signing with it', async () => {
    const { db } = await freshStore();
    await db.put('identity', {
      id: 'site',
      keys: { privateKey: 'x', publicKey: 'y' },
      fingerprint: 'f',
    });
    await expect(siteIdentity(siteKeyStore(db))).rejects.toThrow(/malformed/);
  });
});
