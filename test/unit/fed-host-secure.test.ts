// Secure aggregation on the workshop host (a FederationHost that does not know n until its Start):
// the privacy config is fixed at start from the sites joined then, sites that joined earlier learn
// it from the welcome sent at start, the host only ever receives masked vectors, and a site that
// comes after the start is refused.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Coordinator, type CoordinatorOptions } from '../../src/fed/coordinator.ts';
import type { FederationHost } from '../../src/fed/host.ts';
import { SiteClient, type Connect } from '../../src/fed/client.ts';
import type { FederationConfig, Message } from '../../src/fed/protocol.ts';
import {
  privacyConfig,
  privacyOptionsFromFields,
  type PrivacyOptions,
} from '../../src/fed/secagg/config.ts';
import { noiseMultiplier } from '../../src/fed/secagg/dp.ts';
import { privacyText, secureStatusText } from '../../src/fed/secagg/host-status.ts';
import { ephemeralIdentity } from '../../src/fed/identity/site-key.ts';
import {
  aggregatePrivateSummaries,
  fingerprintFromSummary,
  summarizeFingerprint,
} from '../../src/fingerprint/ffe.ts';
import type { DatasetFingerprint } from '../../src/fingerprint/types.ts';
import type { NamedWeights, WeightSpec } from '../../src/model/named-weights.ts';
import { REFERENCE } from '../paths.ts';
import { readJson } from './plan-fixtures.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import { frames, memFederation, type MemFederation } from './helpers/mem-federation.ts';

const layout: WeightSpec = [
  { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [16, 4, 3, 3, 3] },
  { name: 'encoder.stages.0.0.convs.0.norm.weight', shape: [16] },
  { name: 'decoder.seg_layers.0.weight', shape: [3, 16, 1, 1, 1] },
];
const fingerprint = (d: string) =>
  readJson<DatasetFingerprint>(join(REFERENCE, 'fingerprints', d, 'dataset_fingerprint.json'));
const PHANTOMS = ['Dataset801_PhantomMR', 'Dataset802_PhantomCTaniso', 'Dataset804_PhantomMRsiteB'];

/** MockTrainer that records, per round, the global it trained from and its delta. */
class Recorder extends MockTrainer {
  rounds = new Map<number, { before: NamedWeights; delta: NamedWeights }>();
  override async train(round: number) {
    const before = await this.weights();
    const m = await super.train(round);
    const after = await this.weights();
    this.rounds.set(round, {
      before,
      delta: new Map(
        [...after].map(([k, t]) => [
          k,
          { shape: t.shape, data: t.data.map((v, i) => v - before.get(k)!.data[i]) },
        ]),
      ),
    });
    return m;
  }
}

/** The workshop host's config: it waits for 1000 sites and starts when told, quorum 1. */
function hostConfig(
  method: FederationConfig['method'],
  rounds: number,
): FederationConfig & { expectedSites: number } {
  return {
    method,
    configuration: '3d_fullres',
    rounds,
    itersPerRound: 1,
    minSites: 1,
    roundDeadlineMs: 20_000,
    weighting: 'uniform',
    encoding: 'fp16',
    expectedSites: 1000,
  };
}

const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((ok) => setTimeout(ok, 5));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
};

/** Starts a federation of `trainers` on a host with secure aggregation asked for, and starts it once all joined. */
async function startedSecure(
  trainers: Recorder[],
  method: FederationConfig['method'],
  rounds: number,
  privacy: PrivacyOptions,
) {
  const phases: string[] = [];
  // onChange can fire while memFederation builds the host, before it is known here.
  const known: { host?: FederationHost } = {};
  const f = memFederation({
    config: hostConfig(method, rounds),
    trainers,
    hideCaseCount: true,
    host: {
      privacyAtStart: privacy,
      onChange: () => {
        const s = known.host?.coordinator.secureStatus;
        const tag = s && `${s.kind}:${s.round}:${s.phase}`;
        if (tag && phases.at(-1) !== tag) phases.push(tag);
      },
    },
  });
  known.host = f.host;
  await until(
    () => f.host.coordinator.roster().filter((x) => x.connected).length === trainers.length,
    'every site to join',
  );
  expect(f.host.coordinator.phase).toBe('join');
  expect(f.host.coordinator.snapshot.config.privacy).toBeUndefined();
  f.host.start();
  return { f, phases };
}

