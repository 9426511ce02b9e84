// Issue 15, item 3: one site holding the join token must not be able to poison the global model or
// stall the federation, in plain and secure rounds; and (item 4, site side) a site refuses a
// welcome whose privacy settings differ from those it joined under. Each attack runs through the
// in-memory federation (test/unit/helpers/mem-federation.ts) with a tampering site.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { SiteClient, type Connect, type SiteResult } from '../../src/fed/client.ts';
import { decodeWeights, encodeWeights } from '../../src/model/weights-codec.ts';
import { FederationHost } from '../../src/fed/host.ts';
import { Coordinator } from '../../src/fed/coordinator.ts';
import {
  decodeMessage,
  encodeMessage,
  type FederationConfig,
  type Message,
} from '../../src/fed/protocol.ts';
import { privacyConfig } from '../../src/fed/secagg/config.ts';
import { wordsOf } from '../../src/fed/secagg/wire.ts';
import { isChallenge } from '../../src/fed/identity/envelope.ts';
import type { NamedWeights, WeightSpec } from '../../src/model/named-weights.ts';
import { RobustMean, trimCount } from '../../src/fed/aggregate.ts';
import { checkUnmaskedSum } from '../../src/fed/secagg/round.ts';
import { elementBound, encodeSiteVector, noiseDivisor } from '../../src/fed/secagg/vector.ts';
import { addInto } from '../../src/fed/secagg/quantize.ts';
import { cryptoGaussian } from '../../src/fed/secagg/noise.ts';
import { randomArray } from '../../src/util/rng.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import { frames, memFederation, type MemFederation } from './helpers/mem-federation.ts';

const layout: WeightSpec = [
  { name: 'encoder.conv.weight', shape: [4, 2, 3] },
  { name: 'encoder.norm.bias', shape: [4] },
];

function plainConfig(
  over: Partial<FederationConfig> = {},
): FederationConfig & { expectedSites: number } {
  return {
    method: 'fedavg',
    configuration: '3d_fullres',
    rounds: 2,
    itersPerRound: 1,
    minSites: 2,
    roundDeadlineMs: 1500,
    weighting: 'uniform',
    encoding: 'fp32',
    expectedSites: 3,
    ...over,
  };
}

function secureConfig(clip?: number): FederationConfig & { expectedSites: number } {
  const base = plainConfig({ rounds: 1, minSites: 2, roundDeadlineMs: 5000 });
  return {
    ...base,
    privacy: privacyConfig(3, base, { phaseDeadlineMs: 2000, ...(clip ? { clip } : {}) }),
  };
}

/** Fails (instead of hanging) when the federation does not finish in `ms`: a stalled federation. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const stall = new Promise<never>(
    (_, rej) =>
      (timer = setTimeout(
        () => rej(new Error(`the federation stalled (not finished after ${ms} ms)`)),
        ms,
      )),
  );
  return Promise.race([p, stall]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The global model the host sent with round `round` (its first sending). */
function globalOfRound(f: MemFederation, round: number): NamedWeights {
  const m = frames(f.sent).find((x) => x.message.type === 'round' && x.message.round === round)!;
  return decodeWeights((m.message as Extract<Message, { type: 'round' }>).tensors, m.payload);
}

function distance(a: NamedWeights, b: NamedWeights): number {
  let s = 0;
  for (const [k, t] of a)
    for (let i = 0; i < t.data.length; i++) s += (t.data[i] - b.get(k)!.data[i]) ** 2;
  return Math.sqrt(s);
}

function siteId(f: MemFederation, name: string): string {
  return f.host.coordinator.roster().find((x) => x.siteName === name)!.siteId;
}

/** Rewrites site 0's plain updates of rounds ≥ 1 with `edit`. */
function tamperUpdates(
  edit: (m: Extract<Message, { type: 'update' }>, w: NamedWeights) => Message | undefined,
) {
  return (site: number, bytes: Uint8Array): Uint8Array => {
    const { message, payload } = decodeMessage(bytes);
    if (site !== 0 || message.type !== 'update' || message.round < 1) return bytes;
    const w = decodeWeights(message.tensors, payload);
    const changed = edit(message, w);
    if (!changed) return bytes;
    const enc = encodeWeights(w, 'fp32');
    return encodeMessage({ ...changed, tensors: enc.entries } as Message, enc.payload);
  };
}

