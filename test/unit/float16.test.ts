import { describe, expect, it } from 'vitest';
import { decodeHalf, encodeHalf, fromHalfBits, toHalfBits } from '../../src/util/float16.ts';
import { crc32 } from '../../src/util/crc32.ts';

describe('float16', () => {
  it('encodes known values (IEEE 754 binary16)', () => {
    expect(toHalfBits(1)).toBe(0x3c00);
    expect(toHalfBits(-2)).toBe(0xc000);
    expect(toHalfBits(65504)).toBe(0x7bff); // largest finite
    expect(toHalfBits(65520)).toBe(0x7c00); // rounds up to Inf
    expect(toHalfBits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toHalfBits(2 ** -26)).toBe(0x0000); // below half the smallest subnormal → 0
    expect(toHalfBits(0.1)).toBe(0x2e66);
    expect(toHalfBits(-0)).toBe(0x8000);
    expect(toHalfBits(Infinity)).toBe(0x7c00);
    expect(fromHalfBits(toHalfBits(NaN))).toBeNaN();
    // Ties go to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
    expect(toHalfBits(1 + 2 ** -11)).toBe(0x3c00);
    expect(toHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });
  it('every finite half value survives half → float → half', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = fromHalfBits(h);
      if (Number.isNaN(v)) continue;
      expect(toHalfBits(v)).toBe(h);
    }
  });
  it('relative error of a round trip is at most 2^-11 in the normal range', () => {
    const xs = Float32Array.from({ length: 1000 }, (_, i) => (i - 500) * 0.0137 + 1e-3);
    const back = decodeHalf(encodeHalf(xs));
    for (let i = 0; i < xs.length; i++) {
      if (Math.abs(xs[i]) > 6.2e-5)
        expect(Math.abs(back[i] - xs[i]) / Math.abs(xs[i])).toBeLessThanOrEqual(2 ** -11);
    }
  });
});

describe('crc32', () => {
  it('matches the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });
});
