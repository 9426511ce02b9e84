// The few numpy/Python numerics the planner needs, reproduced bit for bit: Python's round is
// half-to-even, numpy's percentile interpolates in a particular way, np.median averages the two
// middle values. Plans must match nnU-Net exactly, so none of these may use Math.round & co.

/** Python 3 round(x) / numpy.round: ties go to the even neighbour (round(2.5) = 2). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f; // exact for |x| < 2^52
  if (diff < 0.5) return f;
  if (diff > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

function sorted(values: readonly number[]): number[] {
  if (values.length === 0) throw new Error('percentile of an empty list');
  return [...values].sort((a, b) => a - b);
}

/**
 * numpy.percentile(values, q) with the default 'linear' method (numpy 1.22+): index (n-1)*q/100 on
 * the sorted values, then numpy's two-sided lerp, which is what makes 10th percentile of
 * [3, 4, 4, 5] come out as exactly 3.3.
 */
export function percentile(values: readonly number[], q: number): number {
  const a = sorted(values);
  const n = a.length;
  const virtualIndex = (n - 1) * (q / 100);
  if (virtualIndex <= 0) return a[0];
  if (virtualIndex >= n - 1) return a[n - 1];
  const lo = Math.floor(virtualIndex);
  const t = virtualIndex - lo;
  const below = a[lo];
  const above = a[lo + 1];
  const diff = above - below;
  return t >= 0.5 ? above - diff * (1 - t) : below + diff * t;
}

/** numpy.median: the middle value, or the mean (a + b) / 2 of the two middle values. */
export function median(values: readonly number[]): number {
  const a = sorted(values);
  const n = a.length;
  const mid = Math.floor(n / 2);
  return n % 2 === 1 ? a[mid] : (a[mid - 1] + a[mid]) / 2;
}

/** Column `axis` of a list of rows. */
export function column(rows: readonly (readonly number[])[], axis: number): number[] {
  return rows.map((r) => r[axis]);
}

/** Per-axis percentile / median of a list of rows (numpy's axis=0). */
export function percentileAxis0(rows: readonly (readonly number[])[], q: number): number[] {
  return rows[0].map((_, axis) => percentile(column(rows, axis), q));
}
export function medianAxis0(rows: readonly (readonly number[])[]): number[] {
  return rows[0].map((_, axis) => median(column(rows, axis)));
}

/** np.prod(float64): a left-to-right product (numpy does not reorder products of short arrays). */
export function prod(values: readonly number[]): number {
  let p = 1;
  for (const v of values) p *= v;
  return p;
}

/** nnU-Net's compute_new_shape: per axis round(old_spacing / new_spacing * old_shape), half-even. */
export function computeNewShape(
  oldShape: readonly number[],
  oldSpacing: readonly number[],
  newSpacing: readonly number[],
): number[] {
  if (oldShape.length !== oldSpacing.length || oldShape.length !== newSpacing.length)
    throw new Error('compute_new_shape: length mismatch');
  return oldShape.map((s, i) => roundHalfEven((oldSpacing[i] / newSpacing[i]) * s));
}

/** np.argsort(values)[-1] for short lists: numpy's insertion sort is stable, so ties go to the later index. */
export function argmaxLastTie(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] >= values[best]) best = i;
  return best;
}

/** np.argmax: ties go to the first index. */
export function argmaxFirst(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
