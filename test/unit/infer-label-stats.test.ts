// Label names and volumes of a segmentation (src/infer/label-stats.ts), as the Predict tab lists them.
import { describe, expect, it } from 'vitest';
import { labelNamesOf, labelVolumes } from '../../src/infer/label-stats.ts';

describe('label statistics', () => {
  it('names labels from dataset.json (ignore label left out), regions by regions_class_order', () => {
    expect(
      labelNamesOf({
        labels: { background: 0, organ: 1, lesion: 2, ignore: 3 },
        channel_names: { 0: 'CT' },
      }),
    ).toEqual({ 0: 'background', 1: 'organ', 2: 'lesion' });
    expect(
      labelNamesOf({
        labels: { background: 0, whole: [1, 2], core: 2 },
        regions_class_order: [1, 2],
        channel_names: { 0: 'CT' },
      }),
    ).toEqual({ 0: 'background', 1: 'whole', 2: 'core' });
  });

  it('counts voxels and millilitres per label; named labels even when absent, unnamed ones when present', () => {
    const labels = new Uint8Array([0, 1, 1, 1, 4, 0, 0, 0]);
    const v = labelVolumes(labels, [2, 2, 2.5], { 0: 'background', 1: 'organ', 2: 'lesion' });
    // One voxel is 2 × 2 × 2.5 mm³ = 0.01 ml.
    expect(v).toEqual([
      { value: 1, name: 'organ', voxels: 3, ml: 3 * 0.01 },
      { value: 2, name: 'lesion', voxels: 0, ml: 0 },
      { value: 4, name: 'label 4', voxels: 1, ml: 0.01 },
    ]);
  });
});
