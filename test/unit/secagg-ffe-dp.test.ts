// Secure FFE (the private summary as a secure sum), AsymFedAvg and case weighting under secure
// aggregation, the DP noise the aggregate carries, and the privacy parameters the relay picks.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  aggregatePrivateSummaries,
  fingerprintFromSummary,
  summarizeFingerprint,
} from '../../src/fingerprint/ffe.ts';
import type { DatasetFingerprint } from '../../src/fingerprint/types.ts';
import { planExperiment } from '../../src/plan/planner.ts';
import type { DatasetJson } from '../../src/plan/types.ts';
import type { FederationConfig, Message } from '../../src/fed/protocol.ts';
import {
  decodeSummarySum,
  encodeSummary,
  ffeLayout,
  fixedPoint,
} from '../../src/fed/secagg/ffe-vector.ts';
import { addInto } from '../../src/fed/secagg/quantize.ts';
import { defaultThreshold, privacyConfig } from '../../src/fed/secagg/config.ts';
import { chooseFracBits, decodeSum, encodeSiteVector } from '../../src/fed/secagg/vector.ts';
import { epsilon, epsilonOfRounds, noiseMultiplier } from '../../src/fed/secagg/dp.ts';
import type { NamedWeights, WeightSpec } from '../../src/model/named-weights.ts';
import { REFERENCE } from '../paths.ts';
import { readJson } from './plan-fixtures.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import { frameOf, memFederation } from './helpers/mem-federation.ts';

const fingerprint = (d: string) =>
  readJson<DatasetFingerprint>(join(REFERENCE, 'fingerprints', d, 'dataset_fingerprint.json'));
const datasetJson = (d: string) => readJson<DatasetJson>(join(REFERENCE, 'raw', d, 'dataset.json'));
const COMBOS = [
  ['Dataset801_PhantomMR', 'Dataset804_PhantomMRsiteB'],
  ['Dataset801_PhantomMR', 'Dataset802_PhantomCTaniso', 'Dataset804_PhantomMRsiteB'],
  ['Dataset804_PhantomMRsiteB', 'Dataset802_PhantomCTaniso', 'Dataset801_PhantomMR'],
];

function secureSum(vectors: Uint32Array[]): Uint32Array {
  const s = new Uint32Array(vectors[0].length);
  for (const v of vectors) addInto(s, v);
  return s;
}

