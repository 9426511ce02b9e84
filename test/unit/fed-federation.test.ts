// End-to-end federation over real WebSockets on 127.0.0.1: relay + site clients in this process.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../src/node/relay/server.ts';
import { SiteClient, type SiteResult, type Transport } from '../../src/fed/client.ts';
import { signedConnect } from '../../src/fed/identity/signed-transport.ts';
import { ephemeralIdentity } from '../../src/fed/identity/site-key.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import {
  decodeMessage,
  encodeMessage,
  type FederationConfig,
  type Message,
} from '../../src/fed/protocol.ts';
import { encodeWeights } from '../../src/model/weights-codec.ts';
import { crc32 } from '../../src/util/crc32.ts';
import type { WeightSpec } from '../../src/model/named-weights.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import { mergeSiteFingerprints } from '../../src/fed/ffe-merge.ts';
import { readFileSync } from 'node:fs';
import { REFERENCE } from '../paths.ts';

const base: WeightSpec = [
  { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [4, 1, 3, 3, 3] },
  { name: 'encoder.stages.0.0.convs.0.norm.weight', shape: [4] },
  { name: 'decoder.seg_layers.0.weight', shape: [3, 4, 1, 1, 1] },
];

let relay: Relay | undefined;
let dir: string | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function start(
  config: Partial<FederationConfig> & { expectedSites: number },
  merge?: typeof mergeSiteFingerprints,
) {
  dir = mkdtempSync(join(tmpdir(), 'relay-'));
  relay = await startRelay({
    dataDir: dir,
    log: () => undefined,
    config: {
      method: 'ffe',
      configuration: '3d_fullres',
      rounds: 3,
      itersPerRound: 1,
      minSites: 2,
      roundDeadlineMs: 60_000,
      weighting: 'uniform',
      encoding: 'fp32',
      token: 'secret',
      ...config,
    },
    aggregateFingerprints:
      merge ?? ((fps, w) => ({ merged: fps.length, cases: w.reduce((a, b) => a + b, 0) })),
  });
  return relay;
}

function site(r: Relay, trainer: MockTrainer, name: string, token = 'secret') {
  return new SiteClient({ connect: wsConnect(r.wsUrl, WebSocket), token, siteName: name, trainer });
}

/**
 * Starts the sites one after another, each once the relay admitted the one before, so the join
 * order (FFE's merge order; the first site gives the initial weights) is the given order: sites
 * started together join in whichever order their signed hellos arrive.
 */
async function inOrder(r: Relay, clients: SiteClient[]): Promise<Array<Promise<SiteResult>>> {
  const runs: Array<Promise<SiteResult>> = [];
  for (const [i, c] of clients.entries()) {
    const run = c.run();
    run.catch(() => undefined); // the caller awaits it
    runs.push(run);
    for (
      const t0 = Date.now();
      r.coordinator.roster().length <= i;
      await new Promise((ok) => setTimeout(ok, 5))
    ) {
      if (Date.now() - t0 > 10_000) throw new Error(`site ${i + 1} did not join`);
    }
  }
  return runs;
}

