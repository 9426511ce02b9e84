import { describe, expect, it } from 'vitest';
import { maxAbsDiff, relL2 } from '../../src/util/compare.ts';
import { mulberry32, randomArray } from '../../src/util/rng.ts';

describe('compare', () => {
  it('relL2 of identical arrays is 0 and grows with the error', () => {
    const a = randomArray(100, 7);
    expect(relL2(a, a)).toBe(0);
    const b = a.map((v) => v * 1.01);
    expect(relL2(b, a)).toBeCloseTo(0.01, 6);
    expect(maxAbsDiff([1, 2, 3], [1, 2.5, 3])).toBe(0.5);
    expect(() => relL2([1], [1, 2])).toThrow(/length/);
  });
  it('mulberry32 is deterministic per seed', () => {
    const r1 = mulberry32(42);
    const r2 = mulberry32(42);
    const xs = Array.from({ length: 5 }, () => r1());
    expect(xs).toEqual(Array.from({ length: 5 }, () => r2()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(mulberry32(43)()).not.toBe(xs[0]);
  });
});
