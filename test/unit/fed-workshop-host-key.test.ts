// Workshop host identity (issue 15 item 5): the join link pins the host tab's key fingerprint, and a
// participant sends nothing (no hello, no fingerprint, no update) until the host it reached proved
// that key by signing the participant's challenge. Whoever takes the workshop code's PeerJS id
// after the host tab left (here: the in-memory switchboard hands the code to another host) cannot.
import { describe, expect, it } from 'vitest';
import { FederationHost, type HostOptions } from '../../src/fed/host.ts';
import { SiteClient, type Connect, type SiteResult } from '../../src/fed/client.ts';
import { ephemeralIdentity, type SiteIdentity } from '../../src/fed/identity/site-key.ts';
import { isChallenge } from '../../src/fed/identity/envelope.ts';
import {
  HostKeyRefused,
  hostChallenge,
  isHostChallenge,
  isHostProof,
  signHostProof,
  verifyHostProof,
} from '../../src/fed/identity/host-proof.ts';
import {
  HostedFederationWriter,
  loadHostedFederation,
  type HostedRecordStore,
} from '../../src/fed/hosted-state.ts';
import { pinnedHostKey, workshopJoinLink, WorkshopLinkError } from '../../src/fed/workshop-link.ts';
import type { WeightSpec } from '../../src/model/named-weights.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import { chunkedConnection } from './helpers/fake-channel.ts';

const CODE = 'wk9';
const layout: WeightSpec = [{ name: 'decoder.seg_layers.0.weight', shape: [3, 8, 1, 1, 1] }];
const config: HostOptions['config'] = {
  method: 'fedavg',
  configuration: '3d_fullres',
  rounds: 2,
  itersPerRound: 1,
  minSites: 2,
  roundDeadlineMs: 60_000,
  weighting: 'uniform',
  encoding: 'fp32',
  expectedSites: 2,
  token: CODE,
};

/**
 * The signalling server's view: a connect reaches whichever host holds the code now (none: fails,
 * as PeerJS' 'peer-unavailable'). Records every frame each site handed to its link, per host.
 */
function switchboard() {
  const board = {
    host: undefined as FederationHost | undefined,
    sent: new Map<FederationHost, Uint8Array[]>(),
  };
  const connect: Connect = async (h) => {
    const host = board.host;
    if (!host) throw new Error('no workshop is hosted with this code');
    const t = chunkedConnection(host, h);
    const log = board.sent.get(host) ?? [];
    board.sent.set(host, log);
    return { send: (b) => (log.push(b.slice()), t.send(b)), close: () => t.close() };
  };
  return { board, connect };
}

function sites(connect: Connect, hostKey: string | undefined, n = 2, maxTries = 200) {
  const trainers = Array.from({ length: n }, (_, i) => new MockTrainer(layout, i + 1, 3 + i));
  const identities = trainers.map(() => ephemeralIdentity());
  const clients = trainers.map(
    (trainer, i) =>
      new SiteClient({
        connect,
        token: CODE,
        siteName: `laptop-${i}`,
        trainer,
        identity: () => identities[i],
        hostKey,
        reconnect: { initialMs: 5, maxMs: 20, maxTries },
      }),
  );
  const runs = clients.map((c) => c.run());
  for (const r of runs) r.catch(() => undefined);
  return { clients, runs };
}

const host = (identity: SiteIdentity | undefined, extra: Partial<HostOptions> = {}) =>
  new FederationHost({ config, identity, ...extra });

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 5000 && !cond(); i++) await new Promise((ok) => setTimeout(ok, 2));
  if (!cond()) throw new Error('timed out');
}