/** The honest sites upload after site 0 (the attacker goes first, before any norm history). */
function trainers(n: number, numCases: number[] = []): MockTrainer[] {
  return Array.from({ length: n }, (_, i) => {
    const t = new MockTrainer(layout, i + 1, numCases[i] ?? 3);
    if (i > 0) t.onTrain = async () => void (await sleep(60));
    return t;
  });
}

describe('plain rounds: one token holder cannot poison or stall the federation', () => {
  it('a finite huge delta (every value 1e30) sent first in round 1 is clipped; round 2 refuses it, keeps the honest updates and closes', async () => {
    const ts = trainers(3);
    const f = memFederation({
      config: plainConfig(),
      trainers: ts,
      tamper: tamperUpdates((m, w) => {
        for (const t of w.values()) t.data.fill(1e30);
        return m;
      }),
    });
    const results = await within(f.survivors(), 15_000);
    expect(results.map((r) => r.rounds)).toEqual([2, 2, 2]);
    const h = f.host.coordinator.snapshot.history;
    // Round 1: no history yet, so the update is clipped (not refused): it moves the mean by ≤ C/3.
    expect(h[0].contributors).toHaveLength(3);
    expect(distance(globalOfRound(f, 2), globalOfRound(f, 1))).toBeLessThanOrEqual(100 / 3 + 1);
    // Round 2: the attacker is refused as an outlier, both honest updates are kept.
    expect(h[1].contributors.sort()).toEqual([siteId(f, 'site1'), siteId(f, 'site2')].sort());
    expect(h[1].rejected).toEqual([
      { siteId: siteId(f, 'site0'), reason: expect.stringMatching(/norm .* over 10× the median/) },
    ]);
    for (const t of f.host.coordinator.global!.values())
      expect(t.data.every((v) => Math.abs(v) < 100)).toBe(true);
  });

  it('--weighting cases: an update claiming 2^52 cases (3 declared at join) is refused; the round closes with the others', async () => {
    const ts = trainers(3);
    const f = memFederation({
      config: plainConfig({ weighting: 'cases', rounds: 1 }),
      trainers: ts,
      tamper: tamperUpdates((m) => ({ ...m, numCases: 2 ** 52 })),
    });
    const results = await within(f.survivors(), 15_000);
    expect(results.map((r) => r.rounds)).toEqual([1, 1, 1]);
    const h = f.host.coordinator.snapshot.history[0];
    expect(h.contributors).not.toContain(siteId(f, 'site0'));
    expect(h.contributors).toHaveLength(2);
    expect(h.rejected).toEqual([
      {
        siteId: siteId(f, 'site0'),
        reason: 'numCases 4503599627370496 exceeds the 3 cases this site declared when it joined',
      },
    ]);
  });

  it('--weighting cases: a site declaring 2^52 cases at join counts as 1000 (the cap), not as the whole federation', async () => {
    const ts = trainers(3, [2 ** 52, 3, 3]);
    const f = memFederation({
      config: plainConfig({ weighting: 'cases', rounds: 1 }),
      trainers: ts,
    });
    await within(f.survivors(), 15_000);
    const g0 = globalOfRound(f, 1);
    const g1 = f.host.coordinator.global!;
    const weights = [1000, 3, 3];
    let err = 0;
    let spread = 0;
    for (const [k, t] of g0) {
      for (let i = 0; i < t.data.length; i++) {
        // MockTrainer moves every weight half way to its target: delta_i = (target_i − g0) / 2.
        const d = ts.map((tr) => 0.5 * (tr.targets.get(k)![i] - t.data[i]));
        const want = t.data[i] + d.reduce((s, x, j) => s + weights[j] * x, 0) / 1006;
        err = Math.max(err, Math.abs(g1.get(k)!.data[i] - want));
        spread = Math.max(spread, Math.abs(d[0] - d[1]));
      }
    }
    expect(spread).toBeGreaterThan(0.05); // the cap is visible: uncapped, the result would be d0 alone
    expect(err).toBeLessThan(1e-5);
  });

  it('a site hanging below the quorum: the round closes at its deadline with what was accepted', async () => {
    const ts = trainers(3);
    ts[2].onTrain = () => new Promise(() => undefined); // connected, never answers
    const f = memFederation({
      config: plainConfig({ rounds: 1, minSites: 3, roundDeadlineMs: 800 }),
      trainers: ts,
    });
    const done = within(Promise.all([f.runs[0], f.runs[1]]), 15_000);
    try {
      const results: SiteResult[] = await done;
      expect(results.map((r) => r.rounds)).toEqual([1, 1]);
    } finally {
      f.clients[2].stop();
    }
    const h = f.host.coordinator.snapshot.history[0];
    expect(h.closedBy).toBe('deadline');
    expect(h.contributors).toHaveLength(2);
  });

  it("--robust trimmed-mean: every coordinate of the new global lies between the honest sites' values, whatever the third sends", async () => {
    const ts = trainers(3);
    const f = memFederation({
      config: plainConfig({ rounds: 1, robust: 'trimmed-mean' }),
      trainers: ts,
      tamper: tamperUpdates((m, w) => {
        for (const t of w.values()) t.data.fill(1e30);
        return m;
      }),
    });
    await within(f.survivors(), 15_000);
    const g0 = globalOfRound(f, 1);
    const g1 = f.host.coordinator.global!;
    expect(f.host.coordinator.snapshot.history[0].contributors).toHaveLength(3);
    for (const [k, t] of g0) {
      for (let i = 0; i < t.data.length; i++) {
        const d = [1, 2].map((j) => 0.5 * (ts[j].targets.get(k)![i] - t.data[i]));
        const moved = g1.get(k)!.data[i] - t.data[i];
        expect(moved).toBeGreaterThanOrEqual(Math.min(...d) - 1e-6);
        expect(moved).toBeLessThanOrEqual(Math.max(...d) + 1e-6);
      }
    }
  });
});

