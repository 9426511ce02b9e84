import { describe, expect, it } from 'vitest';
import {
  hardCountsLabels,
  hardCountsRegions,
  PseudoDiceTracker,
} from '../../src/eval/pseudo-dice.ts';

// One-hot-ish logits for a (B, K, N) batch from argmax labels.
function logitsFor(labels: number[][], K: number): Float32Array {
  const B = labels.length,
    n = labels[0].length;
  const out = new Float32Array(B * K * n);
  labels.forEach((row, b) =>
    row.forEach((l, v) => {
      out[(b * K + l) * n + v] = 1;
    }),
  );
  return out;
}

describe('hard counts', () => {
  it('labels: argmax vs target, background dropped, ignore label masked', () => {
    const pred = [
      [0, 1, 1, 2],
      [2, 2, 0, 1],
    ];
    const target = [0, 1, 2, 2, /**/ 2, 3, 1, 1]; // 3 = ignore
    const c = hardCountsLabels(logitsFor(pred, 3), [2, 3, 4], target, 3);
    // class 1: pred at (0,1),(0,2),(1,3); target at (0,1),(1,2),(1,3) → TP 2, FP 1 (0,2), FN 1 (1,2)
    // class 2: pred at (0,3),(1,0) [(1,1) ignored]; target at (0,2),(0,3),(1,0) → TP 2, FP 0, FN 1
    expect(c).toEqual({ tp: [2, 2], fp: [1, 0], fn: [1, 1] });
  });
  it('labels: argmax ties go to the lowest index', () => {
    const logits = Float32Array.from([1, 0, /**/ 1, 2, /**/ 0, 2]); // (1, 3, 2): voxel 0 → 0, voxel 1 → 1
    expect(hardCountsLabels(logits, [1, 3, 2], [0, 1])).toEqual({
      tp: [1, 0],
      fp: [0, 0],
      fn: [0, 0],
    });
  });
  it('regions: sigmoid > 0.5 per channel, last target channel masks', () => {
    // (B=1, R=2, N=3) logits; target (1, 3, 3) with the ignore mask last (voxel 2 ignored).
    const logits = Float32Array.from([2, -1, 5, /**/ 0, 3, 3]);
    const target = [1, 1, 0, /**/ 0, 1, 1, /**/ 0, 0, 1];
    // region 0: p [1,0,(1)] y [1,1,(0)] → TP 1, FN 1; region 1: p [0 (sigmoid(0)=0.5),1,(1)] y [0,1,(1)] → TP 1
    expect(hardCountsRegions(logits, [1, 2, 3], target, true)).toEqual({
      tp: [1, 1],
      fp: [0, 0],
      fn: [1, 0],
    });
  });
});

describe('PseudoDiceTracker', () => {
  it('sums over batches, nanmean over classes, EMA 0.9/0.1 with the first epoch as is', () => {
    const t = new PseudoDiceTracker();
    // Epoch 1: class 1: tp 3+1, fp 1, fn 1 → 8/10 = 0.8; class 2 never present → NaN; class 3: tp 0, fp 2 → 0.
    t.add({ tp: [3, 0, 0], fp: [1, 0, 2], fn: [0, 0, 0] });
    t.add({ tp: [1, 0, 0], fp: [0, 0, 0], fn: [1, 0, 0] });
    const e1 = t.endEpoch();
    expect(e1.dicePerClass[0]).toBeCloseTo(0.8, 15);
    expect(e1.dicePerClass[1]).toBeNaN();
    expect(e1.dicePerClass[2]).toBe(0);
    expect(e1.meanFgDice).toBeCloseTo(0.4, 15);
    expect(e1.ema).toBeCloseTo(0.4, 15);
    expect(e1.isNewBest).toBe(true);
    // Epoch 2: all perfect → 1; ema = 0.9·0.4 + 0.1·1 = 0.46 (> 0.4 → best).
    t.add({ tp: [5, 5, 5], fp: [0, 0, 0], fn: [0, 0, 0] });
    const e2 = t.endEpoch();
    expect(e2.meanFgDice).toBe(1);
    expect(e2.ema).toBeCloseTo(0.46, 15);
    expect(e2.isNewBest).toBe(true);
    // Epoch 3: Dice 0 → ema 0.414, not a new best.
    t.add({ tp: [0, 0, 0], fp: [1, 1, 1], fn: [0, 0, 0] });
    const e3 = t.endEpoch();
    expect(e3.ema).toBeCloseTo(0.414, 15);
    expect(e3.isNewBest).toBe(false);
    expect(t.best).toBeCloseTo(0.46, 15);
    expect(t.emas.length).toBe(3);
  });
  it('an epoch with every class absent gives NaN', () => {
    const t = new PseudoDiceTracker();
    t.add({ tp: [0], fp: [0], fn: [0] });
    const e = t.endEpoch();
    expect(e.meanFgDice).toBeNaN();
    expect(e.ema).toBeNaN();
  });
  it('rejects a changing class count within an epoch', () => {
    const t = new PseudoDiceTracker();
    t.add({ tp: [0, 1], fp: [0, 0], fn: [0, 0] });
    expect(() => t.add({ tp: [0], fp: [0], fn: [0] })).toThrow();
  });
});