describe('workshop host key', () => {
  it('a participant refuses an impostor host (another key) and sends it nothing but its challenge', async () => {
    const genuine = await ephemeralIdentity();
    const { board, connect } = switchboard();
    const impostor = host(await ephemeralIdentity());
    board.host = impostor;
    const { runs } = sites(connect, genuine.fingerprint);
    for (const r of runs) await expect(r).rejects.toThrow(HostKeyRefused);
    await expect(runs[0]).rejects.toThrow(
      new RegExp(`not the key in the join link \\(${genuine.fingerprint}\\)`),
    );
    // Each site sent one frame: its random challenge. No hello (name, token, key), nothing else.
    const sent = board.sent.get(impostor)!;
    expect(sent.length).toBe(2);
    expect(sent.every(isHostChallenge)).toBe(true);
    expect(impostor.coordinator.roster()).toEqual([]);
  });

  it('a host without a key to prove (an older app, or a relay) is refused too, with nothing sent', async () => {
    const { board, connect } = switchboard();
    const old = host(undefined);
    board.host = old;
    const { runs } = sites(connect, (await ephemeralIdentity()).fingerprint, 1);
    await expect(runs[0]).rejects.toThrow(/without proving its key/);
    expect(board.sent.get(old)!.every(isHostChallenge)).toBe(true);
    expect(old.coordinator.roster()).toEqual([]);
  });

  it('the genuine host proves its key on every connection; the federation completes', async () => {
    const id = await ephemeralIdentity();
    const { board, connect } = switchboard();
    const h = host(id);
    board.host = h;
    const { runs } = sites(connect, id.fingerprint);
    const results = await Promise.all(runs);
    expect(results.map((r) => r.rounds)).toEqual([2, 2]);
    expect(h.coordinator.phase).toBe('done');
    // Each connection opened with the challenge, then the signed hello.
    const sent = board.sent.get(h)!;
    expect(isHostChallenge(sent[0])).toBe(true);
    expect(sent.filter(isHostChallenge).length).toBe(2);
  });

  it('after the host tab left: its sites refuse an impostor holding the code; the resumed host (same key, saved with its record) passes the key check', async () => {
    const id = await ephemeralIdentity();
    const rows = new Map<string, unknown>();
    const db: HostedRecordStore = {
      get: async (c) => rows.get(c),
      getAll: async () => [...rows.values()],
      put: async (r) => void rows.set(r.code, structuredClone(r)),
      delete: async (c) => void rows.delete(c),
    };
    const writer = new HostedFederationWriter(db, CODE, CODE, Date.now, id.fingerprint);
    const { board, connect } = switchboard();
    const first = host(id, { persist: writer.persist });
    board.host = first;
    // Site 0 keeps the code's holder honest: it pins the genuine key. It joins, then the host tab goes.
    const a = sites(connect, id.fingerprint, 2);
    await until(() => first.coordinator.phase === 'rounds' && first.coordinator.round >= 1);
    await writer.flush();
    board.host = undefined;
    first.close();
    // Someone else registers the code (another browser profile: another key), hosting from nothing.
    const impostor = host(await ephemeralIdentity());
    board.host = impostor;
    for (const r of a.runs) await expect(r).rejects.toThrow(HostKeyRefused);
    expect(board.sent.get(impostor)!.every(isHostChallenge)).toBe(true);
    expect(impostor.coordinator.roster()).toEqual([]);

    // The same again, but the genuine host resumes (same profile, same key) from its saved record.
    const saved = (await loadHostedFederation(db, CODE))!;
    expect(saved.hostKey).toBe(id.fingerprint);
    const { board: b2, connect: c2 } = switchboard();
    const second = host(id, {
      restored: saved.snapshot,
      config: { ...saved.snapshot.config, token: saved.token },
    });
    b2.host = second;
    // The sites of the first run failed; new clients for the same sites would rejoin with their ids.
    // Here: two fresh sites cannot join a started federation, so check the proof passes instead:
    // they get past the key check and are refused by the coordinator ("already started").
    const late = sites(c2, id.fingerprint, 1, 0);
    await expect(late.runs[0]).rejects.toThrow(/already started/);
  });

  it('a resumed host continues with its sites (same key): they reconnect, prove nothing, and finish', async () => {
    const id = await ephemeralIdentity();
    const rows = new Map<string, unknown>();
    const db: HostedRecordStore = {
      get: async (c) => rows.get(c),
      getAll: async () => [...rows.values()],
      put: async (r) => void rows.set(r.code, structuredClone(r)),
      delete: async (c) => void rows.delete(c),
    };
    const writer = new HostedFederationWriter(db, CODE, CODE, Date.now, id.fingerprint);
    const { board, connect } = switchboard();
    const first = host(id, { persist: writer.persist });
    board.host = first;
    const { runs } = sites(connect, id.fingerprint, 2);
    await until(() => first.coordinator.phase === 'rounds' && first.coordinator.round >= 1);
    await writer.flush();
    board.host = undefined;
    first.close();
    await new Promise((ok) => setTimeout(ok, 20));
    const saved = (await loadHostedFederation(db, CODE))!;
    const second = host(id, {
      restored: saved.snapshot,
      config: { ...saved.snapshot.config, token: saved.token },
    });
    board.host = second;
    const results: SiteResult[] = await Promise.all(runs);
    expect(results.map((r) => r.rounds)).toEqual([2, 2]);
    expect(second.coordinator.phase).toBe('done');
    // The resumed host was asked for its proof on every reconnect, before any hello.
    const sent = board.sent.get(second)!;
    expect(isHostChallenge(sent[0])).toBe(true);
    expect(sent.filter(isHostChallenge).length).toBeGreaterThanOrEqual(2);
  });
});

describe('host proof', () => {
  it('binds both nonces: a proof recorded on one connection fails on another', async () => {
    const id = await ephemeralIdentity();
    const site = hostChallenge();
    const hostNonce = crypto.getRandomValues(new Uint8Array(32));
    const proof = await signHostProof(id, site.nonce, hostNonce);
    expect(isHostProof(proof)).toBe(true);
    expect(isChallenge(proof)).toBe(false);
    await expect(verifyHostProof(proof, site.nonce, hostNonce, id.fingerprint)).resolves.toBe(
      id.fingerprint,
    );
    const other = hostChallenge();
    await expect(verifyHostProof(proof, other.nonce, hostNonce, id.fingerprint)).rejects.toThrow(
      /replayed or forged/,
    );
    await expect(
      verifyHostProof(
        proof,
        site.nonce,
        crypto.getRandomValues(new Uint8Array(32)),
        id.fingerprint,
      ),
    ).rejects.toThrow(/replayed or forged/);
    const flipped = proof.slice();
    flipped[10] ^= 1;
    await expect(verifyHostProof(flipped, site.nonce, hostNonce, id.fingerprint)).rejects.toThrow(
      HostKeyRefused,
    );
  });
});

describe('workshop join link', () => {
  it('carries the code and the host key; a link without the key (an older link) is refused with the reason', async () => {
    const id = await ephemeralIdentity();
    const link = workshopJoinLink('https://10.0.0.5:8080/', 'wk42', id.fingerprint, true);
    const u = new URL(link);
    expect(u.searchParams.get('workshop')).toBe('wk42');
    expect(u.searchParams.get('secure')).toBe('1');
    expect(pinnedHostKey(u.searchParams.get('hostkey'))).toBe(id.fingerprint);
    expect(() => pinnedHostKey(null)).toThrow(WorkshopLinkError);
    expect(() => pinnedHostKey('')).toThrow(/no host key .* older version/);
    expect(() => pinnedHostKey('abcd')).toThrow(/malformed/);
  });
});
