// Workshop host mode without a browser: chunking with back-pressure over a fake data channel, and
// the host tab's coordinator (src/fed/host.ts) federating site clients over in-memory channels.
import { describe, expect, it } from 'vitest';
import { ChannelClosed, ChunkReceiver, ChunkSender } from '../../src/fed/chunked.ts';
import { FederationHost } from '../../src/fed/host.ts';
import { SiteClient, type Connect } from '../../src/fed/client.ts';
import type { WeightSpec } from '../../src/model/named-weights.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import { channelPair, chunkedConnection, MAX_MESSAGE, MAX_QUEUED } from './helpers/fake-channel.ts';

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) b[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  return b;
}

describe('chunked messages with back-pressure', () => {
  it('moves 20 MB and small messages whole and in order without overfilling the channel', async () => {
    const [a, b] = channelPair();
    const got: Uint8Array[] = [];
    const rx = new ChunkReceiver((m) => got.push(m));
    b.onData = (d) => rx.push(d);
    const tx = new ChunkSender(a);
    const msgs = [
      pattern(10, 1),
      pattern(20_000_000, 2),
      new Uint8Array(0),
      pattern(300_000, 3),
      pattern(5, 4),
    ];
    // Sent without awaiting each: the sender serialises them.
    await Promise.all(msgs.map((m) => tx.send(m)));
    await new Promise((ok) => setTimeout(ok, 50));
    expect(got.length).toBe(msgs.length);
    got.forEach((g, i) => expect(Buffer.compare(Buffer.from(g), Buffer.from(msgs[i]))).toBe(0));
    expect(tx.waits).toBeGreaterThan(0);
    expect(a.maxQueued).toBeLessThanOrEqual(1024 * 1024 + 64 * 1024 + 5);
    expect(a.maxQueued).toBeLessThan(MAX_QUEUED);
  });

  it('without chunking the same channel refuses a large message (the limit the chunker exists for)', () => {
    const [a] = channelPair();
    expect(() => a.send(new Uint8Array(MAX_MESSAGE + 1))).toThrow(/too large/);
  });

  it('a closed channel fails the send; the receiver rejects malformed chunk streams', async () => {
    const [a] = channelPair();
    a.close();
    await expect(new ChunkSender(a).send(pattern(10, 1))).rejects.toBeInstanceOf(ChannelClosed);
    const rx = new ChunkReceiver(() => undefined, 100);
    expect(() => rx.push(new Uint8Array([0, 1, 2]))).toThrow(/continuation/);
    expect(() => rx.push(new Uint8Array([1, 200, 0, 0, 0]))).toThrow(/exceeds/);
    expect(() => rx.push(new Uint8Array([7]))).toThrow(/bad chunk/);
  });
});

// A layer big enough that every round message needs many chunks (fp32: 1.2 MB).
const layout: WeightSpec = [
  { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [32, 32, 3, 3, 3] },
  { name: 'encoder.stages.0.0.convs.1.conv.weight', shape: [100, 100, 3, 3, 3] },
  { name: 'decoder.seg_layers.0.weight', shape: [3, 32, 1, 1, 1] },
];

/** A site's Connect over a fresh in-memory channel pair to the host, chunked both ways. */
function connectTo(host: FederationHost, links: { count: number }): Connect {
  return async (h) => {
    links.count++;
    return chunkedConnection(host, h);
  };
}

