// The relay's side of fine-tuning (Coordinator `initialWeights` + config.initModel), with stand-in
// sites: the pretrained weights are the first global (no site uploads one), FedAvg refuses sites
// whose network differs from the checkpoint's, AsymFedAvg shares the name-and-shape intersection
// with the checkpoint, and a relay that lacks the weights says so.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../src/node/relay/server.ts';
import { SiteClient } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import type { FederationConfig } from '../../src/fed/protocol.ts';
import type { NamedWeights, WeightSpec } from '../../src/model/named-weights.ts';
import { randomArray } from '../../src/util/rng.ts';
import { MockTrainer } from './helpers/mock-site.ts';

const base: WeightSpec = [
  { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [4, 1, 3, 3, 3] },
  { name: 'encoder.stages.0.0.convs.0.norm.weight', shape: [4] },
  { name: 'decoder.seg_layers.0.weight', shape: [3, 4, 1, 1, 1] },
];
const weightsOf = (spec: WeightSpec, seed: number): NamedWeights =>
  new Map(
    spec.map((t, i) => [
      t.name,
      {
        shape: [...t.shape],
        data: randomArray(
          t.shape.reduce((a, b) => a * b, 1),
          seed + i,
        ),
      },
    ]),
  );
const INIT = { name: 'pretrained', labels: { background: 0, organ: 1, lesion: 2 } };

let relay: Relay | undefined;
let dir: string | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function run(
  method: FederationConfig['method'],
  initialWeights: NamedWeights | undefined,
  trainers: MockTrainer[],
) {
  dir = mkdtempSync(join(tmpdir(), 'relay-init-'));
  const logs: string[] = [];
  relay = await startRelay({
    dataDir: dir,
    log: (l) => logs.push(l),
    config: {
      method,
      configuration: '3d_fullres',
      rounds: 1,
      itersPerRound: 1,
      minSites: trainers.length,
      roundDeadlineMs: 60_000,
      weighting: 'uniform',
      encoding: 'fp32',
      token: 's',
      expectedSites: trainers.length,
      initModel: INIT,
      ...(method === 'fedprox' ? { mu: 0.01 } : {}),
    },
    aggregateFingerprints: (fps) => ({ merged: fps.length }),
    initialWeights,
  });
  const r = relay;
  const results = Promise.all(
    trainers.map((t, i) =>
      new SiteClient({
        connect: wsConnect(r.wsUrl, WebSocket),
        token: 's',
        siteName: `site${i + 1}`,
        trainer: t,
      }).run(),
    ),
  );
  return { results, logs };
}

describe('a federation from initial weights (relay side)', () => {
  it('FedAvg: the checkpoint is the first global; one round = init + ½(mean target − init)', async () => {
    const init = weightsOf(base, 77);
    const trainers = [1, 2].map((s) => new MockTrainer(base, s));
    const { results, logs } = await run('fedavg', init, trainers);
    const rs = await results;
    // No site uploaded round 0 (its own weights): only round-1 updates left the sites.
    for (const r of rs)
      expect(r.sentLog.filter((m) => m.type === 'update').map((m) => m.round)).toEqual([1]);
    for (const { name } of base) {
      const g = relay!.coordinator.global!.get(name)!.data;
      const i0 = init.get(name)!.data;
      g.forEach((v, i) => {
        const meanT = (trainers[0].targets.get(name)![i] + trainers[1].targets.get(name)![i]) / 2;
        expect(v).toBeCloseTo(i0[i] + 0.5 * (meanT - i0[i]), 5);
      });
    }
    expect(logs.join('\n')).toMatch(
      /initial global model: pretrained \(3 of its 3 tensors shared\)/,
    );
  });

  it('FedAvg: a site whose network differs from the checkpoint’s is refused in words', async () => {
    const init = weightsOf([{ ...base[0], shape: [8, 1, 3, 3, 3] }, base[1], base[2]], 5);
    const { results } = await run(
      'fedavg',
      init,
      [1, 2].map((s) => new MockTrainer(base, s)),
    );
    await expect(results).rejects.toThrow(
      /initial model pretrained has another network than site1, site2 .*use asym/,
    );
  });

  it('AsymFedAvg: shares the tensors whose name and shape match the checkpoint', async () => {
    const init = weightsOf([{ ...base[0], shape: [8, 1, 3, 3, 3] }, base[1], base[2]], 5);
    const trainers = [1, 2].map((s) => new MockTrainer(base, s));
    const { results } = await run('asym', init, trainers);
    const rs = await results;
    for (const r of rs) expect(r.shared.map((t) => t.name)).toEqual([base[1].name, base[2].name]);
  });

  it('a relay without the weights of config.initModel stops the federation in words', async () => {
    const { results } = await run(
      'fedavg',
      undefined,
      [1, 2].map((s) => new MockTrainer(base, s)),
    );
    await expect(results).rejects.toThrow(
      /starts from pretrained, but this relay was started without its weights/,
    );
  });
});
