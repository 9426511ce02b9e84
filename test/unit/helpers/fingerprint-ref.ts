// Shared checks of a dataset fingerprint against nnU-Net's reference file.
import { expect } from 'vitest';
import type { DatasetFingerprint } from '../../../src/fingerprint/types.ts';

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

/** Reference README §5: geometry exact, mean/std within 1e-3 relative, order statistics exact. */
export function expectMatchesReference(ours: DatasetFingerprint, ref: DatasetFingerprint) {
  expect(ours.shapes_after_crop).toEqual(ref.shapes_after_crop);
  expect(ours.spacings).toEqual(ref.spacings);
  expect(ours.median_relative_size_after_cropping).toBe(ref.median_relative_size_after_cropping);
  expect(Object.keys(ours.foreground_intensity_properties_per_channel)).toEqual(
    Object.keys(ref.foreground_intensity_properties_per_channel),
  );
  for (const [ch, r] of Object.entries(ref.foreground_intensity_properties_per_channel)) {
    const o = ours.foreground_intensity_properties_per_channel[ch];
    expect(rel(o.mean, r.mean)).toBeLessThan(1e-3);
    expect(rel(o.std, r.std)).toBeLessThan(1e-3);
    for (const k of ['min', 'max', 'median', 'percentile_00_5', 'percentile_99_5'] as const)
      expect(o[k]).toBe(r[k]);
  }
}
