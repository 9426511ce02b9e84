import { describe, expect, it } from 'vitest';
import type { DatasetFingerprint } from '../../src/fingerprint/types.ts';
import { computeNewShape, median, percentile, roundHalfEven } from '../../src/util/numeric.ts';
import {
  fullresTargetSpacing,
  planExperiment,
  transposeFor,
  type EstimateCall,
} from '../../src/plan/planner.ts';
import { getPoolAndConvProps } from '../../src/plan/topology.ts';
import type { ConfigurationPlan, DatasetJson } from '../../src/plan/types.ts';
import { estimateFeatureMapSize } from '../../src/plan/vram.ts';
import { plannerCases } from './plan-fixtures.ts';

describe('numeric helpers (Python/numpy semantics)', () => {
  it('roundHalfEven rounds ties to even, like Python round', () => {
    expect([0.5, 1.5, 2.5, 3.5, 8.5, 98.5, -0.5, -1.5, 2.4999, 2.5001].map(roundHalfEven)).toEqual([
      0, 2, 2, 4, 8, 98, 0, -2, 2, 3,
    ]);
  });
  it('percentile: numpy linear method incl. its two-sided lerp', () => {
    expect(percentile([4, 5, 4, 3], 10)).toBe(3.3); // 802's target z spacing
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4, 5], 0)).toBe(1);
    expect(percentile([1, 2, 3, 4, 5], 100)).toBe(5);
    expect(percentile([10, 0], 75)).toBe(7.5);
    // Values from numpy 2.4 where the t >= 0.5 branch (b - (b-a)(1-t)) differs from a + (b-a)t.
    expect(percentile([0.3, 0.3, 1.1], 75)).toBe(0.7000000000000001);
    expect(percentile([0.1, 0.1, 0.1, 0.1, 0.7], 90)).toBe(0.46);
  });
  it('median and compute_new_shape', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([29, 30, 27, 35])).toBe(29.5);
    // 802 case 0: 26 slices at 4 mm -> 3.3 mm gives 31.5151… -> 32
    expect(computeNewShape([26, 100, 100], [4, 0.8, 0.8], [3.3, 0.8, 0.8])).toEqual([32, 100, 100]);
  });
});

const cases = plannerCases();

describe.each(cases)('planner vs nnU-Net: $name', (c) => {
  const log: EstimateCall[] = [];
  const plans = planExperiment(c.fingerprint, c.dataset, {
    datasetName: c.datasetName,
    estimateLog: log,
  });

  it('whole plans JSON is identical (values and key order)', () => {
    expect(plans).toEqual(c.plans);
    expect(JSON.stringify(plans)).toBe(JSON.stringify(c.plans));
  });

  it('every static_estimate_VRAM_usage call in order', () => {
    expect(log).toEqual(c.trace.static_estimate_VRAM_usage_calls_in_order);
  });

  it('target spacing, transpose, configuration set and key fields', () => {
    const target = fullresTargetSpacing(c.fingerprint);
    expect(target).toEqual(c.trace.fullres_target_spacing_before_transpose);
    const t = transposeFor(target);
    expect([t.forward, t.backward]).toEqual([
      c.trace.transpose_forward,
      c.trace.transpose_backward,
    ]);
    expect(Object.keys(plans.configurations)).toEqual(Object.keys(c.plans.configurations));
    for (const [name, ref] of Object.entries(c.plans.configurations)) {
      if (!('patch_size' in ref)) continue;
      const ours = plans.configurations[name as '2d'] as ConfigurationPlan;
      const fields = (p: ConfigurationPlan) => ({
        spacing: p.spacing,
        patch: p.patch_size,
        batch: p.batch_size,
        median: p.median_image_size_in_voxels,
        strides: p.architecture.arch_kwargs.strides,
        kernels: p.architecture.arch_kwargs.kernel_sizes,
        features: p.architecture.arch_kwargs.features_per_stage,
        norm: p.normalization_schemes,
        mask: p.use_mask_for_norm,
        batchDice: p.batch_dice,
      });
      expect(fields(ours), name).toEqual(fields(ref));
    }
  });
});

describe('named behaviours from reference README §1', () => {
  const byName = Object.fromEntries(
    cases.map((c) => [
      c.name,
      planExperiment(c.fingerprint, c.dataset, { datasetName: c.datasetName }),
    ]),
  );
  it('802: 10th-percentile rule gives 3.3 mm; 812: transpose [2,0,1]; 813: max(other)+1e-5 clamp; 814: 2d only', () => {
    expect(byName['local Dataset802_PhantomCTaniso'].configurations['3d_fullres']!.spacing[0]).toBe(
      3.3,
    );
    expect(byName['planner_only Dataset812_PlanOnlyAnisoLastAxis'].transpose_forward).toEqual([
      2, 0, 1,
    ]);
    expect(
      byName['planner_only Dataset813_PlanOnlyProstate2ch'].configurations['3d_fullres']!
        .spacing[0],
    ).toBe(0.62501);
    expect(Object.keys(byName['planner_only Dataset814_PlanOnly2D'].configurations)).toEqual([
      '2d',
    ]);
    expect(Object.keys(byName['planner_only Dataset811_PlanOnlyCTlarge'].configurations)).toEqual([
      '2d',
      '3d_lowres',
      '3d_fullres',
      '3d_cascade_fullres',
    ]);
  });
  it('FFE: 804 flips use_mask_for_norm to False; the two clients differ only in name and 2d batch (10 vs 8)', () => {
    const a = byName['FFE {801,804} Dataset801_PhantomMR'];
    const b = byName['FFE {801,804} Dataset804_PhantomMRsiteB'];
    expect(
      byName['local Dataset804_PhantomMRsiteB'].configurations['3d_fullres']!.use_mask_for_norm,
    ).toEqual([true]);
    expect(b.configurations['3d_fullres']!.use_mask_for_norm).toEqual([false]);
    expect([a.configurations['2d']!.batch_size, b.configurations['2d']!.batch_size]).toEqual([
      10, 8,
    ]);
    expect({
      ...b,
      dataset_name: a.dataset_name,
      configurations: { ...b.configurations, '2d': { ...b.configurations['2d']!, batch_size: 10 } },
    }).toEqual(a);
  });
});

