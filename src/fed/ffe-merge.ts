// The relay's FFE merge: validate every site's fingerprint, then FednnU-Net's aggregation rule
// (src/fingerprint/ffe.ts), weighted by the sites' case counts.
import { aggregateFingerprints } from '../fingerprint/ffe.ts';
import { assertDatasetFingerprint, type DatasetFingerprint } from '../fingerprint/types.ts';

export function mergeSiteFingerprints(
  fps: Record<string, unknown>[],
  weights: number[],
): Record<string, unknown> {
  fps.forEach((f, i) => assertDatasetFingerprint(f, `site ${i + 1}'s fingerprint`));
  return aggregateFingerprints(
    fps as unknown as DatasetFingerprint[],
    weights,
  ) as unknown as Record<string, unknown>;
}
