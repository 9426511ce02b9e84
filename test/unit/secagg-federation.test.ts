// Secure aggregation wired through the coordinator and the site client (in memory): what the
// relay receives, dropouts, failures, malformed messages, FFE and AsymFedAvg under secure sums.
import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  encodeMessage,
  type FederationConfig,
  type Message,
} from '../../src/fed/protocol.ts';
import { privacyConfig } from '../../src/fed/secagg/config.ts';
import { encodeSiteVector } from '../../src/fed/secagg/vector.ts';
import { combine, type Share } from '../../src/fed/secagg/shamir.ts';
import { prg } from '../../src/fed/secagg/masking.ts';
import { subInto } from '../../src/fed/secagg/quantize.ts';
import { fromB64, wordsOf } from '../../src/fed/secagg/wire.ts';
import type { NamedWeights, WeightSpec } from '../../src/model/named-weights.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import {
  frames,
  handSite,
  memFederation,
  type Drop,
  type MemFederation,
} from './helpers/mem-federation.ts';

const layout: WeightSpec = [
  { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [64, 8, 3, 3, 3] },
  { name: 'encoder.stages.0.0.convs.0.norm.weight', shape: [64] },
  { name: 'decoder.seg_layers.0.weight', shape: [3, 64, 1, 1, 1] },
];
const PARAMS = layout.reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);

/** MockTrainer that records its delta (weights after training − the global it loaded) per round. */
class Recorder extends MockTrainer {
  deltas = new Map<number, NamedWeights>();
  override async train(round: number) {
    const before = await this.weights();
    const m = await super.train(round);
    const after = await this.weights();
    this.deltas.set(
      round,
      new Map(
        [...after].map(([k, t]) => [
          k,
          { shape: t.shape, data: t.data.map((v, i) => v - before.get(k)!.data[i]) },
        ]),
      ),
    );
    return m;
  }
}

function secureConfig(
  n: number,
  over: Partial<FederationConfig> = {},
  privacy: Parameters<typeof privacyConfig>[2] = {},
): FederationConfig & { expectedSites: number } {
  const base = {
    method: 'fedavg' as const,
    configuration: '3d_fullres' as const,
    rounds: 1,
    itersPerRound: 1,
    minSites: 2,
    roundDeadlineMs: 5000,
    weighting: 'uniform' as const,
    encoding: 'fp32' as const,
    ...over,
  };
  return {
    ...base,
    expectedSites: n,
    privacy: privacyConfig(n, base, { phaseDeadlineMs: 2000, ...privacy }),
  };
}

async function initialGlobal(seed: number): Promise<NamedWeights> {
  const t = new MockTrainer(layout, seed);
  await t.prepare(null, {} as FederationConfig);
  return t.w;
}

const decoded = (f: MemFederation, from: 'received' | 'sent') => frames(f[from]);

/** max |(relay's new global − initial global) − mean of the clipped deltas of `ids`| and the bound. */
/** The trainer of the site that joined first: its initial weights became the global model. */
function firstSite<T>(f: MemFederation, trainers: T[]): T {
  return trainers[Number(f.host.coordinator.roster()[0].siteName.slice(4))];
}

async function aggregateError(
  f: MemFederation,
  trainers: Recorder[],
  ids: number[],
  clip = Infinity,
) {
  const g0 = await initialGlobal(firstSite(f, trainers).seed);
  const g1 = f.host.coordinator.global!;
  const f_ = f.host.coordinator.snapshot.config.privacy!.fracBits;
  const clipped = ids.map((i) => {
    const d = trainers[i].deltas.get(1)!;
    const norm = Math.sqrt(
      [...d.values()].reduce((a, t) => a + t.data.reduce((s, v) => s + v * v, 0), 0),
    );
    const s = norm > clip ? clip / norm : 1;
    return new Map([...d].map(([k, t]) => [k, Float32Array.from(t.data, (v) => v * s)]));
  });
  let err = 0;
  let bound = 0;
  for (const { name } of layout) {
    const a = g0.get(name)!.data;
    const b = g1.get(name)!.data;
    for (let k = 0; k < a.length; k++) {
      const exact = clipped.reduce((s, c) => s + c.get(name)![k], 0) / ids.length;
      err = Math.max(err, Math.abs(b[k] - a[k] - exact));
      // n·2^-(f+1) summed rounding over Σw = n, plus float32 rounding of the mean and of the new global.
      bound = Math.max(bound, 2 ** -(f_ + 1) + 2 ** -24 * (Math.abs(b[k]) + Math.abs(exact)) * 2);
    }
  }
  return { err, bound };
}

