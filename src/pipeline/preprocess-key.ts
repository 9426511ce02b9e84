// What makes two plans preprocess a case identically: the fields DefaultPreprocessor.run_case
// reads (preprocess/preprocess.ts), nothing else. Patch size, batch size and the network (e.g. the
// --tiny preset, or an FFE plan that differs only there) do not change the arrays, so arrays made
// by one plan are reused under another whose key is equal.
import { crc32 } from '../util/crc32.ts';
import {
  foregroundClasses,
  resolveConfiguration,
  type PreprocessDatasetJson,
  type PreprocessPlans,
} from '../preprocess/preprocess.ts';
import type { Plans } from '../plan/types.ts';

/** Schemes that never read the plans' foreground intensity statistics (normalize.ts). */
const STATS_FREE = new Set([
  'ZScoreNormalization',
  'NoNormalization',
  'RescaleTo01Normalization',
  'RGBTo01Normalization',
]);

/** JSON with object keys sorted, so equal values give equal strings. */
function canonical(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(canonical).join(',')}]`;
  if (x && typeof x === 'object') {
    const o = x as Record<string, unknown>;
    const keys = Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(x ?? null);
}

/**
 * The preprocessing identity of `configuration` in `plans` for this dataset: equal keys, equal
 * arrays. Throws when the plans have no such configuration.
 */
export function preprocessKey(
  plans: Plans | PreprocessPlans,
  configuration: string,
  datasetJson: PreprocessDatasetJson,
): string {
  const p = plans as PreprocessPlans;
  const cfg = resolveConfiguration(p, configuration);
  const needsStats = cfg.normalization_schemes.some((s) => !STATS_FREE.has(s));
  return canonical({
    // Bump when run_case's recipe changes: arrays stored by the old recipe are then not reused.
    recipe: 1,
    transpose_forward: p.transpose_forward,
    spacing: cfg.spacing,
    normalization_schemes: cfg.normalization_schemes,
    use_mask_for_norm: cfg.use_mask_for_norm,
    resampling_data: cfg.resampling_fn_data_kwargs ?? {},
    resampling_seg: cfg.resampling_fn_seg_kwargs ?? {},
    intensity: needsStats ? p.foreground_intensity_properties_per_channel : undefined,
    // class_locations: which classes are sampled (seed: nnU-Net's fixed 1234).
    classes: foregroundClasses(datasetJson),
  });
}

/** A short name for a key (to name a plans record by what it preprocesses to). */
export function keyTag(key: string): string {
  return crc32(new TextEncoder().encode(key)).toString(16).padStart(8, '0');
}
