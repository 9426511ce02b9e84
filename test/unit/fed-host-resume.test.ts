// A workshop host tab that reloads mid-federation: its FederationHost saves to IndexedDB
// (fake-indexeddb) after every phase and round; the "reloaded" tab restores a new host from the
// saved record, the same sites reconnect by themselves (same site ids, same keys) and the
// federation completes with exactly the global weights of an uninterrupted run.
import { describe, expect, it } from 'vitest';
import { FederationHost, type HostOptions } from '../../src/fed/host.ts';
import { SiteClient, type Connect, type SiteResult } from '../../src/fed/client.ts';
import { ephemeralIdentity } from '../../src/fed/identity/site-key.ts';
import type { CoordinatorSnapshot } from '../../src/fed/coordinator.ts';
import type { NamedWeights, WeightSpec } from '../../src/model/named-weights.ts';
import { openStore } from '../../src/store/db.ts';
import { HostedFederationWriter, loadHostedFederation } from '../../src/fed/hosted-state.ts';
import { hostedRows } from '../../src/store/hosted-federation.ts';
import { privacyConfig } from '../../src/fed/secagg/config.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import { chunkedConnection } from './helpers/fake-channel.ts';
import { freshStore, noEnv } from './store-helpers.ts';

const layout: WeightSpec = [
  { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [8, 4, 3, 3, 3] },
  { name: 'decoder.seg_layers.0.weight', shape: [3, 8, 1, 1, 1] },
];
const CODE = 'wk42';
/**
 * A secure-aggregation phase's deadline: never reached here (every site answers at once; the
 * whole file runs in about a second). A short one is the only wall-clock budget in these tests a
 * starved test process could overrun: the phase would then fail and be retried, and the
 * 'at-start' case asserts one attempt per round.
 */
const PHASE_MS = 60_000;
/** FFE in the clear, or FedAvg under secure aggregation (no DP noise, so runs are comparable bit for bit). */
type Mode = false | true | 'at-start';
function config(secure: Mode = false): HostOptions['config'] {
  const base = {
    configuration: '3d_fullres' as const,
    rounds: 3,
    itersPerRound: 1,
    minSites: 2,
    roundDeadlineMs: 60_000,
    weighting: 'uniform' as const,
    encoding: 'fp32' as const,
    expectedSites: 2,
    token: CODE,
  };
  if (secure === 'at-start') return { ...base, method: 'fedavg' };
  return secure
    ? { ...base, method: 'fedavg', privacy: privacyConfig(2, base, { phaseDeadlineMs: PHASE_MS }) }
    : { ...base, method: 'ffe' };
}
/** The workshop host's way: secure aggregation asked for, its config made at start for the sites present. */
const atStart = (secure: Mode): Partial<HostOptions> =>
  secure === 'at-start' ? { privacyAtStart: { phaseDeadlineMs: PHASE_MS } } : {};
const merge = (fps: Record<string, unknown>[], w: number[]) => ({
  merged: fps.length,
  cases: w.reduce((a, b) => a + b, 0),
});

/**
 * The signalling server's view: sites reach whichever host holds the code now, over chunked
 * in-memory data channels; with no host (the tab is reloading) a connect fails, as PeerJS'
 * 'peer-unavailable' does, and the client retries with backoff.
 */
function switchboard() {
  const board = { host: undefined as FederationHost | undefined, connects: 0 };
  const connect: Connect = async (h) => {
    const host = board.host;
    if (!host) throw new Error('no workshop is hosted with this code');
    board.connects++;
    return chunkedConnection(host, h);
  };
  return { board, connect };
}

/**
 * The sites, joining one after the other: the first to join gives the initial model, so a fixed
 * join order makes runs comparable bit for bit.
 */
async function sites(
  board: { host?: FederationHost },
  connect: Connect,
  trainers: MockTrainer[],
  secure: Mode = false,
) {
  const identities = trainers.map(() => ephemeralIdentity());
  const clients = trainers.map(
    (t, i) =>
      new SiteClient({
        connect,
        token: CODE,
        siteName: `laptop-${i}`,
        trainer: t,
        identity: () => identities[i],
        hideCaseCount: !!secure,
        reconnect: { initialMs: 5, maxMs: 40, maxTries: 200 },
      }),
  );
  const runs: Array<Promise<SiteResult>> = [];
  for (const c of clients) {
    runs.push(c.run());
    // (No host for a moment: it is reloading.)
    while ((board.host?.coordinator.roster().length ?? 0) < runs.length)
      await new Promise((ok) => setTimeout(ok, 2));
  }
  return { clients, identities, runs };
}

const trainersFor = () => [new MockTrainer(layout, 1, 4), new MockTrainer(layout, 2, 6)];

