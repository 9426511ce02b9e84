// Dataset fingerprint (spec §2 step 5–6) from per-case summaries. nnU-Net samples the same number of
// foreground voxels from every case, so each case weighs 1/n_cases; we compute the values that sampling
// converges to (reference README §5.2): mean of case means, std = sqrt(mean of case E[x²] − mean²),
// quantiles = min{v : F(v) ≥ q} of the equal-weight mixture CDF, exact min/max. Float32 like nnU-Net.
import type { CaseFingerprint, ForegroundSummary } from './case.ts';
import type { ChannelIntensityProperties, DatasetFingerprint } from './types.ts';
import { median } from '../util/numeric.ts';

/** Fraction of case c's voxels <= v. */
function caseCdf(s: ForegroundSummary, v: number): number {
  // last index with values[i] <= v
  let lo = 0,
    hi = s.values.length - 1,
    at = -1;
  while (lo <= hi) {
    const m = (lo + hi) >> 1;
    if (s.values[m] <= v) {
      at = m;
      lo = m + 1;
    } else hi = m - 1;
  }
  return at < 0 ? 0 : s.cumCounts[at] / s.n;
}

/** Inverse CDF of the equal-weight mixture of the cases: min{v : F(v) >= q}. */
export function mixtureQuantile(cases: readonly ForegroundSummary[], q: number): number {
  const K = cases.length;
  if (K === 0) return NaN;
  // Tolerate float round-off in the sum of fractions so that an exact tie F(v) = q counts as reached.
  const F = (v: number) => {
    let f = 0;
    for (const c of cases) f += caseCdf(c, v);
    return f / K >= q - 1e-12;
  };
  // The answer is a value of some case: per case, the smallest of its values with F >= q; take the min.
  let best = Infinity;
  for (const c of cases) {
    let lo = 0,
      hi = c.values.length - 1,
      found = -1;
    while (lo <= hi) {
      const m = (lo + hi) >> 1;
      if (F(c.values[m])) {
        found = m;
        hi = m - 1;
      } else lo = m + 1;
    }
    if (found >= 0 && c.values[found] < best) best = c.values[found];
  }
  return best;
}

/** Converged foreground statistics of one channel over cases (cases without foreground are skipped). */
export function foregroundProperties(
  summaries: readonly ForegroundSummary[],
): ChannelIntensityProperties {
  const cs = summaries.filter((s) => s.n > 0);
  const K = cs.length;
  const f = Math.fround;
  if (K === 0)
    return {
      max: NaN,
      mean: NaN,
      median: NaN,
      min: NaN,
      percentile_00_5: NaN,
      percentile_99_5: NaN,
      std: NaN,
    };
  const mean = cs.reduce((a, s) => a + s.mean, 0) / K;
  // mean of E[x²] − mean², written with centred terms: mean over cases of (var_c + (mean_c − mean)²).
  const variance = cs.reduce((a, s) => a + s.m2 / s.n + (s.mean - mean) ** 2, 0) / K;
  return {
    max: f(Math.max(...cs.map((s) => s.max))),
    mean: f(mean),
    median: f(mixtureQuantile(cs, 0.5)),
    min: f(Math.min(...cs.map((s) => s.min))),
    percentile_00_5: f(mixtureQuantile(cs, 0.005)),
    percentile_99_5: f(mixtureQuantile(cs, 0.995)),
    std: f(Math.sqrt(variance)),
  };
}

/** DatasetFingerprintExtractor's result from the per-case fingerprints (in case order). */
export function datasetFingerprint(cases: readonly CaseFingerprint[]): DatasetFingerprint {
  if (cases.length === 0) throw new Error('dataset fingerprint needs at least one case');
  const nch = cases[0].foreground.length;
  if (cases.some((c) => c.foreground.length !== nch))
    throw new Error('cases differ in their number of channels');
  const props: Record<string, ChannelIntensityProperties> = {};
  for (let c = 0; c < nch; c++)
    props[String(c)] = foregroundProperties(cases.map((k) => k.foreground[c]));
  return {
    foreground_intensity_properties_per_channel: props,
    median_relative_size_after_cropping: median(cases.map((c) => c.relative_size_after_cropping)),
    shapes_after_crop: cases.map((c) => [...c.shape_after_crop]),
    spacings: cases.map((c) => [...c.spacing]),
  };
}
