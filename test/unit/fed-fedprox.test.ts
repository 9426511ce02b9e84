// FedProx: the proximal term's value and gradient, its options on the command line and the wire,
// and a 2-site federation whose local updates it pulls toward the global model.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ProximalTerm } from '../../src/train/proximal.ts';
import { methodFromArgs } from '../../src/cli/method-args.ts';
import { UsageError } from '../../src/cli/args.ts';
import {
  decodeMessage,
  encodeMessage,
  ProtocolError,
  type FederationConfig,
} from '../../src/fed/protocol.ts';
import { startRelay } from '../../src/node/relay/server.ts';
import { SiteClient } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import { mergeSiteFingerprints } from '../../src/fed/ffe-merge.ts';
import { TrainerSite } from '../../src/pipeline/trainer-site.ts';
import { SitePipeline } from '../../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../../src/pipeline/site-store.ts';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import type { NamedWeights } from '../../src/model/named-weights.ts';

beforeAll(async () => {
  await useBackend('cpu');
});

describe('FedProx proximal term', () => {
  it('adds exactly μ/2·‖Δ‖² to the loss and μΔ to the gradient (tfjs cpu)', async () => {
    const w1 = tf.variable(tf.tensor([0.5, -1.25, 2, 0.75], [2, 2]), true, 'prox-w1');
    const w2 = tf.variable(tf.tensor([3, -0.5, 1.5]), true, 'prox-w2');
    const c1 = tf.tensor([1, 2, -3, 0.5], [2, 2]);
    const c2 = tf.tensor([-1, 4, 0.25]);
    const mu = 0.3;
    const prox = new ProximalTerm([w1, w2], mu); // anchored at the values above
    // Move the weights away from the anchor, as local training does.
    const d1 = [0.1, -0.2, 0.05, 0.4];
    const d2 = [-0.3, 0.15, 0.2];
    w1.assign(tf.add(w1, tf.tensor(d1, [2, 2])));
    w2.assign(tf.add(w2, tf.tensor(d2)));
    const base = () =>
      tf.add(tf.sum(tf.mul(tf.square(w1), c1)), tf.sum(tf.mul(w2, c2))) as tf.Scalar;
    const without = tf.variableGrads(base, [w1, w2]);
    const withProx = tf.variableGrads(() => tf.add(base(), prox.loss()) as tf.Scalar, [w1, w2]);
    const sq = [...d1, ...d2].reduce((a, x) => a + x * x, 0);
    const lossDiff = (await withProx.value.data())[0] - (await without.value.data())[0];
    expect(lossDiff).toBeCloseTo((mu / 2) * sq, 5);
    expect(sq).toBeGreaterThan(0);
    for (const [v, d] of [
      [w1, d1],
      [w2, d2],
    ] as const) {
      const g0 = await without.grads[v.name].data();
      const g1 = await withProx.grads[v.name].data();
      for (let i = 0; i < d.length; i++) expect(g1[i] - g0[i]).toBeCloseTo(mu * d[i], 5);
    }
    // μ = 0 adds nothing.
    const zero = new ProximalTerm([w1, w2], 0);
    expect((await zero.loss().data())[0]).toBe(0);
    expect(() => new ProximalTerm([w1], -1)).toThrow(RangeError);
    prox.dispose();
    zero.dispose();
  });
});

describe('FedProx options', () => {
  const config: FederationConfig = {
    method: 'fedprox',
    mu: 0.01,
    configuration: '3d_fullres',
    rounds: 1,
    itersPerRound: 1,
    minSites: 1,
    roundDeadlineMs: 1000,
    weighting: 'uniform',
    encoding: 'fp16',
  };
  const welcome = (c: unknown) =>
    encodeMessage({
      type: 'welcome',
      siteId: 's',
      config: c as FederationConfig,
      phase: 'join',
      round: 0,
    });

  it('--mu is parsed for fedprox (default 0.01) and refused for other methods or when negative', () => {
    expect(methodFromArgs({ method: 'fedprox' })).toEqual({ method: 'fedprox', mu: 0.01 });
    expect(methodFromArgs({ method: 'fedprox', mu: '0.5' })).toEqual({
      method: 'fedprox',
      mu: 0.5,
    });
    expect(() => methodFromArgs({ method: 'ffe', mu: '0.5' })).toThrow(
      /--mu is an option of fedprox/,
    );
    expect(() => methodFromArgs({ method: 'fedprox', mu: '-1' })).toThrow(UsageError);
    expect(() => methodFromArgs({ method: 'fedprox', mu: 'x' })).toThrow(UsageError);
  });

  it('the welcome carries μ, validated: fedprox needs a finite μ ≥ 0, other methods take none', () => {
    const m = decodeMessage(welcome(config)).message;
    expect(m.type === 'welcome' && m.config.mu).toBe(0.01);
    for (const bad of [
      { mu: undefined },
      { mu: -0.1 },
      { mu: 'x' },
      { mu: null },
      { method: 'ffe' },
    ]) {
      expect(() => decodeMessage(welcome({ ...config, ...bad }))).toThrow(ProtocolError);
    }
  });
});

