// The Federation tab's progress (src/fed/round-progress.ts): "round r of R", the time left from
// measured rounds, and the per-round chart points; and the plural of counts (src/util/plural.ts).
import { describe, expect, it } from 'vitest';
import {
  formatLeft,
  metricPoints,
  progressLine,
  secondsLeft,
  type RoundSeen,
} from '../../src/fed/round-progress.ts';
import { countOf } from '../../src/util/plural.ts';

const r = (
  round: number,
  at: number,
  trainSeconds: number,
  metrics: Record<string, number> = {},
): RoundSeen => ({ round, at, trainSeconds, metrics });

describe('round progress', () => {
  it('estimates the time left from the rounds measured end to end', () => {
    expect(secondsLeft([], 3)).toBeUndefined();
    // Only the first round: its training time, times the rounds left.
    expect(secondsLeft([r(1, 50_000, 8)], 3)).toBe(16);
    // Later: the spans between results (training + waiting + aggregation), mean of the last three.
    expect(secondsLeft([r(1, 50_000, 8), r(2, 62_000, 8)], 5)).toBe(36);
    expect(
      secondsLeft(
        [r(1, 0, 1), r(2, 10_000, 1), r(3, 20_000, 1), r(4, 30_000, 1), r(5, 70_000, 1)],
        7,
      ),
    ).toBe(40);
    expect(secondsLeft([r(3, 0, 5)], 3)).toBe(0);
  });

  it('says round r of R and the time left in words', () => {
    expect(progressLine([], 3)).toBe('');
    expect(progressLine([r(1, 0, 20)], 3)).toBe('round 1 of 3 done · about 40 s left');
    expect(progressLine([r(1, 0, 20), r(2, 30_000, 20), r(3, 60_000, 20)], 3)).toBe(
      'round 3 of 3 done',
    );
    expect(formatLeft(0.4)).toBe('under 1 s left');
    expect(formatLeft(125)).toBe('about 2 min 5 s left');
    expect(formatLeft(120)).toBe('about 2 min left');
    expect(formatLeft(3 * 3600 + 65)).toBe('about 3 h 1 min left');
  });

  it("gives the chart each round's finite points in round order", () => {
    const seen = [
      r(2, 2, 1, { loss: 0.5, pseudoDice: 0.4 }),
      r(1, 1, 1, { loss: 0.9, pseudoDice: Number.NaN }),
      r(3, 3, 1, { loss: 0.3 }),
    ];
    expect(metricPoints(seen, 'loss')).toEqual([
      [1, 0.9],
      [2, 0.5],
      [3, 0.3],
    ]);
    expect(metricPoints(seen, 'pseudoDice')).toEqual([[2, 0.4]]);
  });

  it('counts in words', () => {
    expect(countOf(1, 'message')).toBe('1 message');
    expect(countOf(0, 'message')).toBe('0 messages');
    expect(countOf(2, 'case')).toBe('2 cases');
  });
});
