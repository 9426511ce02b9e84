import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/util/rng.ts';
import { roundHalfEven } from '../../src/util/numeric.ts';
import {
  ANNOTATED_KEY,
  type TrainingCase,
  flatLocations,
  isForcedForeground,
  sampleBatch,
  startBounds,
} from '../../src/train/sampler.ts';

/** A (C, Z, Y, X) case whose data encodes the voxel's own flat index (+ channel offset). */
function makeCase(
  shape: [number, number, number],
  channels: number,
  fg: number[][],
  label = 1,
): TrainingCase {
  const [Z, Y, X] = shape;
  const n = Z * Y * X;
  const data = new Float32Array(channels * n);
  for (let i = 0; i < data.length; i++) data[i] = i + 1; // never 0, so padding is recognisable
  const seg = new Int8Array(n);
  const locs: number[] = [];
  for (const [z, y, x] of fg) {
    const i = (z * Y + y) * X + x;
    seg[i] = label;
    locs.push(i);
  }
  return { data, seg, shape, classLocations: { [String(label)]: locs } };
}

/** Checks every voxel of patch j against the case, given its start: inside copied, outside padded. */
function checkPatch(
  c: TrainingCase,
  b: ReturnType<typeof sampleBatch>,
  j: number,
): { inside: number; outside: number } {
  const [Z, Y, X] = c.shape;
  const [pz, py, px] = b.patchShape;
  const vol = pz * py * px;
  const [sz, sy, sx] = b.starts[j];
  let inside = 0;
  let outside = 0;
  for (let z = 0; z < pz; z++)
    for (let y = 0; y < py; y++)
      for (let x = 0; x < px; x++) {
        const iz = sz + z,
          iy = sy + y,
          ix = sx + x;
        const o = (z * py + y) * px + x;
        const inImg = iz >= 0 && iz < Z && iy >= 0 && iy < Y && ix >= 0 && ix < X;
        const si = (iz * Y + iy) * X + ix;
        for (let ch = 0; ch < b.channels; ch++) {
          const v = b.data[(j * b.channels + ch) * vol + o];
          if (inImg) expect(v).toBe(c.data[ch * Z * Y * X + si]);
          else expect(v).toBe(0);
        }
        const s = b.seg[j * vol + o];
        if (inImg) {
          expect(s).toBe(c.seg[si]);
          inside++;
        } else {
          expect(s).toBe(-1);
          outside++;
        }
      }
  return { inside, outside };
}

