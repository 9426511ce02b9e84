// The privacy audit kept in IndexedDB (src/store/egress-log.ts): it survives closing and reopening
// the database (a reload), keeps send order, and stays bounded.
import { describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/db.ts';
import { appendEgress, clearEgress, listEgress } from '../../src/store/egress-log.ts';
import { freshStore, noEnv } from './store-helpers.ts';

const rec = (message: string, round?: number, bytes = 100) => ({
  federationId: 'ws://r/fed|demo',
  siteName: 'site-a',
  message,
  ...(round === undefined ? {} : { round }),
  bytes,
  at: 1_700_000_000_000,
});

describe('store: the egress log (privacy audit)', () => {
  it('keeps every sent message in order across a reopen', async () => {
    const { db, factory } = await freshStore();
    await appendEgress(db, rec('hello'));
    await appendEgress(db, rec('fingerprint'));
    await appendEgress(db, { ...rec('update', 1, 4096), tensors: 12 });
    db.close();
    const again = await openStore({ factory, env: noEnv });
    const rows = await listEgress(again);
    expect(rows.map((r) => [r.message, r.round, r.tensors, r.bytes])).toEqual([
      ['hello', undefined, undefined, 100],
      ['fingerprint', undefined, undefined, 100],
      ['update', 1, 12, 4096],
    ]);
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3]);
    await clearEgress(again);
    expect(await listEgress(again)).toEqual([]);
  });

  it('deletes the oldest records beyond the bound', async () => {
    const { db } = await freshStore();
    for (let i = 1; i <= 7; i++) await appendEgress(db, rec('update', i), 5);
    const rows = await listEgress(db);
    expect(rows.map((r) => r.round)).toEqual([3, 4, 5, 6, 7]);
  });
});