function sameWeights(a: NamedWeights, b: NamedWeights): boolean {
  return (
    a.size === b.size &&
    [...a].every(([k, t]) =>
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(
        Buffer.from(b.get(k)!.data.buffer, b.get(k)!.data.byteOffset, b.get(k)!.data.byteLength),
      ),
    )
  );
}

async function uninterrupted(
  secure: Mode = false,
): Promise<{ global: NamedWeights; results: SiteResult[] }> {
  const { board, connect } = switchboard();
  board.host = new FederationHost({
    config: config(secure),
    aggregateFingerprints: merge,
    ...atStart(secure),
  });
  const { runs } = await sites(board, connect, trainersFor(), secure);
  const results = await Promise.all(runs);
  return { global: board.host.coordinator.global!, results };
}

/**
 * Runs the federation with a host tab that dies when `dieWhen` says so (given the snapshot it is
 * saving, or a site starting to train a round), then resumes from IndexedDB in a "reloaded" tab.
 */
async function withReload(
  dieWhen: {
    saving?: (s: CoordinatorSnapshot) => boolean;
    training?: { site: number; round: number };
  },
  secure: Mode = false,
) {
  const { db, factory } = await freshStore();
  const { board, connect } = switchboard();
  let alive = true;
  const writer = new HostedFederationWriter(hostedRows(db), CODE, CODE);
  const die = () => {
    alive = false;
    // The tab is gone: its data channels close, nothing more leaves it.
    setTimeout(() => first.close(), 0);
    board.host = undefined;
  };
  const first = new FederationHost({
    config: config(secure),
    aggregateFingerprints: merge,
    ...atStart(secure),
    persist: (s) => {
      // A dead tab writes nothing; one dying while it saves never finishes that save.
      if (alive && dieWhen.saving?.(s)) die();
      return alive ? writer.persist(s) : new Promise<void>(() => undefined);
    },
  });
  board.host = first;
  const trainers = trainersFor();
  let savedAtReload: CoordinatorSnapshot | undefined;
  if (dieWhen.training) {
    const { site, round } = dieWhen.training;
    trainers[site].onTrain = async (r) => {
      if (r === round && alive) die();
    };
  }
  const rosterBefore = new Promise<Array<{ siteId: string; fingerprint?: string }>>((ok) => {
    const t = setInterval(() => {
      if (
        first.coordinator.roster().length === 2 &&
        first.coordinator.roster().every((x) => x.fingerprint)
      ) {
        clearInterval(t);
        ok(first.coordinator.roster());
      }
    }, 2);
  });
  // The reload: once the old tab is gone, a new page opens the database and restores.
  const waitDead = new Promise<void>((ok) => {
    const t = setInterval(() => {
      if (!alive) {
        clearInterval(t);
        ok();
      }
    }, 2);
  });
  const reloaded = waitDead.then(async () => {
    await writer.flush();
    db.close();
    await new Promise((ok) => setTimeout(ok, 30));
    const page = await openStore({ factory, env: noEnv });
    const saved = (await loadHostedFederation(hostedRows(page), CODE))!;
    savedAtReload = structuredClone(saved.snapshot);
    const host = new FederationHost({
      config: { ...saved.snapshot.config, token: saved.token },
      restored: saved.snapshot,
      aggregateFingerprints: merge,
      persist: new HostedFederationWriter(hostedRows(page), CODE, saved.token).persist,
    });
    board.host = host;
    return host;
  });
  // Started after the watcher above: a host dying while sites join leaves them waiting for the next.
  const { runs } = await sites(board, connect, trainers, secure);
  const results = await Promise.all(runs);
  const second = await reloaded;
  return {
    first,
    second,
    results,
    roster: await rosterBefore,
    savedAtReload: savedAtReload!,
    connect,
    connects: board.connects,
  };
}

