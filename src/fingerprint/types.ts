// nnU-Net's dataset_fingerprint.json, key for key. Axis order is nnU-Net's (z, y, x), before
// any transpose; spacings are the reader's float32 pixdims widened to double.

/** Foreground intensity statistics of one channel (nnU-Net samples them; see spec §2). */
export interface ChannelIntensityProperties {
  max: number;
  mean: number;
  median: number;
  min: number;
  percentile_00_5: number;
  percentile_99_5: number;
  std: number;
}

export interface DatasetFingerprint {
  /** Keyed by the channel index as a string: "0", "1", ... */
  foreground_intensity_properties_per_channel: Record<string, ChannelIntensityProperties>;
  median_relative_size_after_cropping: number;
  /** One [z, y, x] per training case. */
  shapes_after_crop: number[][];
  /** One [sz, sy, sx] per training case. */
  spacings: number[][];
}

const INTENSITY_KEYS = [
  'max',
  'mean',
  'median',
  'min',
  'percentile_00_5',
  'percentile_99_5',
  'std',
] as const;

/** Type guard for a fingerprint received from elsewhere (a site, a file): throws naming the defect. */
export function assertDatasetFingerprint(
  x: unknown,
  what = 'fingerprint',
): asserts x is DatasetFingerprint {
  const fail = (why: string): never => {
    throw new Error(`${what} is malformed: ${why}`);
  };
  if (typeof x !== 'object' || x === null) fail('not an object');
  const f = x as Record<string, unknown>;
  const rows = (k: string) => {
    const v = f[k];
    if (!Array.isArray(v) || v.length === 0) fail(`'${k}' must be a non-empty list`);
    for (const r of v as unknown[]) {
      if (
        !Array.isArray(r) ||
        r.length < 2 ||
        r.length > 3 ||
        !r.every((n) => typeof n === 'number' && Number.isFinite(n) && n > 0)
      )
        fail(`'${k}' holds ${JSON.stringify(r)}; expected 2 or 3 positive numbers`);
    }
    return (v as unknown[]).length;
  };
  const n = rows('spacings');
  if (rows('shapes_after_crop') !== n) fail('spacings and shapes_after_crop differ in length');
  const rel = f.median_relative_size_after_cropping;
  if (typeof rel !== 'number' || !(rel > 0 && rel <= 1))
    fail('median_relative_size_after_cropping must be in (0, 1]');
  const ch = f.foreground_intensity_properties_per_channel;
  if (typeof ch !== 'object' || ch === null || Object.keys(ch).length === 0)
    fail('foreground_intensity_properties_per_channel is missing');
  for (const [k, props] of Object.entries(ch as Record<string, unknown>)) {
    if (!/^\d+$/.test(k)) fail(`channel key '${k}' is not an index`);
    for (const p of INTENSITY_KEYS) {
      const v = (props as Record<string, unknown>)?.[p];
      if (typeof v !== 'number' || !Number.isFinite(v))
        fail(`channel ${k} '${p}' must be a finite number`);
    }
  }
}
