// What the Federation tab says about a running federation: "round r of R", the time left from the
// rounds measured so far, and the points of the per-round chart. Pure, so it is unit-tested in Node.

/** One finished round as this site saw it. */
export interface RoundSeen {
  round: number;
  /** When the round's result reached the page (ms, any monotonic clock). */
  at: number;
  /** Seconds this site spent training the round (the worker's measure). */
  trainSeconds: number;
  metrics: Record<string, number>;
}

/**
 * Seconds left for `total` rounds after the rounds seen, or undefined before the first one.
 * A round lasts from one result to the next (training here, waiting for the others, aggregation),
 * so later rounds are measured end to end; the first has only its own training time (the time
 * before it also holds fingerprinting and planning, which do not repeat). The mean of the last
 * three rounds follows a federation that speeds up or slows down without jumping on one outlier.
 */
export function secondsLeft(seen: readonly RoundSeen[], total: number): number | undefined {
  if (seen.length === 0) return undefined;
  const last = seen[seen.length - 1];
  const remaining = Math.max(0, total - last.round);
  if (remaining === 0) return 0;
  const spans: number[] = [];
  for (let i = 1; i < seen.length; i++) spans.push((seen[i].at - seen[i - 1].at) / 1000);
  const recent = spans.length ? spans.slice(-3) : [seen[0].trainSeconds];
  const per = recent.reduce((a, b) => a + b, 0) / recent.length;
  return Number.isFinite(per) && per >= 0 ? per * remaining : undefined;
}

/** "about 2 min 5 s left", "under 1 s left". */
export function formatLeft(seconds: number): string {
  if (seconds < 1) return 'under 1 s left';
  const s = Math.round(seconds);
  if (s < 60) return `about ${s} s left`;
  const m = Math.floor(s / 60);
  if (m < 60) return `about ${m} min${s % 60 ? ` ${s % 60} s` : ''} left`;
  return `about ${Math.floor(m / 60)} h ${m % 60} min left`;
}

/** The progress line under the status: "round 2 of 3 done · about 40 s left". */
export function progressLine(seen: readonly RoundSeen[], total: number): string {
  if (seen.length === 0) return '';
  const last = seen[seen.length - 1];
  const left = secondsLeft(seen, total);
  return `round ${last.round} of ${total} done${left === undefined ? '' : left === 0 ? '' : ` · ${formatLeft(left)}`}`;
}

/** The chart's series: a metric per round, in round order, finite values only. */
export function metricPoints(seen: readonly RoundSeen[], metric: string): Array<[number, number]> {
  return seen
    .filter((r) => Number.isFinite(r.metrics[metric]))
    .map((r) => [r.round, r.metrics[metric]] as [number, number])
    .sort((a, b) => a[0] - b[0]);
}