describe('secure FFE: the private summary as a fixed-length sum', () => {
  it.each(COMBOS)(
    '%s + %s…: the summed vector decodes to the private merge; identical plans for every site',
    (...clients: string[]) => {
      const summaries = clients.map((d) => summarizeFingerprint(fingerprint(d)));
      const layout = ffeLayout(3072, 4);
      const got = decodeSummarySum(
        secureSum(summaries.map((s) => encodeSummary(s, layout))),
        layout,
      );
      const want = aggregatePrivateSummaries(summaries);
      expect(got.axes).toEqual(want.axes);
      const [g, w] = [
        got.foreground_intensity_properties_per_channel['0'],
        want.foreground_intensity_properties_per_channel['0'],
      ];
      expect(Object.keys(g)).toEqual(Object.keys(w));
      expect([g.max, g.min]).toEqual([w.max, w.min]);
      // Weighted means: ours is the exact sum rounded once, FednnU-Net's float64 loop rounds per step.
      for (const k of ['mean', 'median', 'std', 'percentile_00_5', 'percentile_99_5'] as const)
        expect(Math.abs(g[k] - w[k])).toBeLessThanOrEqual(4 * Number.EPSILON * Math.abs(w[k]));
      expect(
        Math.abs(
          got.median_relative_size_after_cropping - want.median_relative_size_after_cropping,
        ),
      ).toBeLessThanOrEqual(4 * Number.EPSILON);
      for (const d of clients) {
        const opts = { datasetName: d };
        expect(
          JSON.stringify(planExperiment(fingerprintFromSummary(got), datasetJson(d), opts)),
        ).toBe(JSON.stringify(planExperiment(fingerprintFromSummary(want), datasetJson(d), opts)));
      }
    },
  );

  it('exact fixed point: w·v to 2^-64, negative values, ties to even; refuses what it cannot hold', () => {
    expect(fixedPoint(1.5, 3)).toBe(BigInt(4.5 * 2 ** 32) * 2n ** 32n);
    expect(fixedPoint(-0.1, 7)).toBe(-fixedPoint(0.1, 7));
    expect(fixedPoint(2 ** -66, 2)).toBe(0n); // 0.5 at 2^-64 rounds to the even 0
    expect(fixedPoint(3 * 2 ** -66, 2)).toBe(2n); // 1.5 → 2
    expect(() => fixedPoint(2 ** 62, 4)).toThrow(/out of the fixed-point range/);
    expect(() => fixedPoint(NaN, 1)).toThrow(/cannot encode/);
  });

  it('refuses channel mismatches, oversize sketches and bad layouts with clear errors', () => {
    const layout = ffeLayout(3072, 4);
    const v801 = encodeSummary(summarizeFingerprint(fingerprint('Dataset801_PhantomMR')), layout);
    const v803 = encodeSummary(
      summarizeFingerprint(fingerprint('Dataset803_PhantomMR2ch')),
      layout,
    );
    expect(() => decodeSummarySum(secureSum([v801, v803]), layout)).toThrow(
      /sites disagree on image channels: 1 of 2 sites have channel 1/,
    );
    // A 6-cell sketch cannot list the ~20 distinct keys of two sites.
    const tiny = ffeLayout(6, 4);
    const s = [
      summarizeFingerprint(fingerprint('Dataset801_PhantomMR')),
      summarizeFingerprint(fingerprint('Dataset804_PhantomMRsiteB')),
    ];
    expect(() => decodeSummarySum(secureSum(s.map((x) => encodeSummary(x, tiny))), tiny)).toThrow(
      /too many distinct \(spacing, size\) values.*privacy\.ffeCells/,
    );
    expect(() =>
      encodeSummary(
        summarizeFingerprint(fingerprint('Dataset803_PhantomMR2ch')),
        ffeLayout(3072, 1),
      ),
    ).toThrow(/2 image channels; the federation's FFE layout has 1 slots/);
    expect(() => ffeLayout(100, 4)).toThrow(/multiple of 3/);
  });

  it('through the relay: no fingerprint leaves a site in the clear; every site plans on the private merge', async () => {
    const ds = ['Dataset801_PhantomMR', 'Dataset802_PhantomCTaniso', 'Dataset804_PhantomMRsiteB'];
    const spec: WeightSpec = [{ name: 'w', shape: [4] }];
    const trainers = ds.map((d, i) => {
      const t = new MockTrainer(spec, i + 1);
      t.localFingerprint = async () => fingerprint(d) as unknown as Record<string, unknown>;
      return t;
    });
    const base = {
      method: 'ffe' as const,
      configuration: '3d_fullres' as const,
      rounds: 1,
      itersPerRound: 1,
      minSites: 3,
      roundDeadlineMs: 5000,
      weighting: 'uniform' as const,
      encoding: 'fp32' as const,
    };
    const f = memFederation({
      config: {
        ...base,
        expectedSites: 3,
        privacy: privacyConfig(3, base, { phaseDeadlineMs: 2000 }),
      },
      trainers,
    });
    await f.survivors();
    const types = new Set(f.received.map((r) => frameOf(r.bytes)!.message.type));
    expect(types.has('fingerprint')).toBe(false);
    const want = fingerprintFromSummary(
      aggregatePrivateSummaries(ds.map((d) => summarizeFingerprint(fingerprint(d)))),
    );
    for (const [i, t] of trainers.entries()) {
      const got = t.aggregate as unknown as DatasetFingerprint;
      expect(got.spacings).toEqual(want.spacings);
      expect(got.shapes_after_crop).toEqual(want.shapes_after_crop);
      expect(JSON.stringify(planExperiment(got, datasetJson(ds[i]), { datasetName: ds[i] }))).toBe(
        JSON.stringify(planExperiment(want, datasetJson(ds[i]), { datasetName: ds[i] })),
      );
    }
  });
});

describe('model rounds under secure aggregation: AsymFedAvg and case weighting', () => {
  const base: WeightSpec = [
    { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [4, 1, 3, 3, 3] },
    { name: 'encoder.stages.0.0.convs.0.norm.weight', shape: [4] },
    { name: 'decoder.seg_layers.0.weight', shape: [3, 4, 1, 1, 1] },
  ];
  const cfg = (over: Partial<FederationConfig>, n: number) => {
    const c = {
      method: 'asym' as const,
      configuration: '3d_fullres' as const,
      rounds: 2,
      itersPerRound: 1,
      minSites: n,
      roundDeadlineMs: 5000,
      weighting: 'uniform' as const,
      encoding: 'fp32' as const,
      ...over,
    };
    return { ...c, expectedSites: n, privacy: privacyConfig(n, c, { phaseDeadlineMs: 2000 }) };
  };

  it("AsymFedAvg: only the shared (name, shape) subset is summed, in the relay's order; local layers never leave", async () => {
    const a = new MockTrainer(
      [...base, { name: 'encoder.stages.1.0.convs.0.conv.weight', shape: [8, 4, 3, 3, 3] }],
      1,
    );
    const b = new MockTrainer(
      [base[2], { name: base[0].name, shape: [4, 1, 1, 3, 3] }, base[1]],
      2,
    );
    const c = new MockTrainer([base[1], base[2]], 3);
    const f = memFederation({ config: cfg({}, 3), trainers: [a, b, c] });
    const results = await f.survivors();
    // The relay's order is the first site's (join order, which signed hellos make racy): its
    // declared layout filtered to the shared keys, the same at every site.
    const trainers = [a, b, c];
    const first = trainers[Number(f.host.coordinator.roster()[0].siteName.slice(4))];
    const shared = new Set([base[1].name, base[2].name]);
    const order = first.layout.map((e) => e.name).filter((n) => shared.has(n));
    expect(order).toHaveLength(2);
    for (const r of results) expect(r.shared.map((e) => e.name)).toEqual(order);
    const lengths = f.received
      .map((r) => frameOf(r.bytes)!.message)
      .filter((m) => m.type === 'secagg-masked')
      .map((m) => (m as Extract<Message, { type: 'secagg-masked' }>).length);
    expect(new Set(lengths)).toEqual(new Set([4 + 12 + 1]));
    // All three end on the same shared weights; their local layers are their own.
    for (const n of [base[1].name, base[2].name]) {
      expect([...a.w.get(n)!.data]).toEqual([...b.w.get(n)!.data]);
      expect([...a.w.get(n)!.data]).toEqual([...c.w.get(n)!.data]);
    }
    expect(a.w.has('encoder.stages.1.0.convs.0.conv.weight')).toBe(true);
    expect(b.w.get(base[0].name)!.shape).toEqual([4, 1, 1, 3, 3]);
  });

  it('cases weighting: the weight travels inside the masked vector; the relay learns only the sum', async () => {
    const trainers = [
      new MockTrainer(base, 1, 2),
      new MockTrainer(base, 2, 7),
      new MockTrainer(base, 3, 11),
    ];
    const f = memFederation({
      config: cfg({ method: 'fedavg', weighting: 'cases', rounds: 1 }, 3),
      trainers,
    });
    await f.survivors();
    // hello says 0 cases; the relay's only case information is the unmasked total.
    expect(
      f.received
        .map((r) => frameOf(r.bytes)!.message)
        .filter((m) => m.type === 'hello')
        .map((m) => (m as Extract<Message, { type: 'hello' }>).numCases),
    ).toEqual([0, 0, 0]);
    // Closed form: w1 = w0 + Σ n_i·0.5(target_i − w0)/Σ n_i with w0 = the first site's initial weights.
    const first = trainers[Number(f.host.coordinator.roster()[0].siteName.slice(4))];
    const init = new MockTrainer(base, first.seed);
    await init.prepare(null, {} as FederationConfig);
    const name = base[0].name;
    const g = f.host.coordinator.global!.get(name)!.data;
    const p = f.host.coordinator.snapshot.config.privacy!;
    const tol = (2 ** -(p.fracBits + 1) * 3) / 20 + 1e-6;
    g.forEach((v, k) => {
      const w0 = init.w.get(name)!.data[k];
      const exact =
        w0 +
        trainers.reduce((s, t) => s + t.numCases * 0.5 * (t.targets.get(name)![k] - w0), 0) / 20;
      expect(Math.abs(v - exact)).toBeLessThanOrEqual(tol);
    });
  });
});

describe('DP: distributed Gaussian noise on the securely summed aggregate', () => {
  it('noise std on the aggregate = σ·C / Σw for (ε = 2, δ = 1e-5, 4 rounds); the relay announces ε after each round', async () => {
    // Sites that do not move (zero deltas): the aggregate is pure noise.
    const spec: WeightSpec = [{ name: 'w', shape: [100_000] }];
    class Still extends MockTrainer {
      override async train() {
        return { loss: 0 };
      }
    }
    const n = 4;
    const trainers = Array.from({ length: n }, (_, i) => new Still(spec, i + 1));
    const base = {
      method: 'fedavg' as const,
      configuration: '3d_fullres' as const,
      rounds: 4,
      itersPerRound: 1,
      minSites: n,
      roundDeadlineMs: 20_000,
      weighting: 'uniform' as const,
      encoding: 'fp32' as const,
    };
    const privacy = privacyConfig(n, base, {
      clip: 0.5,
      dpEpsilon: 2,
      dpDelta: 1e-5,
      phaseDeadlineMs: 5000,
    });
    const sigma = noiseMultiplier(2, 1e-5, 4);
    expect(privacy.dp!.noiseMultiplier).toBe(sigma);
    const globals: Float32Array[] = [];
    const f = memFederation({
      config: { ...base, expectedSites: n, privacy },
      trainers,
      host: {
        onChange: () => {
          const g = f?.host.coordinator.global?.get('w')?.data;
          if (g && globals.at(-1) !== g) globals.push(g);
        },
      },
    });
    const results = await f.survivors();
    expect(globals.length).toBe(5); // the initial model and 4 rounds
    const expected = (sigma * privacy.clip) / n;
    for (let r = 1; r <= 4; r++) {
      const d = Array.from(globals[r], (v, k) => v - globals[r - 1][k]);
      const mean = d.reduce((a, b) => a + b, 0) / d.length;
      const std = Math.sqrt(d.reduce((a, b) => a + (b - mean) ** 2, 0) / (d.length - 1));
      // Sampling error of a std over N = 1e5 values: relative 1/√(2N) = 0.22 %; allow 1 % (4.5 SE).
      expect(Math.abs(std / expected - 1)).toBeLessThan(0.01);
      expect(Math.abs(mean)).toBeLessThan((5 * expected) / Math.sqrt(d.length));
      // Gaussian, not just the right scale: the share within one std is 68.27 % (SE 0.15 %).
      expect(
        Math.abs(d.filter((x) => Math.abs(x - mean) < expected).length / d.length - 0.6827),
      ).toBeLessThan(0.01);
    }
    const spent = results[0].privacy.map((p) => p.epsilon);
    expect(spent.length).toBe(4);
    spent.forEach((e, i) => expect(e).toBeCloseTo(epsilon(sigma, i + 1, 1e-5).epsilon, 10));
    expect(spent[3]).toBeLessThanOrEqual(2);
    expect(spent[3]).toBeGreaterThan(1.99);
    expect(f.host.coordinator.snapshot.history.map((h) => h.privacy!.epsilon)).toEqual(spent);
  });

  it('accounting with more survivors than the noise divisor: each round at its own σ_r', () => {
    expect(epsilonOfRounds([2, 2, 2], 1e-5).epsilon).toBeCloseTo(epsilon(2, 3, 1e-5).epsilon, 12);
    expect(epsilonOfRounds([2, 4], 1e-5).epsilon).toBeLessThan(epsilon(2, 2, 1e-5).epsilon);
    expect(epsilonOfRounds([], 1e-5).epsilon).toBe(0);
  });
});

describe('privacy parameters', () => {
  it('threshold defaults to a majority; fracBits are the most that cannot overflow', () => {
    expect([2, 3, 4, 5, 10, 30].map(defaultThreshold)).toEqual([2, 2, 3, 3, 6, 16]);
    const fed = { rounds: 10, weighting: 'uniform' as const, minSites: 30 };
    const p = privacyConfig(30, fed);
    expect(p.threshold).toBe(16);
    expect(p.fracBits).toBe(chooseFracBits(30, 100));
    expect(30 * (100 * 2 ** p.fracBits + 0.5)).toBeLessThan(2 ** 31);
    expect(30 * (100 * 2 ** (p.fracBits + 1) + 0.5)).toBeGreaterThanOrEqual(2 ** 31);
  });

  it('refuses inconsistent settings with clear errors', () => {
    const fed = { rounds: 10, weighting: 'uniform' as const, minSites: 3 };
    expect(() => privacyConfig(3, fed, { threshold: 4 })).toThrow(
      /threshold must be an integer in 2\.\.3/,
    );
    expect(() => privacyConfig(1, fed)).toThrow(/at least 2 sites/);
    expect(() => privacyConfig(3, fed, { dpEpsilon: 1 })).toThrow(/explicit clip norm/);
    expect(() =>
      privacyConfig(3, { ...fed, weighting: 'cases' }, { dpEpsilon: 1, clip: 1 }),
    ).toThrow(/uniform weighting/);
    expect(() => privacyConfig(3, fed, { dpDelta: 1e-5 })).toThrow(/without a DP epsilon/);
    expect(() => chooseFracBits(30, 1e8)).toThrow(/cannot be summed in 32-bit fixed point/);
  });

  it('site vectors: clipped to C, weighted, then the weight; the relay decodes the mean and Σw', () => {
    const spec: WeightSpec = [
      { name: 'a', shape: [3] },
      { name: 'b', shape: [1] },
    ];
    const delta = (x: number[]): NamedWeights =>
      new Map([
        ['a', { shape: [3], data: Float32Array.from(x.slice(0, 3)) }],
        ['b', { shape: [1], data: Float32Array.from(x.slice(3)) }],
      ]);
    const o = { clip: 5, fracBits: 16, bound: 5 * 4, noiseStd: 0 };
    const v1 = encodeSiteVector(delta([3, 4, 0, 0]), spec, { ...o, weight: 1 });
    const v2 = encodeSiteVector(delta([0, 0, 6, 8]), spec, { ...o, weight: 4 }); // norm 10 → clipped to 5
    expect(v2.norm).toBe(10);
    expect(v1.vector[4]).toBe(1);
    const { mean, totalWeight } = decodeSum(secureSum([v1.vector, v2.vector]), spec, 16);
    expect(totalWeight).toBe(5);
    expect([...mean.get('a')!.data, ...mean.get('b')!.data]).toEqual(
      [3 / 5, 4 / 5, (4 * 3) / 5, (4 * 4) / 5].map(Math.fround),
    );
    expect(() => encodeSiteVector(delta([NaN, 0, 0, 0]), spec, { ...o, weight: 1 })).toThrow(/NaN/);
    expect(() => encodeSiteVector(delta([0, 0, 0, 0]), spec, { ...o, weight: 0 })).toThrow(
      /positive integer/,
    );
  });
});
