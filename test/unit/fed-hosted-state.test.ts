// The workshop host tab's saved federation (store/hosted-federation.ts) in fake-indexeddb: a
// round trip across a reopened database (a reload), the writer's ordering, what is offered.
import { describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/db.ts';
import {
  deleteHostedFederation,
  HostedFederationWriter,
  HostedStateError,
  hostedRecord,
  loadHostedFederation,
  saveHostedFederation,
  unfinishedHostedFederations,
} from '../../src/fed/hosted-state.ts';
import { hostedRows } from '../../src/store/hosted-federation.ts';
import { Coordinator, type CoordinatorSnapshot } from '../../src/fed/coordinator.ts';
import { encodeWeights } from '../../src/model/weights-codec.ts';
import type { NamedWeights } from '../../src/model/named-weights.ts';
import { randomArray } from '../../src/util/rng.ts';
import { tryHoldLock, type LocksLike } from '../../src/store/env.ts';
import { freshStore, noEnv } from './store-helpers.ts';

function weights(seed: number): NamedWeights {
  return new Map([
    ['encoder.w', { shape: [4, 3, 3], data: randomArray(36, seed) }],
    ['decoder.b', { shape: [5], data: randomArray(5, seed + 1) }],
  ]);
}

/** A mid-federation snapshot with everything a relay persists: bound keys, FFE aggregate, shared spec, history, weights. */
function snapshot(round = 2, phase: CoordinatorSnapshot['phase'] = 'rounds'): CoordinatorSnapshot {
  return {
    config: {
      method: 'ffe',
      configuration: '3d_fullres',
      rounds: 5,
      itersPerRound: 3,
      minSites: 2,
      roundDeadlineMs: 60_000,
      weighting: 'uniform',
      encoding: 'fp16',
      expectedSites: 2,
    },
    phase,
    round,
    sites: [
      {
        siteId: 'site-1-aaaa',
        siteName: 'laptop-a',
        numCases: 4,
        spec: [
          { name: 'encoder.w', shape: [4, 3, 3] },
          { name: 'decoder.b', shape: [5] },
        ],
        fingerprint: { spacings: [[1, 1, 1]] },
        key: { fingerprint: '0123:4567:89ab:cdef:0123:4567:89ab:cdef', spki: 'MFkw' },
      },
      {
        siteId: 'site-2-bbbb',
        siteName: 'laptop-b',
        numCases: 6,
        key: { fingerprint: 'ffff:4567:89ab:cdef:0123:4567:89ab:cdef', spki: 'MFkx' },
      },
    ],
    aggregateFingerprint: { median_spacing: [1, 1, 1.5] },
    shared: [
      { name: 'encoder.w', shape: [4, 3, 3] },
      { name: 'decoder.b', shape: [5] },
    ],
    global: encodeWeights(weights(7), 'fp32'),
    history: [
      {
        round: 1,
        contributors: ['site-1-aaaa', 'site-2-bbbb'],
        rejected: [],
        metrics: { 'site-1-aaaa': { loss: 0.5 } },
        closedBy: 'all',
      },
      {
        round: 2,
        contributors: ['site-1-aaaa'],
        rejected: [{ siteId: 'site-2-bbbb', reason: 'norm' }],
        metrics: {},
        closedBy: 'deadline',
      },
    ],
  };
}

describe('store: the hosted workshop federation', () => {
  it('survives a reopened database (a reload): the same snapshot, weights kept as bytes, a coordinator restores from it', async () => {
    const { db, factory } = await freshStore();
    const s = snapshot();
    const w = new HostedFederationWriter(hostedRows(db), 'wk42', 'wk42', () => 1000);
    await w.persist(s);
    db.close();

    const again = await openStore({ factory, env: noEnv });
    const raw = (await again.get('hostedFederations', 'wk42')) as Record<string, unknown>;
    // Binary, not JSON: the weights are one ArrayBuffer of exactly the encoded bytes.
    expect(raw.globalBytes).toBeInstanceOf(ArrayBuffer);
    expect((raw.globalBytes as ArrayBuffer).byteLength).toBe(s.global!.payload.byteLength);
    expect(JSON.stringify(raw.state)).not.toContain('payload');
    const loaded = (await loadHostedFederation(hostedRows(again), 'wk42'))!;
    expect(loaded.token).toBe('wk42');
    expect(loaded.updatedAt).toBe(1000);
    const { global, ...rest } = loaded.snapshot;
    const { global: g0, ...rest0 } = s;
    expect(rest).toEqual(rest0);
    expect(global!.entries).toEqual(g0!.entries);
    expect(Buffer.from(global!.payload).equals(Buffer.from(g0!.payload))).toBe(true);
    const c = new Coordinator(
      { config: { ...loaded.snapshot.config, token: loaded.token } },
      loaded.snapshot,
    );
    expect(c.phase).toBe('rounds');
    expect(c.round).toBe(2);
    expect(c.roster().map((x) => [x.siteId, x.fingerprint, x.connected])).toEqual([
      ['site-1-aaaa', s.sites[0].key!.fingerprint, false],
      ['site-2-bbbb', s.sites[1].key!.fingerprint, false],
    ]);
    for (const [name, t] of weights(7))
      expect(Buffer.from(c.global!.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer))).toBe(
        true,
      );
    expect(await unfinishedHostedFederations(hostedRows(again))).toEqual([
      { code: 'wk42', updatedAt: 1000, phase: 'rounds', round: 2, rounds: 5, sites: 2 },
    ]);
  });

  it('captures the snapshot when called; writes arriving during a write collapse into the newest', async () => {
    const { db } = await freshStore();
    const w = new HostedFederationWriter(hostedRows(db), 'wk1', 'tok');
    const s = snapshot(1);
    const p1 = w.persist(s);
    // The coordinator keeps mutating its snapshot object after persist returns.
    s.round = 99;
    s.sites.push({ siteId: 'late', siteName: 'late', numCases: 1 });
    const p2 = w.persist(snapshot(2));
    const p3 = w.persist(snapshot(3));
    // p1's write had not started yet either: all three are one write of the newest.
    expect(p2).toBe(p1);
    expect(p3).toBe(p1);
    await p1;
    expect((await loadHostedFederation(hostedRows(db), 'wk1'))!.snapshot.round).toBe(3);
    // One in flight: the next two share the write after it, which holds the newest.
    const q1 = w.persist(snapshot(4));
    await Promise.resolve();
    await Promise.resolve();
    const q2 = w.persist(snapshot(5));
    const q3 = w.persist(snapshot(6));
    expect(q2).not.toBe(q1);
    expect(q3).toBe(q2);
    await q1;
    expect(
      (await loadHostedFederation(hostedRows(db), 'wk1'))!.snapshot.round,
    ).toBeGreaterThanOrEqual(4);
    await q3;
    expect((await loadHostedFederation(hostedRows(db), 'wk1'))!.snapshot.round).toBe(6);
    // A record written at call time: the mutation after persist(s) never reached the store.
    const rec = hostedRecord('x', 't', s);
    s.round = 100;
    expect(rec.state.round).toBe(99);
  });

  it('a finished federation is deleted, never offered; a not yet started one is offered', async () => {
    const { db } = await freshStore();
    const w = new HostedFederationWriter(hostedRows(db), 'done1', 'done1');
    await w.persist(snapshot(2));
    expect((await unfinishedHostedFederations(hostedRows(db))).map((x) => x.code)).toEqual([
      'done1',
    ]);
    await w.persist(snapshot(5, 'done'));
    expect(await unfinishedHostedFederations(hostedRows(db))).toEqual([]);
    expect(await loadHostedFederation(hostedRows(db), 'done1')).toBeUndefined();
    // Even a done record written directly is not offered.
    await saveHostedFederation(hostedRows(db), hostedRecord('old', 'old', snapshot(5, 'done'), 5));
    const joining: CoordinatorSnapshot = { ...snapshot(0, 'join'), global: undefined, history: [] };
    await saveHostedFederation(hostedRows(db), hostedRecord('fresh', 'fresh', joining, 9));
    expect(await unfinishedHostedFederations(hostedRows(db))).toEqual([
      { code: 'fresh', updatedAt: 9, phase: 'join', round: 0, rounds: 5, sites: 2 },
    ]);
    expect((await loadHostedFederation(hostedRows(db), 'fresh'))!.snapshot.global).toBeUndefined();
    await deleteHostedFederation(hostedRows(db), 'fresh');
    expect(await loadHostedFederation(hostedRows(db), 'fresh')).toBeUndefined();
  });

  it('an unreadable record is offered for discarding only, and says why it cannot be resumed', async () => {
    const { db } = await freshStore();
    const good = hostedRecord('bad1', 'bad1', snapshot(), 3);
    await db.put('hostedFederations', {
      ...good,
      state: { ...good.state, phase: 'dancing' },
    } as never);
    await db.put('hostedFederations', { ...good, code: 'bad2', globalBytes: null } as never);
    const bytes = new Uint8Array(good.globalBytes!.slice(0));
    bytes[5] ^= 0xff;
    await db.put('hostedFederations', {
      ...good,
      code: 'bad3',
      globalBytes: bytes.buffer,
    } as never);
    const offers = await unfinishedHostedFederations(hostedRows(db));
    expect(offers.find((x) => x.code === 'bad1')).toEqual({
      code: 'bad1',
      updatedAt: 3,
      problem: "unknown phase 'dancing'",
    });
    expect(offers.find((x) => x.code === 'bad2')?.problem).toMatch(/without their tensor table/);
    await expect(loadHostedFederation(hostedRows(db), 'bad1')).rejects.toThrow(HostedStateError);
    await expect(loadHostedFederation(hostedRows(db), 'bad1')).rejects.toThrow(
      /'bad1' cannot be resumed: unknown phase 'dancing'/,
    );
    await expect(loadHostedFederation(hostedRows(db), 'bad2')).rejects.toThrow(
      /global weights without their tensor table/,
    );
    // The shape is fine but a weight byte flipped: the checksum catches it at load.
    expect(offers.find((x) => x.code === 'bad3')?.problem).toBeUndefined();
    await expect(loadHostedFederation(hostedRows(db), 'bad3')).rejects.toThrow(
      /'bad3' cannot be resumed: its global weights are damaged .*checksum/,
    );
  });

  it('one tab at a time hosts a code: tryHoldLock takes a free lock and keeps it until released', async () => {
    // Web Locks as the browser has them (no queueing needed here): held until the callback's promise settles.
    const held = new Set<string>();
    const locks: LocksLike = {
      async request(name, opts, cb) {
        if (held.has(name)) {
          if (opts.ifAvailable) return cb(null);
          throw new Error('test lock manager does not queue');
        }
        held.add(name);
        try {
          return await cb({ name });
        } finally {
          held.delete(name);
        }
      },
    };
    const release = await tryHoldLock({ locks }, 'fednnunet:host:wk42');
    expect(release).toBeTypeOf('function');
    expect(held.has('fednnunet:host:wk42')).toBe(true);
    expect(await tryHoldLock({ locks }, 'fednnunet:host:wk42')).toBeUndefined();
    expect(await tryHoldLock({ locks }, 'fednnunet:host:other')).toBeTypeOf('function');
    release!();
    await new Promise((ok) => setTimeout(ok, 0));
    expect(held.has('fednnunet:host:wk42')).toBe(false);
    expect(await tryHoldLock({ locks }, 'fednnunet:host:wk42')).toBeTypeOf('function');
    // Without Web Locks (not a secure context) there is nothing to hold: a no-op release.
    expect(await tryHoldLock({}, 'fednnunet:host:wk42')).toBeTypeOf('function');
  });
});