// Spec §10: vectors computed with upstream topology code + the §4.5 estimate.
function synthetic(groups: [number, number[], number[]][]): DatasetFingerprint {
  const spacings: number[][] = [];
  const shapes: number[][] = [];
  for (const [n, sp, sh] of groups)
    for (let i = 0; i < n; i++) {
      spacings.push(sp);
      shapes.push(sh);
    }
  const props = {
    max: 1,
    mean: 0,
    median: 0,
    min: 0,
    percentile_00_5: 0,
    percentile_99_5: 1,
    std: 1,
  };
  return {
    foreground_intensity_properties_per_channel: { '0': props },
    median_relative_size_after_cropping: 1,
    spacings,
    shapes_after_crop: shapes,
  };
}
function dataset(numTraining: number, nLabels: number): DatasetJson {
  const labels: Record<string, number> = { background: 0 };
  for (let i = 1; i < nLabels; i++) labels[`label${i}`] = i;
  return { channel_names: { '0': 'MR' }, labels, numTraining, file_ending: '.nii.gz' };
}
const arch = (p: ConfigurationPlan) => p.architecture.arch_kwargs;

describe('spec §10 planner test vectors', () => {
  it('A: isotropic-ish, 20 cases, 3 labels', () => {
    const p = planExperiment(synthetic([[20, [1, 0.8, 0.8], [200, 300, 300]]]), dataset(20, 3), {
      datasetName: 'A',
    });
    const c3 = p.configurations['3d_fullres']!;
    expect(p.transpose_forward).toEqual([0, 1, 2]);
    expect(c3.spacing).toEqual([1, 0.8, 0.8]);
    expect(c3.patch_size).toEqual([96, 160, 160]);
    expect(arch(c3).strides).toEqual([
      [1, 1, 1],
      [2, 2, 2],
      [2, 2, 2],
      [2, 2, 2],
      [2, 2, 2],
      [1, 2, 2],
    ]);
    expect(
      arch(c3)
        .kernel_sizes.flat()
        .every((k) => k === 3),
    ).toBe(true);
    expect(arch(c3).features_per_stage).toEqual([32, 64, 128, 256, 320, 320]);
    expect(
      estimateFeatureMapSize(c3.patch_size, arch(c3).strides, arch(c3).features_per_stage, 3),
    ).toBe(530668800);
    expect(c3.batch_size).toBe(2);
    const c2 = p.configurations['2d']!;
    expect([c2.patch_size, arch(c2).n_stages, arch(c2).features_per_stage, c2.batch_size]).toEqual([
      [320, 320],
      7,
      [32, 64, 128, 256, 512, 512, 512],
      32,
    ]);
  });
  it('B: ACDC-like anisotropic, 4 labels', () => {
    const p = planExperiment(
      synthetic([
        [16, [10, 1.5, 1.5], [10, 230, 200]],
        [4, [5, 1.4, 1.4], [18, 240, 240]],
      ]),
      dataset(20, 4),
      { datasetName: 'B' },
    );
    const c3 = p.configurations['3d_fullres']!;
    expect(c3.spacing).toEqual([5, 1.5, 1.5]);
    expect(c3.median_image_size_in_voxels).toEqual([20, 230, 200]);
    expect(c3.patch_size).toEqual([20, 256, 224]);
    expect(arch(c3).strides).toEqual([
      [1, 1, 1],
      [1, 2, 2],
      [2, 2, 2],
      [2, 2, 2],
      [1, 2, 2],
      [1, 2, 2],
    ]);
    expect(arch(c3).kernel_sizes).toEqual([[1, 3, 3], ...Array(5).fill([3, 3, 3])]);
    expect(c3.batch_size).toBe(2);
    const c2 = p.configurations['2d']!;
    expect([c2.patch_size, arch(c2).n_stages, c2.batch_size]).toEqual([[256, 224], 6, 16]);
  });
  it('C: breast-MRI-like, 30 cases', () => {
    const p = planExperiment(synthetic([[30, [2, 0.7, 0.7], [80, 256, 512]]]), dataset(30, 2), {
      datasetName: 'C',
    });
    const c3 = p.configurations['3d_fullres']!;
    expect(c3.patch_size).toEqual([48, 128, 288]);
    expect(arch(c3).strides).toEqual([
      [1, 1, 1],
      [1, 2, 2],
      [2, 2, 2],
      [2, 2, 2],
      [2, 2, 2],
      [1, 2, 2],
    ]);
    expect(arch(c3).kernel_sizes[0]).toEqual([1, 3, 3]);
    expect(c3.batch_size).toBe(2);
    const c2 = p.configurations['2d']!;
    expect([c2.patch_size, arch(c2).n_stages, c2.batch_size]).toEqual([[256, 512], 7, 25]);
  });
});

describe('topology', () => {
  it('pads a fractional clipped patch up to the pooling divisor (802 2d: 100 x 98.5 -> 112 x 112)', () => {
    const t = getPoolAndConvProps([0.8, 0.8], [100, 98.5]);
    expect(t.patchSize).toEqual([112, 112]);
    expect(t.mustBeDivisibleBy).toEqual([16, 16]);
  });
});
