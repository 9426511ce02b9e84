// Federated Fingerprint Extraction (FFE). Two variants:
//  * aggregateFingerprints: FednnU-Net's aggregate_fingerprints (spec §3.1). Clients send their
//    whole dataset_fingerprint, per-case spacings and shapes included.
//  * the private variant: clients send a PrivateFingerprintSummary without per-case rows; the
//    relay merges summaries and expands them to a fingerprint the planner turns into exactly the
//    same plans. docs/ffe-privacy.md says what each variant reveals.
import type { ChannelIntensityProperties, DatasetFingerprint } from './types.ts';

type IntensityTable = Record<string, ChannelIntensityProperties>;

const WEIGHTED_KEYS = ['mean', 'median', 'std', 'percentile_00_5', 'percentile_99_5'] as const;

function weightedMean(values: readonly number[], weights: readonly number[]): number {
  let num = 0;
  let den = 0;
  for (let k = 0; k < values.length; k++) {
    num += weights[k] * values[k];
    den += weights[k];
  }
  return num / den;
}

function checkWeights(n: number, weights: readonly number[]): void {
  if (weights.length !== n)
    throw new Error(`need one weight per client: ${weights.length} weights for ${n} clients`);
  if (!weights.every((w) => Number.isFinite(w) && w > 0))
    throw new Error('weights must be positive numbers');
}

/** Max/min of max/min; case-count-weighted mean of the rest. Channel sets must agree. */
function aggregateIntensities(
  tables: readonly IntensityTable[],
  weights: readonly number[],
): IntensityTable {
  const channels = Object.keys(tables[0]);
  for (const t of tables) {
    const keys = Object.keys(t);
    if (keys.length !== channels.length || !channels.every((c) => c in t)) {
      throw new Error(
        `clients disagree on image channels: [${channels}] vs [${keys}]; FFE needs the same channels everywhere`,
      );
    }
  }
  const out: IntensityTable = {};
  for (const c of channels) {
    const props = tables.map((t) => t[c]);
    // FednnUNet takes max/min through torch.tensor(...).item(), i.e. via float32.
    const agg = {
      max: Math.fround(Math.max(...props.map((p) => p.max))),
      min: Math.fround(Math.min(...props.map((p) => p.min))),
    } as ChannelIntensityProperties;
    for (const k of WEIGHTED_KEYS)
      agg[k] = weightedMean(
        props.map((p) => p[k]),
        weights,
      );
    // Key order as nnU-Net writes it (alphabetical).
    out[c] = {
      max: agg.max,
      mean: agg.mean,
      median: agg.median,
      min: agg.min,
      percentile_00_5: agg.percentile_00_5,
      percentile_99_5: agg.percentile_99_5,
      std: agg.std,
    };
  }
  return out;
}

/**
 * FednnUNet's aggregate_fingerprints: max/min of max/min, weighted means of the intensity
 * statistics and of median_relative_size_after_cropping, spacings and shapes_after_crop
 * concatenated in client order. Weights default to each client's case count.
 */
export function aggregateFingerprints(
  clients: readonly DatasetFingerprint[],
  weights?: readonly number[],
): DatasetFingerprint {
  if (clients.length === 0) throw new Error('no fingerprints to aggregate');
  const w = weights ?? clients.map((c) => c.shapes_after_crop.length);
  checkWeights(clients.length, w);
  return {
    foreground_intensity_properties_per_channel: aggregateIntensities(
      clients.map((c) => c.foreground_intensity_properties_per_channel),
      w,
    ),
    median_relative_size_after_cropping: weightedMean(
      clients.map((c) => c.median_relative_size_after_cropping),
      w,
    ),
    shapes_after_crop: clients.flatMap((c) => c.shapes_after_crop.map((s) => [...s])),
    spacings: clients.flatMap((c) => c.spacings.map((s) => [...s])),
  };
}

// ---------------------------------------------------------------------------------------------
// Private variant.
//
// What the planner reads from spacings and shapes_after_crop is all per axis: per-axis medians
// and percentiles of the spacings and of the shapes, and per case and axis
// round(spacing/target · size) (compute_new_shape works axis by axis). So for each axis the
// multiset of (spacing, size) pairs determines the plans; which pairs belong to the same case,
// and the case order, do not matter. A summary therefore keeps, per axis, the distinct spacings
// with the sorted sizes of the cases that have that spacing, and nothing that links axes.

/** Version tag of the summary message (a string, so it adds no number to the payload). */
export const PRIVATE_FORMAT = 'v1';

/**
 * [spacing, sizes]: a spacing value that occurs on this axis, and the sizes after crop along this
 * axis of the cases with that spacing, ascending. A tuple keeps the message small.
 */
export type AxisSpacingGroup = [spacing: number, sizes: number[]];

export interface PrivateFingerprintSummary {
  private_ffe: typeof PRIVATE_FORMAT;
  foreground_intensity_properties_per_channel: IntensityTable;
  median_relative_size_after_cropping: number;
  /** One entry per axis (z, y, x), each a list of groups in ascending spacing. */
  axes: AxisSpacingGroup[][];
}

