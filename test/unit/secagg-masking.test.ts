import { describe, expect, it } from 'vitest';
import { dequantize, quantize, clipL2 } from '../../src/fed/secagg/quantize.ts';
import {
  SecAggSite,
  unmaskSum,
  type RoundConfig,
  type SealedShares,
  type SiteAdvert,
} from '../../src/fed/secagg/masking.ts';
import { randomArray } from '../../src/util/rng.ts';

const Q = { fracBits: 16, clip: 1000 };
const L = 3000;

interface Drops {
  /** Shared keys (in U2) but never sent a masked vector. */
  beforeMask?: number[];
  /** Sent a masked vector (in U3) but did not answer the unmasking round. */
  beforeUnmask?: number[];
}

async function round(n: number, t: number, xs: Float32Array[], drops: Drops = {}) {
  const cfg: RoundConfig = {
    n,
    t,
    length: xs[0].length,
    roundId: globalThis.crypto.getRandomValues(new Uint8Array(16)),
  };
  const sites = await Promise.all(xs.map((_, i) => SecAggSite.create(i, cfg)));
  const u1: SiteAdvert[] = sites.map((s) => s.advert());
  const sealed: SealedShares[] = (await Promise.all(sites.map((s) => s.shareKeys(u1)))).flat();
  for (const s of sites)
    await s.receiveShares(
      sealed.filter((m) => m.to === s.id),
      u1,
    );
  const masked = new Map<number, Uint32Array>();
  for (const s of sites)
    if (!drops.beforeMask?.includes(s.id))
      masked.set(s.id, await s.maskedInput(quantize(xs[s.id], Q)));
  const u3 = [...masked.keys()];
  const reveals = sites
    .filter((s) => masked.has(s.id) && !drops.beforeUnmask?.includes(s.id))
    .map((s) => s.unmask(u3));
  const sum = dequantize(await unmaskSum(cfg, u1, masked, reveals), Q);
  return { sum, masked, u3, sites, cfg, u1, reveals };
}

function expectSum(sum: Float64Array, xs: Float32Array[], ids: number[]) {
  const bound = ids.length * 2 ** -(Q.fracBits + 1);
  const clipped = xs.map((x) => clipL2(x, Q.clip).data);
  let maxErr = 0;
  for (let k = 0; k < sum.length; k++) {
    let exact = 0;
    for (const i of ids) exact += clipped[i][k];
    maxErr = Math.max(maxErr, Math.abs(sum[k] - exact));
  }
  expect(maxErr).toBeLessThanOrEqual(bound);
}

const inputs = (n: number) =>
  Array.from({ length: n }, (_, i) => randomArray(L, 100 + i, -0.5, 0.5));