describe('patch sampler (spec §7.5)', () => {
  it('round half to even', () => {
    expect([0.5, 1.5, 2.5, 8.5, 3.35, 2.01, -0.5, -1.5].map((v) => roundHalfEven(v) + 0)).toEqual([
      0, 2, 2, 8, 3, 2, 0, -2,
    ]);
  });

  it('oversampling: bs 2 → last 1, bs 12 → last 4, bs 5 → last 2', () => {
    const flags = (bs: number) => Array.from({ length: bs }, (_, j) => isForcedForeground(j, bs));
    expect(flags(2)).toEqual([false, true]);
    expect(flags(12).filter(Boolean).length).toBe(4);
    expect(flags(12).slice(8)).toEqual([true, true, true, true]);
    expect(flags(5)).toEqual([false, false, false, true, true]);
    const b = sampleBatch(
      [makeCase([8, 8, 8], 1, [[4, 4, 4]])],
      { batchSize: 5, patchSize: [4, 4, 4], initialPatchSize: [4, 4, 4] },
      mulberry32(1),
    );
    expect(b.forcedForeground).toEqual([false, false, false, true, true]);
  });

  it('bounds: lb/ub from need_to_pad, and random starts cover exactly [lb, ub]', () => {
    // shape 10, patch 6, need 3 → lb −1, ub 10 + 1 + 1 − 6 = 6
    expect(startBounds([10], [6], [3])).toEqual({ lb: [-1], ub: [6] });
    // image smaller than patch: need raised to patch − shape = 5 → lb −2, ub 3 + 2 + 1 − 8 = −2
    expect(startBounds([3], [8], [0])).toEqual({ lb: [-2], ub: [-2] });
    const c = makeCase([12, 10, 9], 1, []);
    const opts = {
      batchSize: 2,
      patchSize: [4, 6, 5],
      initialPatchSize: [7, 8, 8],
      oversampleForegroundPercent: 0,
    };
    const { lb, ub } = startBounds(c.shape, [7, 8, 8], [3, 2, 3]);
    const seen = [new Set<number>(), new Set<number>(), new Set<number>()];
    const rng = mulberry32(7);
    for (let t = 0; t < 300; t++) {
      const b = sampleBatch([c], opts, rng);
      for (const s of b.starts)
        for (let d = 0; d < 3; d++) {
          expect(s[d]).toBeGreaterThanOrEqual(lb[d]);
          expect(s[d]).toBeLessThanOrEqual(ub[d]);
          seen[d].add(s[d]);
        }
    }
    for (let d = 0; d < 3; d++) expect(seen[d].size).toBe(ub[d] - lb[d] + 1);
  });

  it('forced foreground: patch contains the stored voxel; start = max(lb, v − patch//2) with no upper clamp', () => {
    const fg = [
      [1, 1, 1],
      [10, 9, 8],
      [5, 2, 7],
    ];
    const c = makeCase([11, 10, 9], 2, fg, 3);
    const opts = { batchSize: 2, patchSize: [4, 4, 4], initialPatchSize: [6, 6, 6] };
    const { lb } = startBounds(c.shape, [6, 6, 6], [2, 2, 2]);
    const rng = mulberry32(3);
    let farCorner = 0;
    for (let t = 0; t < 200; t++) {
      const b = sampleBatch([c], opts, rng);
      const s = b.starts[1];
      const hit = fg.find((v) => v.every((vd, d) => s[d] === Math.max(lb[d], vd - 3)));
      expect(hit).toBeDefined();
      const [z, y, x] = hit!.map((vd, d) => vd - s[d]);
      expect(b.seg[216 + (z * 6 + y) * 6 + x]).toBe(3);
      if (hit === fg[1]) {
        farCorner++;
        // (10,9,8) − 3 = (7,6,5) > ub = (6,5,4): patch runs past the border and is padded
        const { outside } = checkPatch(c, b, 1);
        expect(outside).toBeGreaterThan(0);
      }
    }
    expect(farCorner).toBeGreaterThan(30);
  });

  it('forced foreground picks a class uniformly among non-empty ones, never the annotated key when others exist', () => {
    const c = makeCase([10, 10, 10], 1, [[2, 2, 2]], 1);
    c.classLocations['2'] = [(7 * 10 + 7) * 10 + 7];
    c.classLocations['3'] = [];
    c.classLocations[ANNOTATED_KEY] = [0];
    const counts: Record<string, number> = {};
    const rng = mulberry32(11);
    for (let t = 0; t < 400; t++) {
      const b = sampleBatch(
        [c],
        {
          batchSize: 1,
          patchSize: [4, 4, 4],
          initialPatchSize: [4, 4, 4],
          oversampleForegroundPercent: 1,
        },
        rng,
      );
      expect(b.forcedForeground).toEqual([true]);
      const s = b.starts[0];
      const key = s[0] === 0 ? '1' : s[0] === 5 ? '2' : 'other';
      counts[key] = (counts[key] ?? 0) + 1;
    }
    expect(counts.other).toBeUndefined();
    expect(counts['1']).toBeGreaterThan(150);
    expect(counts['2']).toBeGreaterThan(150);
  });

  it('with an ignore label, non-forced samples centre on an annotated voxel', () => {
    const c = makeCase([10, 10, 10], 1, [[1, 1, 1]]);
    c.classLocations[ANNOTATED_KEY] = flatLocations([[0, 8, 7, 6]], c.shape);
    expect(Array.from(c.classLocations[ANNOTATED_KEY])).toEqual([876]);
    const b = sampleBatch(
      [c],
      { batchSize: 2, patchSize: [4, 4, 4], initialPatchSize: [4, 4, 4], hasIgnoreLabel: true },
      mulberry32(4),
    );
    expect(b.forcedForeground).toEqual([false, true]);
    expect(b.starts[0]).toEqual([6, 5, 4]); // annotated voxel − patch//2
    expect(b.starts[1]).toEqual([0, 0, 0]); // forced: class 1 (annotated key dropped), max(lb = 0, 1 − 2)
  });

  it('no foreground: forced samples fall back to a random start', () => {
    const c = makeCase([10, 10, 10], 1, []);
    // bs 1: round(0.67) = 1, so nothing is forced with the default 0.33 (as upstream)
    expect(isForcedForeground(0, 1)).toBe(false);
    const b = sampleBatch(
      [c],
      { batchSize: 2, patchSize: [4, 4, 4], initialPatchSize: [4, 4, 4] },
      mulberry32(5),
    );
    expect(b.forcedForeground).toEqual([false, true]);
    checkPatch(c, b, 1);
  });

  it('padding: outside the image data is 0 and seg −1; inside is copied verbatim', () => {
    const c = makeCase([3, 4, 5], 2, [[1, 1, 1]]);
    c.seg[0] = -1;
    const rng = mulberry32(9);
    let sawOutside = 0;
    for (let t = 0; t < 20; t++) {
      const b = sampleBatch(
        [c, c],
        { batchSize: 2, patchSize: [4, 4, 4], initialPatchSize: [6, 7, 8] },
        rng,
      );
      expect(b.patchShape).toEqual([6, 7, 8]);
      expect(b.data.length).toBe(2 * 2 * 6 * 7 * 8);
      for (let j = 0; j < 2; j++) {
        const { inside, outside } = checkPatch(c, b, j);
        expect(inside).toBe(3 * 4 * 5); // the whole small image fits inside every patch
        sawOutside += outside;
      }
    }
    expect(sawOutside).toBeGreaterThan(0);
  });

  it('2D configurations sample one random slice as a (1, Y, X) patch', () => {
    const c = makeCase([6, 20, 18], 1, [[4, 10, 9]]);
    const rng = mulberry32(21);
    const zs = new Set<number>();
    for (let t = 0; t < 100; t++) {
      const b = sampleBatch(
        [c],
        { batchSize: 2, patchSize: [8, 8], initialPatchSize: [12, 12] },
        rng,
      );
      expect(b.patchShape).toEqual([1, 12, 12]);
      zs.add(b.starts[0][0]);
      expect(b.starts[1][0]).toBe(4); // forced sample: the foreground slice
      checkPatch(c, b, 0);
      checkPatch(c, b, 1);
      // 2D loaders get no padding allowance (upstream sets final = initial): 20 − 12 → starts in [0, 8]
      for (const s of b.starts) {
        expect(s[1]).toBeGreaterThanOrEqual(0);
        expect(s[2]).toBeGreaterThanOrEqual(0);
      }
      expect(b.starts[0][1]).toBeLessThanOrEqual(8);
    }
    expect([...zs].sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('cases are drawn uniformly with replacement', () => {
    const cases = [0, 1, 2].map(() => makeCase([4, 4, 4], 1, []));
    const counts = [0, 0, 0];
    const rng = mulberry32(2);
    for (let t = 0; t < 300; t++)
      for (const i of sampleBatch(
        cases,
        { batchSize: 2, patchSize: [4, 4, 4], initialPatchSize: [4, 4, 4] },
        rng,
      ).caseIndices)
        counts[i]++;
    for (const n of counts) expect(n).toBeGreaterThan(150);
  });
});
