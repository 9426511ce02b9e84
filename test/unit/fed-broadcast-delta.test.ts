// The global model to the sites as int8 deltas over a real relay (issue 18): every site trains
// each round on exactly the relay's reference model (same checksum), ends bit-identical to the
// relay's final model, downloads about a quarter of fp32 after the first round, and a site that
// lost what it held is sent the whole model instead of training on a wrong one.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../src/node/relay/server.ts';
import { SiteClient, type SiteResult } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import { Coordinator } from '../../src/fed/coordinator.ts';
import { modelChecksum } from '../../src/fed/global-delta.ts';
import { encodeWeights } from '../../src/model/weights-codec.ts';
import type { FederationConfig, Message } from '../../src/fed/protocol.ts';
import type { NamedWeights, WeightSpec } from '../../src/model/named-weights.ts';
import { MockTrainer } from './helpers/mock-site.ts';

const layout: WeightSpec = [
  { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [32, 16, 3, 3, 3] }, // 55 KiB in fp32: headers are small beside it
  { name: 'encoder.stages.0.0.convs.0.norm.weight', shape: [8] },
  { name: 'decoder.seg_layers.0.weight', shape: [3, 8, 1, 1, 1] },
];
const values = layout.reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);

/** Records the checksum of the model it is given each round. */
class RecordingTrainer extends MockTrainer {
  readonly trainedOn = new Map<number, string>();
  override async loadShared(shared: NamedWeights) {
    this.lastShared = modelChecksum(shared);
    await super.loadShared(shared);
  }
  lastShared?: string;
  override async train(round: number) {
    this.trainedOn.set(round, this.lastShared!);
    return super.train(round);
  }
}

let relay: Relay | undefined;
let dir: string | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const config = (over: Partial<FederationConfig> = {}): FederationConfig => ({
  method: 'fedavg',
  configuration: '3d_fullres',
  rounds: 5,
  itersPerRound: 1,
  minSites: 3,
  roundDeadlineMs: 60_000,
  weighting: 'uniform',
  encoding: 'int8',
  broadcast: 'int8',
  ...over,
});

describe('delta broadcast over the relay', () => {
  it('int8: five rounds, every site trains on the same model each round and ends bit-identical to the relay; a site that lost its model is resynced', async () => {
    dir = mkdtempSync(join(tmpdir(), 'relay-delta-'));
    const logs: string[] = [];
    relay = await startRelay({
      dataDir: dir,
      log: (l) => logs.push(l),
      config: { ...config(), expectedSites: 3, token: 'secret' },
    });
    const r = relay;
    const trainers = [1, 2, 3].map((s) => new RecordingTrainer(layout, s));
    const clients = trainers.map(
      (t, i) =>
        new SiteClient({
          connect: wsConnect(r.wsUrl, WebSocket),
          token: 'secret',
          siteName: `site${i + 1}`,
          trainer: t,
        }),
    );
    // Site 3 forgets the model it holds before round 3's delta arrives (as a reloaded page would).
    trainers[2].onTrain = (round) => {
      if (round === 2) (clients[2] as unknown as { held?: unknown }).held = undefined;
    };
    const results: SiteResult[] = await Promise.all(clients.map((c) => c.run()));

    const g = r.coordinator.global!;
    for (const [i, res] of results.entries()) {
      expect(res.rounds).toBe(5);
      for (const [name, t] of g)
        expect(
          res.global.get(name)!.data.every((v, k) => Object.is(v, t.data[k])),
          `site ${i + 1}: '${name}'`,
        ).toBe(true);
      expect(trainers[i].trained).toEqual([1, 2, 3, 4, 5]);
    }
    // Every round, all sites trained on one model.
    for (let round = 1; round <= 5; round++)
      expect(new Set(trainers.map((t) => t.trainedOn.get(round))).size).toBe(1);
    expect(logs.some((l) => /site3 asked for the whole model/.test(l))).toBe(true);
    // Downloads (a round's model arrives while the site is still in the previous round's traffic
    // bucket): round 1 is the whole fp32 model; later rounds a quarter plus headers.
    const fp32 = 4 * values;
    const site1 = results[0].traffic;
    expect(site1.find((t) => t.round === 0)!.received).toBeGreaterThan(fp32);
    for (const t of site1.filter((x) => x.round >= 1 && x.round < 5))
      expect(t.received / fp32).toBeLessThan(0.3);
    // The final model is within int8 error feedback of FedAvg, not a copy of the initial one.
    expect(modelChecksum(g)).not.toBe(trainers[0].trainedOn.get(1));
  });
});

describe('delta broadcast in the coordinator', () => {
  it('refuses an update trained from another model; a hello holding an unknown model gets the whole model', () => {
    let now = 0;
    let n = 0;
    const c = new Coordinator({
      config: { ...config({ minSites: 2 }), expectedSites: 2, token: 't' },
      now: () => now,
      newSiteId: () => `s${++n}`,
    });
    const hello = (name: string, holds?: string, siteId?: string) =>
      c.handle(undefined, {
        type: 'hello',
        token: 't',
        siteName: name,
        numCases: 1,
        ...(siteId ? { siteId } : {}),
        ...(holds ? { holds } : {}),
      });
    const a = hello('a').siteId!;
    const b = hello('b').siteId!;
    for (const id of [a, b]) c.handle(id, { type: 'spec', spec: layout });
    const w: NamedWeights = new Map(
      layout.map((e) => [
        e.name,
        { shape: e.shape, data: new Float32Array(e.shape.reduce((x, y) => x * y, 1)).fill(0.5) },
      ]),
    );
    const init = encodeWeights(w, 'fp32');
    const opened = c.handle(
      a,
      { type: 'update', round: 0, numCases: 1, metrics: {}, tensors: init.entries },
      init.payload,
    ).out;
    const round1 = opened.find((o) => o.to === a && o.message.type === 'round')!.message as Extract<
      Message,
      { type: 'round' }
    >;
    expect(round1.base).toBeUndefined(); // the first round is the whole model
    expect(round1.model).toBe(modelChecksum(w));
    const delta = encodeWeights(
      new Map(
        layout.map((e) => [
          e.name,
          { shape: e.shape, data: new Float32Array(w.get(e.name)!.data.length).fill(0.01) },
        ]),
      ),
      'int8',
    );
    const send = (base?: string) =>
      c.handle(
        b,
        {
          type: 'update',
          round: 1,
          numCases: 1,
          metrics: {},
          tensors: delta.entries,
          ...(base ? { base } : {}),
        },
        delta.payload,
      ).out[0].message as Extract<Message, { type: 'update-result' }>;
    expect(send('deadbeef')).toMatchObject({
      accepted: false,
      reason: /trained from model deadbeef/,
    });
    expect(send()).toMatchObject({ accepted: false, reason: /unnamed/ });
    // Site a reconnects claiming a model the relay never sent: it gets the whole model again.
    now++;
    const back = hello('a', '0badf00d', a).out.find((o) => o.message.type === 'round')!
      .message as Extract<Message, { type: 'round' }>;
    expect(back.base).toBeUndefined();
    expect(back.tensors.length).toBe(layout.length);
    // Holding the round's model: an empty delta, nothing to download.
    const same = hello('a', round1.model, a).out.find((o) => o.message.type === 'round')!
      .message as Extract<Message, { type: 'round' }>;
    expect(same).toMatchObject({ base: round1.model, model: round1.model, tensors: [] });
  });
});