describe('secagg masking (Bonawitz, one round)', () => {
  it('5 sites, no dropout: the unmasked sum equals the plain sum within n·2^-(f+1)', async () => {
    const xs = inputs(5);
    const { sum } = await round(5, 3, xs);
    expectSum(sum, xs, [0, 1, 2, 3, 4]);
  });

  it('site 1 drops after sharing keys, before its masked vector: sum of the 4 survivors', async () => {
    const xs = inputs(5);
    const { sum, u3 } = await round(5, 3, xs, { beforeMask: [1] });
    expect(u3).toEqual([0, 2, 3, 4]);
    expectSum(sum, xs, u3);
  });

  it('sites 1 and 2 drop before masking: sum of the 3 survivors (= t)', async () => {
    const xs = inputs(5);
    const { sum, u3 } = await round(5, 3, xs, { beforeMask: [1, 2] });
    expectSum(sum, xs, u3);
  });

  it('site 3 drops before masking and site 1 after sending its vector: its input still counts', async () => {
    const xs = inputs(5);
    const { sum, u3, reveals } = await round(5, 3, xs, { beforeMask: [3], beforeUnmask: [1] });
    expect(u3).toEqual([0, 1, 2, 4]);
    expect(reveals.map((r) => r.from)).toEqual([0, 2, 4]);
    expectSum(sum, xs, u3);
  });

  it('fewer than t shares cannot unmask: the server refuses and sites refuse |U3| < t', async () => {
    const xs = inputs(5).map((x) => x.subarray(0, 64));
    const cfg: RoundConfig = { n: 5, t: 3, length: 64, roundId: new Uint8Array(16) };
    const sites = await Promise.all(xs.map((_, i) => SecAggSite.create(i, cfg)));
    const u1 = sites.map((s) => s.advert());
    const sealed = (await Promise.all(sites.map((s) => s.shareKeys(u1)))).flat();
    for (const s of sites)
      await s.receiveShares(
        sealed.filter((m) => m.to === s.id),
        u1,
      );
    const masked = new Map<number, Uint32Array>();
    for (const s of sites) masked.set(s.id, await s.maskedInput(quantize(xs[s.id], Q)));
    const two = [sites[0].unmask([0, 1, 2, 3, 4]), sites[1].unmask([0, 1, 2, 3, 4])];
    await expect(unmaskSum(cfg, u1, masked, two)).rejects.toThrow(/threshold/);
    // Bypassing the count check (claiming t = 2): the two reveals hold only t − 1 shares of each
    // degree-2 polynomial, so interpolation yields garbage (out of range for a 32-byte seed except
    // with probability < 2^-100), which combine detects.
    await expect(unmaskSum({ ...cfg, t: 2 }, u1, masked, two)).rejects.toThrow(/inconsistent/);
    expect(() => sites[2].unmask([0, 1])).toThrow(/threshold/);
    // And asking a site a second time with a different U3 (to get both b_j and s_j) is refused.
    expect(() => sites[0].unmask([0, 1, 2])).toThrow(/U3 changed/);
  });

  it('a sealed share cannot be opened by another site, nor the relay', async () => {
    const cfg: RoundConfig = { n: 3, t: 2, length: 4, roundId: new Uint8Array(16) };
    const sites = await Promise.all([0, 1, 2].map((i) => SecAggSite.create(i, cfg)));
    const u1 = sites.map((s) => s.advert());
    const sealed = await sites[0].shareKeys(u1);
    const toOne = sealed.find((m) => m.to === 1)!;
    await expect(sites[2].receiveShares([{ ...toOne, to: 2 }], u1)).rejects.toThrow();
  });
});

describe('secagg: the relay view of one site is independent of its input', () => {
  function stats(m: Uint32Array, x: Float32Array) {
    const u = Float64Array.from(m, (w) => w / 2 ** 32);
    const mean = u.reduce((a, b) => a + b, 0) / u.length;
    const variance = u.reduce((a, b) => a + (b - mean) ** 2, 0) / u.length;
    const xm = x.reduce((a, b) => a + b, 0) / x.length;
    let cov = 0;
    let vx = 0;
    for (let k = 0; k < u.length; k++) {
      cov += (u[k] - mean) * (x[k] - xm);
      vx += (x[k] - xm) ** 2;
    }
    const corr = cov / Math.sqrt(vx * variance * u.length);
    // 16-bucket chi-square on the top 4 bits.
    const counts = new Array<number>(16).fill(0);
    for (const w of m) counts[w >>> 28]++;
    const e = m.length / 16;
    const chi2 = counts.reduce((a, c) => a + (c - e) ** 2 / e, 0);
    return { mean, variance, corr, chi2 };
  }

  it('masked_1 for a structured input x and for x = 0 are both uniform and uncorrelated with x', async () => {
    const n = 8192;
    const x = Float32Array.from({ length: n }, (_, k) => 5 * Math.sin(k / 50) + (k % 7)); // strong pattern
    for (const input of [x, new Float32Array(n)]) {
      const xs = [
        new Float32Array(n),
        input,
        new Float32Array(n),
        new Float32Array(n),
        new Float32Array(n),
      ];
      const { masked, sum } = await round(5, 3, xs);
      const s = stats(masked.get(1)!, x);
      // Uniform on [0, 1): mean 1/2 ± 0.0032 (1σ), variance 1/12; |corr| ~ 1/sqrt(n) = 0.011.
      expect(Math.abs(s.mean - 0.5)).toBeLessThan(0.02);
      expect(Math.abs(s.variance - 1 / 12)).toBeLessThan(0.01);
      expect(Math.abs(s.corr)).toBeLessThan(0.06);
      expect(s.chi2).toBeLessThan(50); // 15 dof: p ≈ 1e-5
      // The plain quantised input itself is far from uniform and strongly correlated with x.
      if (input === x) {
        const plain = stats(quantize(x, Q), x);
        expect(Math.abs(plain.corr) > 0.06 || plain.chi2 > 50).toBe(true);
      }
      // and the protocol still delivers the sum.
      expectSum(sum, xs, [0, 1, 2, 3, 4]);
    }
  });
});