/** Per round: max |(global after − global before) − mean of the clipped deltas|, against the quantisation bound. */
function roundErrors(f: MemFederation, trainers: Recorder[], rounds: number) {
  const p = f.host.coordinator.snapshot.config.privacy!;
  const out: Array<{ err: number; bound: number }> = [];
  for (let r = 1; r <= rounds; r++) {
    const before = trainers[0].rounds.get(r)!.before;
    for (const t of trainers)
      for (const [k, v] of t.rounds.get(r)!.before)
        expect([...v.data]).toEqual([...before.get(k)!.data]);
    const after = r < rounds ? trainers[0].rounds.get(r + 1)!.before : f.host.coordinator.global!;
    const clipped = trainers.map((t) => {
      const d = t.rounds.get(r)!.delta;
      const norm = Math.sqrt(
        [...d.values()].reduce((a, x) => a + x.data.reduce((s, v) => s + v * v, 0), 0),
      );
      const s = norm > p.clip ? p.clip / norm : 1;
      return new Map([...d].map(([k, x]) => [k, Float32Array.from(x.data, (v) => v * s)]));
    });
    let err = 0;
    let bound = 0;
    for (const { name } of layout) {
      const a = before.get(name)!.data;
      const b = after.get(name)!.data;
      for (let k = 0; k < a.length; k++) {
        const exact = clipped.reduce((s, c) => s + c.get(name)![k], 0) / trainers.length;
        err = Math.max(err, Math.abs(b[k] - a[k] - exact));
        // 2^-(f+1) of fixed-point rounding on the mean, plus float32 rounding of the mean and the new global.
        bound = Math.max(
          bound,
          2 ** -(p.fracBits + 1) + 2 ** -24 * (Math.abs(b[k]) + Math.abs(exact)) * 2,
        );
      }
    }
    out.push({ err, bound });
  }
  return out;
}