/** Rewrites site 0's masked vector of round 1, attempt 1. */
function tamperMasked(edit: (v: Uint32Array, fracBits: number) => void, fracBits: number) {
  return (site: number, bytes: Uint8Array): Uint8Array => {
    const { message, payload } = decodeMessage(bytes);
    if (
      site !== 0 ||
      message.type !== 'secagg-masked' ||
      message.round !== 1 ||
      message.attempt !== 1
    )
      return bytes;
    const v = wordsOf(payload, message.length);
    edit(v, fracBits);
    return encodeMessage(message, new Uint8Array(v.buffer));
  };
}

describe('secure rounds: the relay checks the unmasked sum; every failure is a round-failed and a retry', () => {
  it('a weight word of 2^32 − 2 wraps Σw to 0: the attempt fails, the retry completes the federation', async () => {
    const config = secureConfig();
    const f = memFederation({
      config,
      trainers: trainers(3),
      tamper: tamperMasked((v) => {
        v[v.length - 1] = (v[v.length - 1] + 2 ** 32 - 3) >>> 0; // masked w + (2^32 − 3): this site's w becomes 2^32 − 2
      }, config.privacy!.fracBits),
    });
    const results = await within(f.survivors(), 20_000);
    expect(results.map((r) => r.rounds)).toEqual([1, 1, 1]);
    const h = f.host.coordinator.snapshot.history[0];
    expect(h.secure!.attempts).toBe(2);
    expect(h.secure!.failures).toEqual([expect.stringMatching(/attempt 1: .*summed weight/)]);
    const failed = frames(f.sent).filter((x) => x.message.type === 'round-failed');
    expect(failed.map((x) => x.site).sort()).toEqual(['site0', 'site1', 'site2']);
    expect(
      failed.every((x) => (x.message as Extract<Message, { type: 'round-failed' }>).retry),
    ).toBe(true);
  });

  it('a site that ignores the clip (C = 1): the sum is refused, the retry keeps the global within C of the last one', async () => {
    const config = secureConfig(1);
    const f = memFederation({
      config,
      trainers: trainers(3),
      tamper: tamperMasked((v, fb) => {
        v[0] = (v[0] + 50 * 2 ** fb) >>> 0; // +50 on element 0, fifty times the clip norm
      }, config.privacy!.fracBits),
    });
    await within(f.survivors(), 20_000);
    const h = f.host.coordinator.snapshot.history[0];
    expect(h.secure!.failures).toEqual([expect.stringMatching(/attempt 1: .*did not clip/)]);
    expect(distance(f.host.coordinator.global!, globalOfRound(f, 1))).toBeLessThanOrEqual(1 + 1e-3);
  });
});