function groupAxis(pairs: readonly [number, number][]): AxisSpacingGroup[] {
  const bySpacing = new Map<number, number[]>();
  for (const [spacing, size] of pairs) {
    const list = bySpacing.get(spacing);
    if (list) list.push(size);
    else bySpacing.set(spacing, [size]);
  }
  return [...bySpacing.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([spacing, sizes]): AxisSpacingGroup => [spacing, sizes.sort((a, b) => a - b)]);
}

/** What a client sends in the private variant, computed from its local fingerprint. */
export function summarizeFingerprint(fp: DatasetFingerprint): PrivateFingerprintSummary {
  if (fp.spacings.length !== fp.shapes_after_crop.length || fp.spacings.length === 0)
    throw new Error(
      'fingerprint: spacings and shapes_after_crop must list the same, non-zero number of cases',
    );
  const dims = fp.spacings[0].length;
  const axes = Array.from({ length: dims }, (_, a) =>
    groupAxis(fp.spacings.map((s, i) => [s[a], fp.shapes_after_crop[i][a]] as [number, number])),
  );
  return {
    private_ffe: PRIVATE_FORMAT,
    foreground_intensity_properties_per_channel: structuredClone(
      fp.foreground_intensity_properties_per_channel,
    ),
    median_relative_size_after_cropping: fp.median_relative_size_after_cropping,
    axes,
  };
}

/** Number of cases a summary stands for (the same on every axis). */
export function summaryCaseCount(s: PrivateFingerprintSummary): number {
  const counts = s.axes.map((groups) => groups.reduce((n, g) => n + g[1].length, 0));
  if (counts.length === 0 || counts.some((c) => c !== counts[0]))
    throw new Error('private fingerprint: axes disagree on the number of cases');
  return counts[0];
}

/**
 * The relay's merge of private summaries: the same intensity rule as FFE (weights default to the
 * case counts), and per axis the union of the (spacing, size) multisets. The result is again a
 * summary (of the pooled cases) and is what goes back to the clients.
 */
export function aggregatePrivateSummaries(
  clients: readonly PrivateFingerprintSummary[],
  weights?: readonly number[],
): PrivateFingerprintSummary {
  if (clients.length === 0) throw new Error('no fingerprints to aggregate');
  for (const c of clients)
    if (c.private_ffe !== PRIVATE_FORMAT)
      throw new Error(`not a private fingerprint summary (private_ffe: ${String(c.private_ffe)})`);
  const w = weights ?? clients.map(summaryCaseCount);
  checkWeights(clients.length, w);
  const dims = clients[0].axes.length;
  if (clients.some((c) => c.axes.length !== dims))
    throw new Error('clients disagree on the number of image axes');
  const axes = Array.from({ length: dims }, (_, a) =>
    groupAxis(
      clients.flatMap((c) =>
        c.axes[a].flatMap(([spacing, sizes]) =>
          sizes.map((size) => [spacing, size] as [number, number]),
        ),
      ),
    ),
  );
  return {
    private_ffe: PRIVATE_FORMAT,
    foreground_intensity_properties_per_channel: aggregateIntensities(
      clients.map((c) => c.foreground_intensity_properties_per_channel),
      w,
    ),
    median_relative_size_after_cropping: weightedMean(
      clients.map((c) => c.median_relative_size_after_cropping),
      w,
    ),
    axes,
  };
}

/**
 * A planner input from a (merged) summary. Its rows are NOT cases: row i holds the i-th
 * (spacing, size) pair of every axis in sorted order, so axes are paired arbitrarily. The
 * planner only looks at per-axis columns and per-axis pairs, so its plans are identical to those
 * from the real per-case fingerprint.
 */
export function fingerprintFromSummary(s: PrivateFingerprintSummary): DatasetFingerprint {
  const n = summaryCaseCount(s);
  const pairs = s.axes.map((groups) =>
    groups.flatMap(([spacing, sizes]) => sizes.map((size) => [spacing, size] as const)),
  );
  const spacings: number[][] = [];
  const shapes: number[][] = [];
  for (let i = 0; i < n; i++) {
    spacings.push(pairs.map((p) => p[i][0]));
    shapes.push(pairs.map((p) => p[i][1]));
  }
  return {
    foreground_intensity_properties_per_channel: structuredClone(
      s.foreground_intensity_properties_per_channel,
    ),
    median_relative_size_after_cropping: s.median_relative_size_after_cropping,
    shapes_after_crop: shapes,
    spacings,
  };
}

/** How many numbers a JSON message carries (for comparing what the variants send). */
export function countNumbers(value: unknown): number {
  if (typeof value === 'number') return 1;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + countNumbers(v), 0);
  if (value && typeof value === 'object')
    return Object.values(value).reduce((n: number, v) => n + countNumbers(v), 0);
  return 0;
}