describe('secure aggregation through the relay (in memory, mock trainers)', () => {
  it("(a) the relay's view: only masked vectors, each independent of its site's update; the sum equals the weighted average within n·2^-(f+1)/n", async () => {
    const n = 5;
    const trainers = Array.from({ length: n }, (_, i) => new Recorder(layout, i + 1, 3 + i));
    const f = memFederation({
      config: secureConfig(n, { minSites: n }, { clip: 20 }),
      trainers,
      log: process.env.SA_DEBUG ? console.log : undefined,
    });
    const results = await f.survivors();
    expect(results.map((r) => r.rounds)).toEqual([1, 1, 1, 1, 1]);

    const view = decoded(f, 'received');
    // Nothing but key exchange and masked vectors; the one plain weight upload is round 0's initial
    // (untrained) model, and hello carries no case count.
    expect(new Set(view.map((m) => m.message.type))).toEqual(
      new Set([
        'hello',
        'spec',
        'update',
        'secagg-advert',
        'secagg-shares',
        'secagg-masked',
        'secagg-reveal',
      ]),
    );
    expect(
      view
        .filter((m) => m.message.type === 'update')
        .map((m) => (m.message as Extract<Message, { type: 'update' }>).round),
    ).toEqual([0]);
    expect(
      view
        .filter((m) => m.message.type === 'hello')
        .every((m) => (m.message as Extract<Message, { type: 'hello' }>).numCases === 0),
    ).toBe(true);

    const p = f.host.coordinator.snapshot.config.privacy!;
    const participants = (
      decoded(f, 'sent').find((m) => m.message.type === 'secagg-open')!.message as Extract<
        Message,
        { type: 'secagg-open' }
      >
    ).participants;
    const siteOf = (id: string) =>
      Number(
        f.host.coordinator
          .roster()
          .find((x) => x.siteId === id)!
          .siteName.slice(4),
      );
    const indexOf = (k: number) => participants.findIndex((id) => siteOf(id) === k);
    const reveals = view
      .filter((m) => m.message.type === 'secagg-reveal')
      .map((m) => ({
        from: indexOf(Number(m.site.slice(4))),
        r: m.message as Extract<Message, { type: 'secagg-reveal' }>,
      }));
    expect(reveals.length).toBe(n);
    for (const m of view.filter((x) => x.message.type === 'secagg-masked')) {
      const k = Number(m.site.slice(4));
      const index = indexOf(k);
      const masked = wordsOf(
        m.payload,
        (m.message as Extract<Message, { type: 'secagg-masked' }>).length,
      );
      // The site's own quantised vector, as it would have been without masks (no DP noise here).
      const q = encodeSiteVector(trainers[k].deltas.get(1)!, layout, {
        clip: p.clip,
        fracBits: p.fracBits,
        weight: 1,
        bound: p.clip,
        noiseStd: 0,
      }).vector;
      expect(masked.length).toBe(PARAMS + 1);
      const equal = masked.filter((w, i) => w === q[i]).length;
      expect(equal).toBeLessThanOrEqual(2); // expected 2^-32·L ≈ 0 for a uniform mask
      // Uniform over Z_2^32 and uncorrelated with q: chi-square of the top 4 bits (15 dof, p ≈ 1e-6 at 50)
      // and the correlation of the words read as int32.
      const bins = new Array(16).fill(0);
      for (const w of masked) bins[w >>> 28]++;
      const e = masked.length / 16;
      expect(bins.reduce((s, c) => s + (c - e) ** 2 / e, 0)).toBeLessThan(50);
      const a = Array.from(masked, (w) => w | 0);
      const b = Array.from(q, (w) => w | 0);
      const mean = (x: number[]) => x.reduce((s, v) => s + v, 0) / x.length;
      const [ma, mb] = [mean(a), mean(b)];
      let sab = 0,
        saa = 0,
        sbb = 0;
      for (let i = 0; i < a.length; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) ** 2;
        sbb += (b[i] - mb) ** 2;
      }
      expect(Math.abs(sab / Math.sqrt(saa * sbb))).toBeLessThan(5 / Math.sqrt(a.length));
      // The strongest single-site attack with this view: every site survived, so the relay holds t+
      // shares of each b_i and rebuilds the self-mask — but no share at all of any s_i, so the
      // pairwise masks stay on: masked_i − PRG(b_i) still differs from q almost everywhere.
      const bShares: Share[] = reveals.map(({ from, r }) => ({
        x: from + 1,
        y: fromB64(r.b.find((s) => s.of === index)!.y, 48, 'y'),
      }));
      expect(reveals.every(({ r }) => r.s.length === 0)).toBe(true);
      const selfMask = await prg(combine(bShares, p.threshold, 32), masked.length);
      const unSelfMasked = subInto(Uint32Array.from(masked), selfMask);
      expect(unSelfMasked.filter((w, i) => w === q[i]).length).toBeLessThanOrEqual(2);
    }
    // While the sum is the plain weighted average of the clipped deltas, within the stated bound.
    const { err, bound } = await aggregateError(f, trainers, [0, 1, 2, 3, 4], 20);
    expect(err).toBeLessThanOrEqual(bound);
    expect(2 ** -(p.fracBits + 1)).toBeLessThan(1e-5);
    expect(f.host.coordinator.snapshot.history[0].contributors.length).toBe(5);
  });

  const dropCases: Array<[string, number | undefined, Drop[], number[]]> = [
    [
      'one site leaves after uploading its masked update',
      undefined,
      [{ site: 4, after: 'received', type: 'update-result', round: 1 }],
      [0, 1, 2, 3, 4],
    ],
    [
      'two sites leave after uploading',
      undefined,
      [
        { site: 3, after: 'received', type: 'update-result', round: 1 },
        { site: 4, after: 'received', type: 'update-result', round: 1 },
      ],
      [0, 1, 2, 3, 4],
    ],
    [
      'one leaves before uploading (its masks are removed through its key shares), one after',
      undefined,
      [
        { site: 2, after: 'received', type: 'secagg-inbox' },
        { site: 4, after: 'received', type: 'update-result', round: 1 },
      ],
      [0, 1, 3, 4],
    ],
    [
      'with t = 2: one leaves before uploading and two after',
      2,
      [
        { site: 1, after: 'received', type: 'secagg-inbox' },
        { site: 3, after: 'received', type: 'update-result', round: 1 },
        { site: 4, after: 'received', type: 'update-result', round: 1 },
      ],
      [0, 2, 3, 4],
    ],
  ];
  it.each(dropCases)(
    '(b) 5 sites, %s: the round completes with the sum of the sites whose vectors arrived',
    async (_name, threshold, drops, u3) => {
      const trainers = Array.from({ length: 5 }, (_, i) => new Recorder(layout, i + 1));
      const f = memFederation({
        config: secureConfig(5, {}, threshold ? { threshold } : {}),
        trainers,
        drops,
      });
      const survivors = await f.survivors();
      expect(survivors.length).toBe(5 - drops.length);
      expect(survivors.every((r) => r.rounds === 1)).toBe(true);
      const h = f.host.coordinator.snapshot.history;
      expect(h.length).toBe(1);
      expect(
        h[0].contributors
          .map((id) => f.host.coordinator.roster().find((x) => x.siteId === id)!.siteName)
          .sort(),
      ).toEqual(u3.map((k) => `site${k}`));
      const { err, bound } = await aggregateError(f, trainers, u3);
      expect(err).toBeLessThanOrEqual(bound);
    },
  );

  it('(c) fewer than t sites answer the unmasking round: the round fails cleanly, the global model is kept, no retry below the quorum', async () => {
    const trainers = Array.from({ length: 5 }, (_, i) => new Recorder(layout, i + 1));
    const drops: Drop[] = [
      { site: 1, after: 'received', type: 'secagg-inbox' },
      { site: 3, after: 'received', type: 'update-result', round: 1 },
      { site: 4, after: 'received', type: 'update-result', round: 1 },
    ];
    const f = memFederation({ config: secureConfig(5), trainers, drops });
    const c = f.host.coordinator;
    for (
      let i = 0;
      i < 300 && !decoded(f, 'sent').some((m) => m.message.type === 'round-failed');
      i++
    )
      await new Promise((ok) => setTimeout(ok, 10));
    const failed = decoded(f, 'sent').filter((m) => m.message.type === 'round-failed');
    expect(failed.map((m) => m.site).sort()).toEqual(['site0', 'site2']);
    const msg = failed[0].message as Extract<Message, { type: 'round-failed' }>;
    expect(msg.reason).toBe(
      'round 1 failed: only 2 of the 4 sites with a masked update answered the unmasking round; secure aggregation needs 3; the initial model is kept',
    );
    expect(msg.retry).toBe(true);
    // Previous global kept, nothing recorded, and no new attempt with only 2 < 3 sites connected.
    const g0 = await initialGlobal(firstSite(f, trainers).seed);
    for (const [name, t] of c.global!) expect([...t.data]).toEqual([...g0.get(name)!.data]);
    expect(c.snapshot.history).toEqual([]);
    expect(c.phase).toBe('rounds');
    expect(decoded(f, 'sent').filter((m) => m.message.type === 'secagg-open').length).toBe(5);
    f.clients.forEach((x) => x.stop());
  });

  it('(c) fewer than t sites advertise keys: refused at the first phase', async () => {
    const trainers = Array.from({ length: 3 }, (_, i) => new Recorder(layout, i + 1));
    // Two of three sites vanish on seeing the secure round open: 1 advertiser < t = 2.
    const drops: Drop[] = [1, 2].map((site) => ({
      site,
      after: 'received',
      type: 'secagg-open',
      round: 1,
    }));
    const f = memFederation({ config: secureConfig(3), trainers, drops });
    for (
      let i = 0;
      i < 300 && !decoded(f, 'sent').some((m) => m.message.type === 'round-failed');
      i++
    )
      await new Promise((ok) => setTimeout(ok, 10));
    const msg = decoded(f, 'sent').find((m) => m.message.type === 'round-failed')!
      .message as Extract<Message, { type: 'round-failed' }>;
    expect(msg.reason).toMatch(
      /^round 1 failed: only 1 of 3 sites advertised keys; secure aggregation needs 2/,
    );
    expect(f.host.coordinator.snapshot.history).toEqual([]);
    f.clients.forEach((x) => x.stop());
  });

  it('(d) malformed or plain messages are rejected with clear errors; the honest sites finish', async () => {
    const trainers = Array.from({ length: 4 }, (_, i) => new Recorder(layout, i + 1));
    // Site 3 sends a truncated masked vector.
    const tamper = (site: number, bytes: Uint8Array) => {
      const { message, payload } = decodeMessage(bytes);
      if (site === 3 && message.type === 'secagg-masked')
        return encodeMessage(message, payload.subarray(0, payload.length - 4));
      return bytes;
    };
    const f = memFederation({ config: secureConfig(4, { minSites: 3 }), trainers, tamper });
    const survivors = await f.survivors();
    expect(survivors.map((r) => r.rounds)).toEqual([1, 1, 1, 1]);
    const rejected = decoded(f, 'sent').filter(
      (m) =>
        m.message.type === 'update-result' &&
        !(m.message as Extract<Message, { type: 'update-result' }>).accepted,
    );
    expect(
      rejected.map((m) => [
        m.site,
        (m.message as Extract<Message, { type: 'update-result' }>).reason,
      ]),
    ).toEqual([
      [
        'site3',
        `secagg-masked rejected: payload holds ${(PARAMS + 1) * 4 - 4} bytes, a vector of ${PARAMS + 1} words needs ${(PARAMS + 1) * 4}`,
      ],
    ]);
    expect(f.host.coordinator.snapshot.history[0].contributors.length).toBe(3);
    const { err, bound } = await aggregateError(f, trainers, [0, 1, 2]);
    expect(err).toBeLessThanOrEqual(bound);
  });

  it('(d) a hand-written site: plain updates and fingerprints refused, bad keys and shares rejected by name', async () => {
    const trainers = [new Recorder(layout, 1), new Recorder(layout, 2)];
    const f = memFederation({
      config: secureConfig(3, { minSites: 2, roundDeadlineMs: 1500 }, { threshold: 2 }),
      trainers,
    });
    const replies: Message[] = [];
    // Join last, so an honest site is the first (it sends the initial model).
    for (let i = 0; i < 300 && f.host.coordinator.roster().length < 2; i++)
      await new Promise((ok) => setTimeout(ok, 5));
    const link = await handSite(f.host, (fr) => replies.push(fr.message));
    const send = (m: Message, payload?: Uint8Array) => link.send(encodeMessage(m, payload));
    send({ type: 'hello', token: 'mem', siteName: 'evil', numCases: 0 });
    send({ type: 'spec', spec: layout });
    for (let i = 0; i < 300 && !replies.some((m) => m.type === 'secagg-open'); i++)
      await new Promise((ok) => setTimeout(ok, 10));
    const open = replies.find(
      (m): m is Extract<Message, { type: 'secagg-open' }> => m.type === 'secagg-open',
    )!;
    send({ type: 'fingerprint', fingerprint: {}, numCases: 1 });
    send({ type: 'update', round: 1, numCases: 1, metrics: {}, tensors: [] });
    // Not base64: refused by the frame schema before the coordinator sees it.
    send({
      type: 'secagg-advert',
      round: open.round,
      attempt: open.attempt,
      cPub: 'not base64!',
      sPub: 'AAAA',
    });
    // Well-formed base64 of the wrong length.
    send({
      type: 'secagg-advert',
      round: open.round,
      attempt: open.attempt,
      cPub: 'AAAA',
      sPub: 'AAAA',
    });
    for (
      let i = 0;
      i < 300 && replies.filter((m) => m.type === 'error' || m.type === 'update-result').length < 4;
      i++
    )
      await new Promise((ok) => setTimeout(ok, 10));
    const texts = replies
      .filter((m) => m.type === 'error' || m.type === 'update-result')
      .map((m) =>
        m.type === 'error' ? m.message : (m as Extract<Message, { type: 'update-result' }>).reason,
      );
    expect(texts).toEqual([
      'this federation uses secure aggregation: fingerprints are only accepted as a secure sum (secagg rounds), never in the clear',
      'this federation uses secure aggregation: plain updates are refused; the site must send a masked update (secagg rounds)',
      "'secagg-advert' message has an invalid 'cPub'",
      'secagg-advert rejected: cPub has 3 bytes, expected 65',
    ]);
    // The two honest sites finish the round without the evil one.
    const survivors = await f.survivors();
    expect(survivors.map((r) => r.rounds)).toEqual([1, 1]);
  });
});