describe('workshop host tab reload: resume from IndexedDB', () => {
  it.each([
    ['FFE', false],
    ['secure aggregation', true],
  ])(
    '%s, reloaded after round 1 (a site training round 2): the same sites finish all rounds with the uninterrupted result',
    async (_name, secure) => {
      const ref = await uninterrupted(secure);
      const r = await withReload({ training: { site: 0, round: 2 } }, secure);
      expect(r.savedAtReload.phase).toBe('rounds');
      expect(r.savedAtReload.round).toBe(1);
      expect(r.second.coordinator.phase).toBe('done');
      expect(r.second.coordinator.round).toBe(3);
      expect(
        r.second.coordinator.snapshot.history.map((h) => [h.round, h.contributors.length]),
      ).toEqual([
        [1, 2],
        [2, 2],
        [3, 2],
      ]);
      expect(r.second.coordinator.snapshot.config.privacy !== undefined).toBe(secure);
      // The same sites (ids and keys bound before the reload), no new ones.
      expect(
        r.second.coordinator
          .roster()
          .map((x) => [x.siteId, x.fingerprint])
          .sort(),
      ).toEqual(r.roster.map((x) => [x.siteId, x.fingerprint]).sort());
      expect(r.results.map((x) => x.siteId).sort()).toEqual(r.roster.map((x) => x.siteId).sort());
      expect(r.connects).toBeGreaterThanOrEqual(4);
      // Bit-identical to the run without a reload, at the host and at every site.
      expect(sameWeights(r.second.coordinator.global!, ref.global)).toBe(true);
      for (const x of r.results) {
        expect(x.rounds).toBe(3);
        expect(sameWeights(x.global, ref.global)).toBe(true);
      }
      // Trust on first use holds across the reload: a different key cannot take a bound site id.
      const impostor = new SiteClient({
        connect: r.connect,
        token: CODE,
        siteName: 'laptop-0',
        siteId: r.roster[0].siteId,
        trainer: new MockTrainer(layout, 1, 4),
        identity: () => ephemeralIdentity(),
        reconnect: { initialMs: 1, maxMs: 1, maxTries: 0 },
      });
      await expect(impostor.run()).rejects.toThrow(/bound to another key/);
    },
  );

  it('dies while saving the close of round 1: no site saw round 2, the resumed host re-opens round 1 and finishes the same', async () => {
    const ref = await uninterrupted();
    const r = await withReload({ saving: (s) => s.phase === 'rounds' && s.round === 1 });
    // The save of round 1 never completed: the reloaded tab starts from the initial model.
    expect(r.savedAtReload.phase).toBe('rounds');
    expect(r.savedAtReload.round).toBe(0);
    expect(r.second.coordinator.snapshot.history.map((h) => h.round)).toEqual([1, 2, 3]);
    expect(sameWeights(r.second.coordinator.global!, ref.global)).toBe(true);
    for (const x of r.results) expect(sameWeights(x.global, ref.global)).toBe(true);
  });

  it('dies in the join phase of a secure workshop (config to be fixed at start): the resumed host still starts it secure', async () => {
    const ref = await uninterrupted('at-start');
    // The save of the second site's key binding is the last: the federation would start right after it.
    const r = await withReload(
      { saving: (s) => s.phase === 'join' && s.sites.length === 2 && s.sites.every((x) => x.key) },
      'at-start',
    );
    expect(r.savedAtReload.phase).toBe('join');
    expect(r.savedAtReload.config.privacy).toBeUndefined();
    expect(r.savedAtReload.privacyAtStart).toEqual({ phaseDeadlineMs: PHASE_MS });
    // The reloaded host was given no privacy option: the saved state asked for it.
    expect(r.second.coordinator.snapshot.config.privacy).toMatchObject({
      secureAggregation: true,
      threshold: 2,
    });
    expect(
      r.second.coordinator.snapshot.history.map((h) => [
        h.round,
        h.contributors.length,
        h.secure?.attempts,
      ]),
    ).toEqual([
      [1, 2, 1],
      [2, 2, 1],
      [3, 2, 1],
    ]);
    expect(sameWeights(r.second.coordinator.global!, ref.global)).toBe(true);
    for (const x of r.results) expect(sameWeights(x.global, ref.global)).toBe(true);
  });

  it('saved before every round a site sees; a finished federation leaves nothing to resume', async () => {
    const { db } = await freshStore();
    const { board, connect } = switchboard();
    // Slow writes (a big model, a busy disk), so a message not held for its save would arrive first.
    const slow = new Proxy(db, {
      get: (t, k) =>
        k === 'put' || k === 'delete'
          ? async (...a: unknown[]) => (
              await new Promise((ok) => setTimeout(ok, 25)),
              (t[k] as (...x: unknown[]) => unknown)(...a)
            )
          : Reflect.get(t, k),
    });
    const writer = new HostedFederationWriter(hostedRows(slow), CODE, CODE);
    const saves: string[] = [];
    board.host = new FederationHost({
      config: config(),
      aggregateFingerprints: merge,
      persist: (s) => (saves.push(`${s.phase}:${s.round}`), writer.persist(s)),
    });
    const trainers = trainersFor();
    // A site about to train round k finds round k - 1 saved: messages wait for the save.
    const seen: string[] = [];
    trainers[1].onTrain = async (round) => {
      const s = (await loadHostedFederation(hostedRows(db), CODE))!.snapshot;
      seen.push(`${round}:${s.phase}:${s.round}`);
    };
    await Promise.all((await sites(board, connect, trainers)).runs);
    await writer.flush();
    expect(seen).toEqual(['1:rounds:0', '2:rounds:1', '3:rounds:2']);
    expect(saves.at(-1)).toBe('done:3');
    expect(await loadHostedFederation(hostedRows(db), CODE)).toBeUndefined();
  });
});