describe('federation over the relay', () => {
  it('FFE: every site gets the same aggregate fingerprint and the same final global weights', async () => {
    const r = await start({ expectedSites: 3, method: 'ffe' });
    const trainers = [1, 2, 3].map((s) => new MockTrainer(base, s, s + 2));
    const results = await Promise.all(
      await inOrder(
        r,
        trainers.map((t, i) => site(r, t, `site${i}`)),
      ),
    );
    expect(trainers.map((t) => t.aggregate)).toEqual(
      Array(3).fill({ merged: 3, cases: 3 + 4 + 5 }),
    );
    const g = r.coordinator.global!;
    for (const res of results) {
      expect(res.rounds).toBe(3);
      for (const [name, t] of g) expect([...res.global.get(name)!.data]).toEqual([...t.data]);
    }
    // Every site ends on the global weights (nothing is local under FFE).
    for (const t of trainers)
      for (const [name, x] of t.w) expect([...x.data]).toEqual([...g.get(name)!.data]);
    // Closed form: init = site 1's weights (the first to join); each round w ← w + 0.5·(mean target − w).
    const name = base[2].name;
    const meanTarget = trainers[0].targets
      .get(name)!
      .map((_, i) => trainers.reduce((s, t) => s + t.targets.get(name)![i], 0) / 3);
    const init = new MockTrainer(base, 1);
    await init.prepare(null, {} as FederationConfig);
    const expected = init.w
      .get(name)!
      .data.map((v, i) => meanTarget[i] + (v - meanTarget[i]) * 0.125);
    g.get(name)!.data.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 5));
    expect(r.coordinator.snapshot.history.map((h) => h.closedBy)).toEqual(['all', 'all', 'all']);
  });

  it('AsymFedAvg: exchanges exactly the (name, shape) set shared by all sites; local layers never leave', async () => {
    const r = await start({ expectedSites: 2, method: 'asym', rounds: 2 });
    const a = new MockTrainer(
      [...base, { name: 'encoder.stages.1.0.convs.0.conv.weight', shape: [8, 4, 3, 3, 3] }],
      1,
    );
    const b = new MockTrainer(
      [{ name: base[0].name, shape: [4, 1, 1, 3, 3] }, base[1], base[2]],
      2,
    );
    const [ra, rb] = await Promise.all([site(r, a, 'A').run(), site(r, b, 'B').run()]);
    const shared = [base[1].name, base[2].name];
    expect(ra.shared.map((e) => e.name)).toEqual(shared);
    for (const res of [ra, rb]) {
      const sentTensors = new Set(res.sentLog.flatMap((m) => m.tensors ?? []));
      expect([...sentTensors].sort()).toEqual([...shared].sort());
    }
    // Local layers stay the site's own: A's extra stage and B's anisotropic kernel differ from any global.
    expect(ra.global.has('encoder.stages.1.0.convs.0.conv.weight')).toBe(false);
    expect(a.w.get(base[0].name)!.shape).toEqual([4, 1, 3, 3, 3]);
    expect(b.w.get(base[0].name)!.shape).toEqual([4, 1, 1, 3, 3]);
    expect([...a.w.get(base[2].name)!.data]).toEqual([...b.w.get(base[2].name)!.data]);
  });

  it('FedAvg refuses sites that planned different networks; asym refuses networks sharing nothing', async () => {
    const r = await start({ expectedSites: 2, method: 'fedavg' });
    const a = new MockTrainer(base, 1);
    const b = new MockTrainer(base.slice(1), 2);
    await expect(Promise.all([site(r, a, 'A').run(), site(r, b, 'B').run()])).rejects.toThrow(
      /identical networks/,
    );
    await r.close();
    relay = undefined;
    const r2 = await start({ expectedSites: 2, method: 'asym' });
    const c = new MockTrainer([{ name: 'x', shape: [2] }], 3);
    const d = new MockTrainer([{ name: 'y', shape: [2] }], 4);
    await expect(Promise.all([site(r2, c, 'C').run(), site(r2, d, 'D').run()])).rejects.toThrow(
      /share no parameter/,
    );
  });

  it('FFE with real fingerprints: every site receives the FednnU-Net aggregate of {801, 804}', async () => {
    const r = await start({ expectedSites: 2, method: 'ffe', rounds: 1 }, mergeSiteFingerprints);
    const fp = (id: string) =>
      JSON.parse(readFileSync(`${REFERENCE}/fingerprints/${id}/dataset_fingerprint.json`, 'utf8'));
    const a = new MockTrainer(base, 1, 5);
    const b = new MockTrainer(base, 2, 4);
    a.localFingerprint = async () => fp('Dataset801_PhantomMR');
    b.localFingerprint = async () => fp('Dataset804_PhantomMRsiteB');
    // Join in a fixed order (801 first), as the reference aggregate was made.
    await Promise.all(await inOrder(r, [site(r, a, '801'), site(r, b, '804')]));
    const ref = JSON.parse(
      readFileSync(
        `${REFERENCE}/federated/fed_801_804/aggregated_dataset_fingerprint.json`,
        'utf8',
      ),
    );
    for (const t of [a, b]) {
      const agg = t.aggregate as {
        foreground_intensity_properties_per_channel: Record<string, { max: number }>;
      } & Record<string, unknown>;
      expect(agg.spacings).toEqual(ref.spacings);
      expect(agg.shapes_after_crop).toEqual(ref.shapes_after_crop);
      expect(agg.median_relative_size_after_cropping).toBeCloseTo(
        ref.median_relative_size_after_cropping,
        12,
      );
      expect(agg.foreground_intensity_properties_per_channel['0'].max).toBe(385);
    }
  });

  it('FFE stops with a clear error when a site sends a malformed fingerprint', async () => {
    const r = await start({ expectedSites: 2, method: 'ffe' }, mergeSiteFingerprints);
    const a = new MockTrainer(base, 1);
    const b = new MockTrainer(base, 2);
    a.localFingerprint = async () =>
      JSON.parse(
        readFileSync(
          `${REFERENCE}/fingerprints/Dataset801_PhantomMR/dataset_fingerprint.json`,
          'utf8',
        ),
      );
    b.localFingerprint = async () => ({ spacings: [[1, 1, 'x']] });
    await expect(Promise.all(await inOrder(r, [site(r, a, 'A'), site(r, b, 'B')]))).rejects.toThrow(
      /FFE failed: site 2's fingerprint is malformed/,
    );
  });

  it('refuses a site without the token', async () => {
    const r = await start({ expectedSites: 2 });
    await expect(site(r, new MockTrainer(base, 1), 'intruder', 'wrong').run()).rejects.toThrow(
      /refused.*token/,
    );
  });

  it('a site closing its tab mid-round: the round closes without it and the federation completes', async () => {
    const r = await start({
      expectedSites: 3,
      method: 'fedavg',
      rounds: 3,
      minSites: 2,
      roundDeadlineMs: 60_000,
    });
    const trainers = [1, 2, 3].map((s) => new MockTrainer(base, s));
    const clients = trainers.map((t, i) => site(r, t, `s${i}`));
    trainers[2].onTrain = (round) => {
      if (round === 2) {
        clients[2].stop();
        return new Promise(() => undefined); // the tab is gone: never finishes
      }
    };
    const done = Promise.all(clients.slice(0, 2).map((c) => c.run()));
    void clients[2].run().catch(() => undefined);
    const results = await done;
    expect(results.every((x) => x.rounds === 3)).toBe(true);
    const h = r.coordinator.snapshot.history;
    expect(h.map((x) => x.contributors.length)).toEqual([3, 2, 2]);
  });

  it('a site hanging mid-round while connected: the round closes at the deadline with quorum', async () => {
    const r = await start({
      expectedSites: 3,
      method: 'fedavg',
      rounds: 3,
      minSites: 2,
      roundDeadlineMs: 1500,
    });
    const trainers = [1, 2, 3].map((s) => new MockTrainer(base, s));
    trainers[2].onTrain = (round) => (round >= 2 ? new Promise(() => undefined) : undefined);
    const clients = trainers.map((t, i) => site(r, t, `s${i}`));
    const done = Promise.all(clients.slice(0, 2).map((c) => c.run()));
    void clients[2].run().catch(() => undefined);
    const results = await done;
    clients[2].stop();
    expect(results.every((x) => x.rounds === 3)).toBe(true);
    const h = r.coordinator.snapshot.history;
    expect(h.map((x) => x.closedBy)).toEqual(['all', 'deadline', 'deadline']);
    expect(h.map((x) => x.contributors.length)).toEqual([3, 2, 2]);
  });

  it('rejects NaN, wrong-shape and giant updates with a reason; the others are unaffected', async () => {
    const r = await start({
      expectedSites: 3,
      method: 'fedavg',
      rounds: 2,
      minSites: 2,
      roundDeadlineMs: 2000,
    });
    const good = [1, 2].map((s) => new MockTrainer(base, s));
    // The good sites join first (the first gives the initial weights, which the evil one never sends).
    const goodRuns = await inOrder(
      r,
      good.map((t, i) => site(r, t, `good${i}`)),
    );
    // The third site speaks the protocol by hand (over a correctly signed transport) and misbehaves.
    const replies: Message[] = [];
    const evil = new MockTrainer(base, 9);
    await evil.prepare(null, {} as FederationConfig);
    const onMessage = (d: Uint8Array) => {
      const { message: m } = decodeMessage(d);
      replies.push(m);
      if (m.type === 'welcome') ws.send(encodeMessage({ type: 'spec', spec: base }));
      if (m.type === 'round' && m.round === 1) {
        const nan = new Map(
          [...evil.w].map(([k, t]) => [k, { shape: t.shape, data: t.data.slice() }]),
        );
        // NaN cannot be produced by our encoder; write the raw fp32 bytes directly.
        const enc = encodeWeights(nan, 'fp32');
        new DataView(enc.payload.buffer).setFloat32(0, NaN, true);
        enc.entries[0].crc32 = crc32(enc.payload.subarray(0, enc.entries[0].byteLength));
        ws.send(
          encodeMessage(
            { type: 'update', round: 1, numCases: 1, metrics: {}, tensors: enc.entries },
            enc.payload,
          ),
        );
        const wrong = encodeWeights(
          new Map([
            [base[0].name, { shape: [4, 1, 1, 3, 3], data: new Float32Array(36) }],
            [base[1].name, evil.w.get(base[1].name)!],
            [base[2].name, evil.w.get(base[2].name)!],
          ]),
          'fp32',
        );
        ws.send(
          encodeMessage(
            { type: 'update', round: 1, numCases: 1, metrics: {}, tensors: wrong.entries },
            wrong.payload,
          ),
        );
      }
      if (m.type === 'round' && m.round === 2) {
        const giant = new Map(
          [...evil.w].map(([k, t]) => [k, { shape: t.shape, data: t.data.map((v) => v * 1e4) }]),
        );
        const enc = encodeWeights(giant, 'fp32');
        ws.send(
          encodeMessage(
            { type: 'update', round: 2, numCases: 1, metrics: {}, tensors: enc.entries },
            enc.payload,
          ),
        );
      }
    };
    const ws: Transport = await signedConnect(
      wsConnect(r.wsUrl, WebSocket),
      ephemeralIdentity,
    )({ onMessage, onClose: () => undefined });
    ws.send(encodeMessage({ type: 'hello', token: 'secret', siteName: 'evil', numCases: 1 }));
    const results = await Promise.all(goodRuns);
    ws.close();
    const rejections = replies.filter(
      (m): m is Extract<Message, { type: 'update-result' }> =>
        m.type === 'update-result' && !m.accepted,
    );
    expect(rejections.map((m) => m.reason)).toEqual([
      expect.stringMatching(/NaN/),
      expect.stringMatching(/shape \[4,1,1,3,3\]/),
      expect.stringMatching(/norm .* over 10× the median/),
    ]);
    expect(results.map((x) => x.rounds)).toEqual([2, 2]);
    expect(r.coordinator.snapshot.history.every((h) => h.contributors.length === 2)).toBe(true);
  });
});