/** A site that records ‖w − w_global‖ over the shared parameters after each round's training. */
class MeasuredSite extends TrainerSite {
  readonly deltaNorms: number[] = [];
  private global?: NamedWeights;
  override async loadShared(shared: NamedWeights): Promise<void> {
    this.global = shared;
    return super.loadShared(shared);
  }
  override async train(round: number): Promise<Record<string, number>> {
    const m = await super.train(round);
    const w = await this.weights();
    let sq = 0;
    for (const [name, g] of this.global!) {
      const x = w.get(name)!.data;
      for (let i = 0; i < x.length; i++) sq += (x[i] - g.data[i]) ** 2;
    }
    this.deltaNorms.push(Math.sqrt(sq));
    return m;
  }
}

async function federate(mu: number) {
  const dir = mkdtempSync(join(tmpdir(), 'sim-fedprox-'));
  const config: FederationConfig = {
    method: 'fedprox',
    mu,
    configuration: '3d_fullres',
    rounds: 2,
    itersPerRound: 3,
    minSites: 2,
    roundDeadlineMs: 600_000,
    weighting: 'uniform',
    encoding: 'fp32',
  };
  const relay = await startRelay({
    dataDir: dir,
    config: { ...config, expectedSites: 2, token: 't' },
    aggregateFingerprints: mergeSiteFingerprints,
    log: () => undefined,
  });
  const sites = DEMO_SITES.slice(0, 2).map((p, i) => {
    const ds = demoDataset(p, i, 3);
    return new MeasuredSite({
      pipeline: new SitePipeline(memoryCasesStore(ds.name, ds.datasetJson, ds.cases)),
      tiny: { patch: 8 },
      valIters: 0,
      evaluate: false,
      seed: 7,
    });
  });
  try {
    const runs = [];
    for (const [i, s] of sites.entries()) {
      runs.push(
        new SiteClient({
          connect: wsConnect(relay.wsUrl, WebSocket as never),
          token: 't',
          siteName: `s${i}`,
          trainer: s,
        }).run(),
      );
      while (relay.coordinator.roster().length <= i) await new Promise((r) => setTimeout(r, 10)); // join in order
    }
    const results = await Promise.all(runs);
    return { sites, results, history: relay.coordinator.snapshot.history };
  } finally {
    await relay.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('FedProx federation (2 tiny sites, cpu)', () => {
  it("completes, and the proximal term pulls each site's update toward the global model", async () => {
    const free = await federate(0);
    const prox = await federate(50);
    for (const run of [free, prox]) {
      expect(run.history.map((h) => h.contributors.length)).toEqual([2, 2]);
      expect(
        run.results.every(
          (r) => r.rounds === 2 && r.shared.length === run.sites[0].trainer!.net.specs.length,
        ),
      ).toBe(true);
    }
    for (const [i, s] of prox.sites.entries()) {
      const f = free.sites[i].deltaNorms;
      expect(s.deltaNorms).toHaveLength(2);
      expect(f).toHaveLength(2);
      // Same seeds and data: round 1 starts from the same global model in both runs.
      for (let r = 0; r < 2; r++) {
        expect(f[r]).toBeGreaterThan(0);
        expect(s.deltaNorms[r]).toBeLessThan(f[r]);
      }
    }
    console.log(
      '‖Δ‖ per site and round, μ = 0 vs μ = 50:',
      free.sites.map((s) => s.deltaNorms.map((x) => x.toPrecision(4))),
      prox.sites.map((s) => s.deltaNorms.map((x) => x.toPrecision(4))),
    );
    [...free.sites, ...prox.sites].forEach((s) => s.trainer!.dispose());
  }, 300_000);
});

describe('fednnunet relay/simulate --method fedprox', () => {
  // The full federation is tested in-process above (the same relay, SiteClient and TrainerSite
  // that `simulate` runs); here, that both commands parse --mu from the table and check it.
  const bin = 'bin/fednnunet.js';
  it('lists fedprox and --mu in help; --mu with another method, or a bad μ, is a usage error (exit 2)', () => {
    for (const cmd of ['relay', 'simulate']) {
      const help = spawnSync(process.execPath, [bin, cmd, '--help'], { encoding: 'utf8' });
      expect(help.status).toBe(0);
      expect(help.stdout).toMatch(/fedprox .*--mu/);
    }
    const sim = ['simulate', '--sites', 'A', 'B', '--rounds', '1', '--iters', '1'];
    for (const [args, why] of [
      [
        [...sim, '--method', 'asym', '--mu', '0.5'],
        /--mu is an option of fedprox, not of --method asym/,
      ],
      [[...sim, '--method', 'fedprox', '--mu=-1'], /--mu must be a number ≥ 0/],
      [[...sim, '--method', 'fedprox', '--mu', 'lots'], /--mu must be a number ≥ 0/],
      [['relay', '--method', 'ffe', '--mu', '0.5'], /--mu is an option of fedprox/],
    ] as const) {
      const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(why);
    }
  }, 120_000);
});