/** A SiteClient over a fresh in-memory signed link to `host`. */
function lateSite(host: FederationHost): SiteClient {
  const connect: Connect = async (h) => {
    const handlers = host.accept({
      send: (b) => void setTimeout(() => h.onMessage(b.slice()), 0),
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
    siteName: 'late',
    trainer: new MockTrainer(layout, 99),
    identity: ephemeralIdentity,
    hideCaseCount: true,
    reconnect: { initialMs: 1, maxMs: 1, maxTries: 0 },
  });
}

describe('the workshop host with secure aggregation fixed at Start', () => {
  it.each([
    [3, 'ffe' as const, 2],
    [5, 'fedavg' as const, 3],
  ])(
    '%i sites (%s): threshold from the sites present at Start, every round the exact mean within 2^-(f+1), only masked vectors reach the host',
    async (n, method, threshold) => {
      const rounds = 2;
      const trainers = Array.from({ length: n }, (_, i) => {
        const t = new Recorder(layout, i + 1);
        if (method === 'ffe')
          t.localFingerprint = async () =>
            fingerprint(PHANTOMS[i]) as unknown as Record<string, unknown>;
        return t;
      });
      const { f, phases } = await startedSecure(trainers, method, rounds, {
        phaseDeadlineMs: 5000,
      });
      const c = f.host.coordinator;
      // Fixed at Start for n sites (the host had said 1000): what privacyConfig makes for n.
      const want = privacyConfig(
        n,
        { rounds, weighting: 'uniform', minSites: 1 },
        { phaseDeadlineMs: 5000 },
      );
      expect(c.snapshot.config.privacy).toEqual(want);
      expect(want.threshold).toBe(threshold);
      expect(c.snapshot.privacyAtStart).toBeUndefined();

      // A site that comes after the Start is refused, and the federation goes on without it.
      await expect(lateSite(f.host).run()).rejects.toThrow(
        'the relay refused this site: this federation has already started; new sites cannot join',
      );

      const results = await f.survivors();
      expect(results.map((r) => r.rounds)).toEqual(new Array(n).fill(rounds));
      expect(c.roster().length).toBe(n);
      expect(c.snapshot.history.map((h) => h.contributors.length)).toEqual([n, n]);
      for (const { err, bound } of roundErrors(f, trainers, rounds))
        expect(err).toBeLessThanOrEqual(bound);

      // Sites that joined before the Start got the config in the welcome sent then.
      const welcomes = frames(f.sent)
        .filter((m) => m.message.type === 'welcome')
        .map((m) => ({ site: m.site, ...(m.message as Extract<Message, { type: 'welcome' }>) }));
      expect(
        welcomes.filter((w) => w.phase === 'join').every((w) => w.config.privacy === undefined),
      ).toBe(true);
      const atStart = welcomes.filter((w) => w.phase !== 'join');
      expect(atStart.map((w) => w.site).sort()).toEqual(trainers.map((_, i) => `site${i}`));
      expect(atStart.every((w) => JSON.stringify(w.config.privacy) === JSON.stringify(want))).toBe(
        true,
      );

      // The host's view: key exchange and masked vectors; the only plain weights are round 0's
      // untrained initial model; no fingerprint, no case count.
      const view = frames(f.received);
      const types = new Set(view.map((m) => m.message.type));
      expect([...types].sort()).toEqual([
        'hello',
        'secagg-advert',
        'secagg-masked',
        'secagg-reveal',
        'secagg-shares',
        'spec',
        'update',
      ]);
      expect(
        view
          .filter((m) => m.message.type === 'update')
          .map((m) => (m.message as { round: number }).round),
      ).toEqual([0]);
      expect(
        view
          .filter((m) => m.message.type === 'hello')
          .every((m) => (m.message as { numCases: number }).numCases === 0),
      ).toBe(true);
      expect(view.filter((m) => m.message.type === 'secagg-masked').length).toBe(
        n * (rounds + (method === 'ffe' ? 1 : 0)),
      );
      if (method === 'ffe') {
        const merged = fingerprintFromSummary(
          aggregatePrivateSummaries(PHANTOMS.map((d) => summarizeFingerprint(fingerprint(d)))),
        );
        for (const t of trainers)
          expect((t.aggregate as unknown as DatasetFingerprint).spacings).toEqual(merged.spacings);
      }

      // The host's status saw each secure phase of every round in order.
      const order = ['advert', 'shares', 'masked', 'unmask', 'computing'];
      for (let r = 1; r <= rounds; r++)
        expect(
          phases.filter((x) => x.startsWith(`model:${r}:`)).map((x) => x.split(':')[2]),
        ).toEqual(order);
      if (method === 'ffe')
        expect(
          phases.filter((x) => x.startsWith('fingerprint:0:')).map((x) => x.split(':')[2]),
        ).toEqual(order);
      expect(c.secureStatus).toBeUndefined();
    },
  );

  it('with DP: the host records the ε spent after each round, the same the participants are told, within the target', async () => {
    const trainers = Array.from({ length: 3 }, (_, i) => new Recorder(layout, i + 1));
    const { f } = await startedSecure(trainers, 'fedavg', 2, {
      phaseDeadlineMs: 5000,
      dpEpsilon: 50,
      clip: 5,
    });
    const p = f.host.coordinator.snapshot.config.privacy!;
    expect(p.dp).toEqual({
      epsilon: 50,
      delta: 1e-5,
      noiseMultiplier: noiseMultiplier(50, 1e-5, 2),
    });
    const results = await f.survivors();
    const spent = f.host.coordinator.snapshot.history.map((h) => h.privacy!.epsilon);
    expect(spent.length).toBe(2);
    expect(spent[0]).toBeGreaterThan(0);
    expect(spent[1]).toBeGreaterThan(spent[0]);
    // All 3 sites survived, more than the noise divisor (t = 2): more noise than planned, so under the target.
    expect(spent[1]).toBeLessThan(50);
    for (const r of results) expect(r.privacy.map((x) => x.epsilon)).toEqual(spent);
    // The host tab's privacy line.
    expect(privacyText(f.host.coordinator.snapshot)).toBe(
      `Secure aggregation: the host sees only sums; threshold 2 of 3 sites, clip 5. Differential privacy: ε = ${spent[1].toFixed(2)} spent after round 2 (δ = 0.00001; target ε = 50 over 2 rounds).`,
    );
  });

  it("the host tab's lines: asked for before Start, the phase of a secure round, nothing when plain", () => {
    const c = new Coordinator({
      config: { ...hostConfig('ffe', 3), token: 't' },
      privacyAtStart: { dpEpsilon: 8, clip: 1 },
    });
    expect(privacyText(c.snapshot)).toBe(
      'Secure aggregation, differential privacy at ε = 8: the threshold is fixed at Start, from the sites joined then (a majority by default); no site can join after.',
    );
    expect(
      privacyText(new Coordinator({ config: { ...hostConfig('ffe', 3), token: 't' } }).snapshot),
    ).toBe('');
    expect(
      secureStatusText({ round: 2, attempt: 1, kind: 'model', phase: 'masked', participants: 5 }),
    ).toBe('secure round 2: waiting for the masked updates (5 sites)');
    expect(
      secureStatusText({
        round: 0,
        attempt: 2,
        kind: 'fingerprint',
        phase: 'advert',
        participants: 3,
      }),
    ).toBe('secure FFE, attempt 2: sites exchange public keys (3 sites)');
  });
});

describe('Coordinator.privacyAtStart', () => {
  const config = (o: Partial<FederationConfig> = {}) => ({
    ...hostConfig('fedavg', 2),
    token: 't',
    ...o,
  });
  const hello = (c: Coordinator, name: string) =>
    c.handle(undefined, { type: 'hello', token: 't', siteName: name, numCases: 0 });
  const make = (
    o: Partial<CoordinatorOptions> & { privacyAtStart: PrivacyOptions },
    over: Partial<FederationConfig & { expectedSites: number }> = {},
  ) => new Coordinator({ config: config(over), ...o });

  it('refuses options that can never work when the host is created, not at Start', () => {
    expect(() => make({ privacyAtStart: { dpEpsilon: 1 } })).toThrow(
      'differential privacy needs an explicit clip norm C',
    );
    expect(() =>
      make({ privacyAtStart: { dpEpsilon: 1, clip: 1 } }, { weighting: 'cases' }),
    ).toThrow('differential privacy needs uniform weighting');
    expect(() => make({ privacyAtStart: { threshold: 1 } })).toThrow(
      'threshold must be an integer of at least 2, got 1',
    );
    expect(() => make({ privacyAtStart: {} }, { privacy: privacyConfig(3, config()) })).toThrow(
      'privacyAtStart and config.privacy both given',
    );
    expect(() => make({ privacyAtStart: { threshold: 4, clip: 2 } })).not.toThrow();
  });

  it('a Start with fewer sites than the threshold fails and changes nothing; with enough it fixes the config and welcomes every site with it', () => {
    const c = make({ privacyAtStart: { threshold: 3 } });
    const ids = ['a', 'b'].map((n) => hello(c, n).siteId!);
    expect(() => c.startNow()).toThrow(
      'secure aggregation needs at least 3 sites (its threshold); 2 joined',
    );
    expect(c.phase).toBe('join');
    expect(c.snapshot.config.privacy).toBeUndefined();
    expect(c.snapshot.privacyAtStart).toEqual({ threshold: 3 });
    ids.push(hello(c, 'c').siteId!);
    const out = c.startNow();
    expect(c.phase).toBe('spec');
    expect(c.snapshot.config.privacy).toEqual(
      privacyConfig(3, { rounds: 2, weighting: 'uniform', minSites: 1 }, { threshold: 3 }),
    );
    expect(
      out.map((o) => [
        o.to,
        o.message.type,
        (o.message as Extract<Message, { type: 'welcome' }>).config.privacy?.threshold,
      ]),
    ).toEqual(ids.map((id) => [id, 'welcome', 3]));
    // One site alone cannot be secure (default threshold 2).
    const alone = make({ privacyAtStart: {} });
    hello(alone, 'a');
    expect(() => alone.startNow()).toThrow(
      'secure aggregation needs at least 2 sites (its threshold); 1 joined',
    );
  });

  it('reaching expectedSites starts with the config fixed too (never a plain start)', () => {
    const c = make({ privacyAtStart: {} }, { expectedSites: 2 });
    const first = hello(c, 'a');
    expect(
      (first.out[0].message as Extract<Message, { type: 'welcome' }>).config.privacy,
    ).toBeUndefined();
    const second = hello(c, 'b');
    expect(c.phase).toBe('spec');
    const welcomes = second.out
      .filter((o) => o.message.type === 'welcome')
      .map((o) => o.message as Extract<Message, { type: 'welcome' }>);
    expect(welcomes.map((w) => [w.siteId, w.phase, w.config.privacy?.threshold]).sort()).toEqual(
      [
        [first.siteId, 'spec', 2],
        [second.siteId, 'spec', 2],
      ].sort(),
    );
  });

  it('before the Start nothing is taken in the clear either', () => {
    const c = make({ privacyAtStart: {} });
    const id = hello(c, 'a').siteId!;
    const fp = c.handle(id, { type: 'fingerprint', fingerprint: {}, numCases: 1 }).out[0].message;
    expect(fp).toEqual({
      type: 'error',
      message: expect.stringMatching(
        /^this federation uses secure aggregation: fingerprints are only accepted as a secure sum/,
      ),
    });
    const up = c.handle(id, { type: 'update', round: 1, numCases: 1, metrics: {}, tensors: [] })
      .out[0].message;
    expect(up).toEqual({
      type: 'update-result',
      round: 1,
      accepted: false,
      reason: expect.stringMatching(
        /^this federation uses secure aggregation: plain updates are refused/,
      ),
    });
  });
});

describe('privacyOptionsFromFields (the host card)', () => {
  const f = (o: Partial<Parameters<typeof privacyOptionsFromFields>[0]>) =>
    privacyOptionsFromFields({ secure: true, epsilon: '', delta: '', clip: '', ...o });
  it('maps the fields to options; empty means default', () => {
    expect(f({ secure: false })).toBeUndefined();
    expect(f({})).toEqual({});
    expect(f({ clip: '20' })).toEqual({ clip: 20 });
    expect(f({ epsilon: '8', clip: ' 1 ', delta: '1e-6' })).toEqual({
      dpEpsilon: 8,
      dpDelta: 1e-6,
      clip: 1,
    });
    // δ without ε is the form's default, not a request.
    expect(f({ delta: '1e-5' })).toEqual({});
  });
  it('says what is wrong', () => {
    expect(() => f({ epsilon: 'abc', clip: '1' })).toThrow(
      "DP ε must be a positive number, got 'abc'",
    );
    expect(() => f({ clip: '-1' })).toThrow("clip norm must be a positive number, got '-1'");
    expect(() => f({ epsilon: '8' })).toThrow('differential privacy needs a clip norm C');
    expect(() => f({ secure: false, epsilon: '8', clip: '1' })).toThrow(/needs secure aggregation/);
  });
});