describe('sites pin the privacy settings they joined under', () => {
  /** A site joined to `host` whose welcomes past the join phase are rewritten by `rewrite`. */
  function site(
    host: FederationHost,
    i: number,
    rewrite: (m: Extract<Message, { type: 'welcome' }>) => Extract<Message, { type: 'welcome' }>,
  ): SiteClient {
    const connect: Connect = async (h) => {
      const handlers = host.accept({
        send: (b) => {
          let bytes: Uint8Array = b.slice();
          if (!isChallenge(bytes)) {
            const { message, payload } = decodeMessage(bytes);
            if (message.type === 'welcome' && message.phase !== 'join')
              bytes = encodeMessage(rewrite(message), payload);
          }
          setTimeout(() => h.onMessage(bytes), 0);
        },
        close: () => setTimeout(() => h.onClose(), 0),
      });
      return {
        send: (b) => void setTimeout(() => handlers.onMessage(b.slice()), 0),
        close: () => handlers.onClose(),
      };
    };
    return new SiteClient({
      connect,
      token: 'mem',
      siteName: `site${i}`,
      trainer: new MockTrainer(layout, i + 1),
      hideCaseCount: true,
      reconnect: { initialMs: 5, maxMs: 20, maxTries: 2 },
    });
  }

  type Privacy = NonNullable<FederationConfig['privacy']>;
  it.each([
    [
      'secure aggregation dropped',
      (_p: Privacy): Privacy | undefined => undefined,
      /joined under secure aggregation \(threshold 2, clip 100, no DP\), the relay now asks for no secure aggregation/,
    ],
    [
      'threshold changed',
      (p: Privacy): Privacy | undefined => ({ ...p, threshold: 3 }),
      /joined under secure aggregation \(threshold 2.*now asks for secure aggregation \(threshold 3/,
    ],
    [
      'fixed-point bits changed',
      (p: Privacy): Privacy | undefined => ({ ...p, fracBits: p.fracBits - 1 }),
      /other secure-aggregation parameters changed/,
    ],
  ])(
    "%s: a site that joined under the relay's settings refuses the changed welcome with a clear error",
    async (_name, change, error) => {
      const host = new FederationHost({
        config: { ...secureConfig(), expectedSites: 2, token: 'mem' },
      });
      const rewrite = (m: Extract<Message, { type: 'welcome' }>) => ({
        ...m,
        config: { ...m.config, privacy: change(m.config.privacy!) },
      });
      // Site 0 joins first: its first welcome (join phase) carries the relay's real settings; the
      // welcome at the start, when site 1 joins, is changed.
      const first = site(host, 0, rewrite);
      const run0 = first.run();
      run0.catch(() => undefined);
      for (let k = 0; k < 200 && host.coordinator.roster().length < 1; k++) await sleep(5);
      const second = site(host, 1, rewrite);
      second.run().catch(() => undefined);
      try {
        await expect(within(run0, 10_000)).rejects.toThrow(error);
      } finally {
        second.stop();
      }
    },
  );
});

describe('the rules themselves', () => {
  const spec: WeightSpec = [{ name: 'w', shape: [5] }];
  const u = (...v: number[]): NamedWeights =>
    new Map([['w', { shape: [5], data: Float32Array.from(v) }]]);

  it('coordinate-wise median and trimmed mean: one extreme site moves no coordinate past the honest values', () => {
    const updates = [
      u(1, 2, 3, 4, 5),
      u(2, 3, 4, 5, 6),
      u(3, 4, 5, 6, 7),
      u(4, 5, 6, 7, 8),
      u(1e30, -1e30, 1e30, -1e30, 0),
    ];
    const median = new RobustMean(spec, 'median', 5);
    const trimmed = new RobustMean(spec, 'trimmed-mean', 5);
    for (const x of updates) {
      median.add(x);
      trimmed.add(x);
    }
    expect(trimCount(5)).toBe(1);
    expect([...median.result().get('w')!.data]).toEqual([3, 3, 5, 5, 6]);
    // Drop the lowest and highest of each coordinate, average the middle three.
    expect([...trimmed.result().get('w')!.data]).toEqual([3, 3, 5, 5, 6]);
    expect(() => median.add(u(0, 0, 0, 0, 0))).toThrow(/already holds 5 updates/);
  });

  it('robust aggregation is refused for a workshop federation that turns secure aggregation on at its start', () => {
    expect(
      () =>
        new Coordinator({
          config: { ...plainConfig({ robust: 'median' }), token: 't' },
          privacyAtStart: {},
        }),
    ).toThrow(/robust aggregation needs every update in the clear/);
  });

  it('robust aggregation states its memory: refused when every update of a round would not fit', () => {
    expect(() => new RobustMean([{ name: 'big', shape: [30_000_000] }], 'median', 20)).toThrow(
      /20 sites × 114\.4 MiB = 2\.24 GiB, over the 2\.00 GiB limit/,
    );
  });

  it('secure check with DP: honest noisy sums of 200k parameters pass; a site 1000× over the clip is caught', () => {
    const P = 200_000;
    const big: WeightSpec = [{ name: 'w', shape: [P] }];
    const base = { rounds: 4, weighting: 'uniform' as const, minSites: 3 };
    const p = privacyConfig(3, base, { clip: 1, dpEpsilon: 2 });
    const divisor = noiseDivisor({ minSites: 3, privacy: p });
    // Deltas uniform in ±gain/2: norm ≈ gain·√(P/12) ≈ 129·gain, clipped to `clip`.
    const vec = (seed: number, clip: number, gain = 1) =>
      encodeSiteVector(
        new Map([['w', { shape: [P], data: randomArray(P, seed).map((v) => (v - 0.5) * gain) }]]),
        big,
        {
          clip,
          fracBits: p.fracBits,
          weight: 1,
          bound: elementBound(p, 'uniform', divisor),
          noiseStd: (p.dp!.noiseMultiplier * p.clip) / Math.sqrt(divisor),
          gaussian: cryptoGaussian,
        },
      ).vector;
    for (let trial = 0; trial < 3; trial++) {
      const sum = new Uint32Array(P + 1);
      for (const k of [1, 2, 3]) addInto(sum, vec(trial * 10 + k, 1));
      expect(() => checkUnmaskedSum(sum, big, p, 'uniform', 3, divisor)).not.toThrow();
    }
    const sum = new Uint32Array(P + 1);
    for (const k of [1, 2]) addInto(sum, vec(k, 1));
    addInto(sum, vec(3, Infinity, 1000 / 129)); // norm ≈ 1000 C, unclipped
    expect(() => checkUnmaskedSum(sum, big, p, 'uniform', 3, divisor)).toThrow(/did not clip/);
  });
});

describe('fednnunet relay: the update-bound options', () => {
  it.each([
    [['--max-update-norm', '0'], /--max-update-norm must be a positive number/],
    [['--robust', 'mean'], /--robust must be trimmed-mean or median/],
    [['--robust', 'median', '--weighting', 'cases'], /robust aggregation is unweighted/],
    [
      ['--robust', 'trimmed-mean', '--secure-agg'],
      /robust aggregation needs every update in the clear/,
    ],
    [['--max-update-norm', '5', '--secure-agg'], /clip norm \(--clip\)/],
  ])('refuses %j with a one-line usage error', (args, message) => {
    const r = spawnSync(process.execPath, ['bin/fednnunet.js', 'relay', '--port', '0', ...args], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});
