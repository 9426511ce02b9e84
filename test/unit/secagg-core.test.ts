import { describe, expect, it } from 'vitest';
import {
  checkHeadroom,
  clipL2,
  dequantize,
  quantize,
  addInto,
} from '../../src/fed/secagg/quantize.ts';
import { combine, interpolateAt0, P, shareElement, split } from '../../src/fed/secagg/shamir.ts';
import { randomArray } from '../../src/util/rng.ts';

describe('secagg quantisation', () => {
  const p = { fracBits: 16, clip: 100 };

  it('clips to the L2 norm and leaves short vectors alone', () => {
    const x = randomArray(1000, 1, -1, 1);
    const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, a) => s + a * a, 0));
    const { data, scale } = clipL2(x, 2);
    expect(scale).toBeLessThan(1);
    expect(norm(data)).toBeCloseTo(2, 4);
    expect(clipL2(x, 1e6).data).toEqual(x);
  });

  it('sum of n quantised vectors dequantises within n·2^-(f+1) per element, negatives included', () => {
    const n = 7;
    const raw = Array.from({ length: n }, (_, k) => randomArray(5000, 10 + k, -3, 3 + k / 10));
    const acc = new Uint32Array(5000);
    for (const x of raw) addInto(acc, quantize(x, p));
    // The bound is against the clipped inputs (norm ≈ 120 > C = 100 here, so clipping is active).
    const xs = raw.map((x) => clipL2(x, p.clip).data);
    const got = dequantize(acc, p);
    const bound = n * 2 ** -(p.fracBits + 1);
    let maxErr = 0;
    for (let i = 0; i < got.length; i++) {
      let exact = 0;
      for (const x of xs) exact += x[i];
      maxErr = Math.max(maxErr, Math.abs(got[i] - exact));
    }
    expect(maxErr).toBeLessThanOrEqual(bound);
    expect(maxErr).toBeGreaterThan(0); // the bound is not vacuous at this f
    expect(quantize(new Float32Array([-1]), p)[0]).toBe(2 ** 32 - 2 ** 16); // two's complement
  });

  it('refuses parameters whose n-fold sum could wrap', () => {
    expect(() => checkHeadroom({ fracBits: 16, clip: 100 }, 100)).not.toThrow();
    expect(() => checkHeadroom({ fracBits: 24, clip: 100 }, 2)).toThrow(/overflow/);
    expect(() => quantize(new Float32Array([Number.NaN]), p)).toThrow();
  });
});

describe('secagg Shamir sharing', () => {
  const secret = globalThis.crypto.getRandomValues(new Uint8Array(32));

  it('any t of n shares reconstruct the secret', () => {
    const shares = split(secret, 3, 5);
    for (const pick of [
      [0, 1, 2],
      [4, 2, 0],
      [1, 3, 4],
      [0, 1, 2, 3, 4],
    ]) {
      expect(
        combine(
          pick.map((i) => shares[i]),
          3,
          32,
        ),
      ).toEqual(secret);
    }
    const odd = new Uint8Array([1, 2, 3]);
    expect(combine(split(odd, 2, 2), 2, 3)).toEqual(odd);
  });

  it('t − 1 shares are refused, and interpolating them does not give the secret', () => {
    const shares = split(secret, 3, 5);
    expect(() => combine([shares[0], shares[3]], 3, 32)).toThrow(/need 3/);
    expect(() => combine([shares[0], shares[0], shares[1]], 3, 32)).toThrow(/duplicate/);
    const truth = BigInt(
      '0x' + [...secret.subarray(0, 15)].map((b) => b.toString(16).padStart(2, '0')).join(''),
    );
    const guess = interpolateAt0(
      [shares[0], shares[3]].map((s) => [BigInt(s.x), shareElement(s, 0)]),
    );
    expect(guess).not.toBe(truth);
  });

  it('t − 1 shares look uniform whatever the secret', () => {
    // t = 2: one share is the secret plus a uniform field element, so its distribution must not
    // depend on the secret. Compare the all-zero secret with the all-0xff secret.
    const frac = (sec: Uint8Array) => {
      let low = 0;
      for (let k = 0; k < 400; k++) if (shareElement(split(sec, 2, 3)[0], 0) < P / 2n) low++;
      return low / 400;
    };
    for (const sec of [new Uint8Array(15), new Uint8Array(15).fill(0xff)]) {
      const f = frac(sec);
      expect(f).toBeGreaterThan(0.4);
      expect(f).toBeLessThan(0.6);
    }
  });

  it('detects shares that do not fit a secret of the stated size', () => {
    const shares = split(secret, 3, 5);
    const tampered = { x: shares[2].x, y: shares[2].y.slice() };
    tampered.y[5] ^= 0xff;
    // Usually an out-of-range chunk; otherwise a different secret. Never the true secret.
    let out: Uint8Array | null = null;
    try {
      out = combine([shares[0], shares[1], tampered], 3, 32);
    } catch {
      out = null;
    }
    if (out) expect(out).not.toEqual(secret);
  });
});