describe('the workshop host: the coordinator in a tab, sites over data channels', () => {
  it("FFE, 2 rounds: both sites end with the host's global weights; started by the host before the expected count", async () => {
    const changes: string[] = [];
    const host = new FederationHost({
      config: {
        method: 'ffe',
        configuration: '3d_fullres',
        rounds: 2,
        itersPerRound: 1,
        minSites: 3,
        roundDeadlineMs: 60_000,
        weighting: 'uniform',
        encoding: 'fp32',
        expectedSites: 3,
        token: 'WS-1',
      },
      aggregateFingerprints: (fps, w) => ({
        merged: fps.length,
        cases: w.reduce((a, b) => a + b, 0),
      }),
      onChange: () => changes.push(`${host.coordinator.phase}:${host.coordinator.round}`),
    });
    const links = { count: 0 };
    const trainers = [new MockTrainer(layout, 1, 4), new MockTrainer(layout, 2, 6)];
    const clients = trainers.map(
      (t, i) =>
        new SiteClient({
          connect: connectTo(host, links),
          token: 'WS-1',
          siteName: `participant-${i}`,
          trainer: t,
        }),
    );
    const runs = clients.map((c) => c.run());
    // The roster fills; 3 sites were expected, the host starts with the 2 present.
    for (let i = 0; i < 200 && host.coordinator.roster().length < 2; i++)
      await new Promise((ok) => setTimeout(ok, 5));
    // Join order is whichever hello was signed first.
    expect(
      host.coordinator
        .roster()
        .map((s) => [s.siteName, s.connected])
        .sort(),
    ).toEqual([
      ['participant-0', true],
      ['participant-1', true],
    ]);
    // Each participant's key fingerprint is on the host's roster (for comparing out of band).
    const keys = host.coordinator.roster().map((s) => s.fingerprint);
    expect(keys.every((k) => /^[0-9a-f]{4}(:[0-9a-f]{4}){7}$/.test(k ?? ''))).toBe(true);
    expect(new Set(keys).size).toBe(2);
    expect(host.coordinator.phase).toBe('join');
    host.start();
    const results = await Promise.all(runs);
    expect(host.coordinator.phase).toBe('done');
    expect(host.coordinator.round).toBe(2);
    expect(trainers.map((t) => t.aggregate)).toEqual([
      { merged: 2, cases: 10 },
      { merged: 2, cases: 10 },
    ]);
    const g = host.coordinator.global!;
    for (const r of results) {
      expect(r.rounds).toBe(2);
      for (const [name, t] of g)
        expect(
          Buffer.compare(Buffer.from(r.global.get(name)!.data.buffer), Buffer.from(t.data.buffer)),
        ).toBe(0);
    }
    expect(host.coordinator.snapshot.history.map((h) => h.contributors.length)).toEqual([2, 2]);
    expect(links.count).toBe(2);
    expect(changes.at(-1)).toBe('done:2');
  });

  it('refuses a wrong code and a start with nobody there', async () => {
    const host = new FederationHost({
      config: {
        method: 'fedavg',
        configuration: '3d_fullres',
        rounds: 1,
        itersPerRound: 1,
        minSites: 1,
        roundDeadlineMs: 1000,
        weighting: 'uniform',
        encoding: 'fp16',
        expectedSites: 2,
        token: 'right',
      },
    });
    expect(() => host.start()).toThrow(/no site/);
    const client = new SiteClient({
      connect: connectTo(host, { count: 0 }),
      token: 'wrong',
      siteName: 'x',
      trainer: new MockTrainer(layout, 1),
      reconnect: { initialMs: 1, maxMs: 1, maxTries: 0 },
    });
    await expect(client.run()).rejects.toThrow(/token/);
  });
});

describe('a connection that closes right after sending', () => {
  it('its frames still being verified are handled before the disconnect', async () => {
    const { ephemeralIdentity } = await import('../../src/fed/identity/site-key.ts');
    const { decodeChallenge, sealFrame } = await import('../../src/fed/identity/envelope.ts');
    const { encodeMessage } = await import('../../src/fed/protocol.ts');
    const host = new FederationHost({
      config: {
        method: 'fedavg',
        configuration: '3d_fullres',
        rounds: 1,
        itersPerRound: 1,
        minSites: 1,
        roundDeadlineMs: 1000,
        weighting: 'uniform',
        encoding: 'fp16',
        expectedSites: 2,
        token: 'right',
      },
    });
    const sent: Uint8Array[] = [];
    const handlers = host.accept({ send: (b) => void sent.push(b), close: () => undefined });
    const id = await ephemeralIdentity();
    const hello = await sealFrame(
      id,
      decodeChallenge(sent[0]),
      0,
      encodeMessage({ type: 'hello', token: 'right', siteName: 'quick', numCases: 3 }),
      true,
    );
    // The hello arrives and the connection closes in the same tick, while the signature check
    // (asynchronous WebCrypto) is still running.
    handlers.onMessage(hello);
    handlers.onClose();
    await new Promise((r) => setTimeout(r, 200));
    expect(host.coordinator.roster()).toEqual([
      expect.objectContaining({ siteName: 'quick', numCases: 3, connected: false }),
    ]);
    host.close();
  });
});

describe('Coordinator options', () => {
  it('an option passed as undefined takes its default (log, persist, emit)', async () => {
    const { Coordinator } = await import('../../src/fed/coordinator.ts');
    const c = new Coordinator({
      config: {
        method: 'fedavg',
        configuration: '3d_fullres',
        rounds: 1,
        itersPerRound: 1,
        minSites: 1,
        roundDeadlineMs: 1000,
        weighting: 'uniform',
        encoding: 'fp16',
        expectedSites: 1,
        token: 't',
      },
      log: undefined,
      persist: undefined,
      emit: undefined,
    });
    expect(() => c.startNow()).toThrow(/no site/);
    // A refusal is logged: with `log: undefined` spread over the defaults this threw a TypeError.
    const r = c.handle(
      undefined,
      { type: 'hello', token: 'wrong', siteName: 'x', numCases: 1 },
      new Uint8Array(0),
    );
    expect(r.out.map((o) => o.message.type)).toEqual(['refused']);
  });
});
