import { describe, expect, it } from 'vitest';
import { deepSupervisionTargets, dsTargetShapes } from '../../src/train/ds-targets.ts';
import { deepSupervisionWeights } from '../../src/train/loss.ts';

describe('deep supervision (spec §7.4)', () => {
  it('weights for 5 outputs: [0.5333, 0.2667, 0.1333, 0.0667, 0]', () => {
    const w = deepSupervisionWeights(5);
    [0.5333, 0.2667, 0.1333, 0.0667, 0].forEach((v, i) => expect(w[i]).toBeCloseTo(v, 4));
    expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(deepSupervisionWeights(2)).toEqual([1, 0]);
  });

  it('shapes = round(shape / cumprod(strides)) without the bottleneck', () => {
    const s = dsTargetShapes(
      [32, 64, 64],
      [
        [1, 1, 1],
        [2, 2, 2],
        [2, 2, 2],
        [1, 2, 2],
        [1, 2, 2],
        [1, 2, 2],
      ],
    );
    expect(s).toEqual([
      [32, 64, 64],
      [16, 32, 32],
      [8, 16, 16],
      [8, 8, 8],
      [8, 4, 4],
    ]);
  });

  it('targets: nearest-exact to round-half-even(shape·scale), per sample', () => {
    const [Z, Y, X] = [5, 8, 7];
    const seg = new Int16Array(2 * Z * Y * X);
    for (let b = 0; b < 2; b++)
      for (let z = 0; z < Z; z++)
        for (let y = 0; y < Y; y++)
          for (let x = 0; x < X; x++)
            seg[((b * Z + z) * Y + y) * X + x] = b * 1000 + z * 100 + y * 10 + x;
    const t = deepSupervisionTargets(
      seg,
      2,
      [Z, Y, X],
      [
        [1, 1, 1],
        [2, 2, 2],
        [2, 2, 2],
      ],
    );
    expect(t[0].seg).toBe(seg); // full resolution is passed through
    expect(t[1].shape).toEqual([2, 4, 4]); // round(2.5) = 2, 4, round(3.5) = 4
    const zi = [1, 3],
      yi = [1, 3, 5, 7],
      xi = [0, 2, 4, 6]; // floor((i + 0.5)·in/out)
    const expected: number[] = [];
    for (let b = 0; b < 2; b++)
      for (const z of zi)
        for (const y of yi) for (const x of xi) expected.push(b * 1000 + z * 100 + y * 10 + x);
    expect(Array.from(t[1].seg)).toEqual(expected);
    expect(t[1].seg).toBeInstanceOf(Int16Array);
    // 2D
    const s2 = Int8Array.from({ length: 6 * 4 }, (_, i) => i);
    const t2 = deepSupervisionTargets(
      s2,
      1,
      [6, 4],
      [
        [4, 2],
        [1, 1],
      ],
    );
    expect(t2[0].shape).toEqual([2, 2]); // round(1.5) = 2
    expect(Array.from(t2[0].seg)).toEqual([1 * 4 + 1, 1 * 4 + 3, 4 * 4 + 1, 4 * 4 + 3]); // y: floor(.5·3)=1, floor(1.5·3)=4
  });
});
