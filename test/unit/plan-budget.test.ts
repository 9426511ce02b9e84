import { describe, expect, it } from 'vitest';
import { BYTES_PER_FEATURE_ELEMENT, defaultMemoryBudgetMB } from '../../src/plan/budget.ts';
import { planExperiment } from '../../src/plan/planner.ts';
import { estimateFeatureMapSize } from '../../src/plan/vram.ts';
import { plannerCases } from './plan-fixtures.ts';

const cases = Object.fromEntries(
  plannerCases().map((c) => [c.datasetName + (c.name.startsWith('FFE') ? ':fed' : ''), c]),
);

describe('defaultMemoryBudgetMB', () => {
  it('half of 8 buffers of the smaller WebGPU limit, capped at 4 GB', () => {
    expect(
      defaultMemoryBudgetMB({
        maxBufferSize: 256 * 2 ** 20,
        maxStorageBufferBindingSize: 128 * 2 ** 20,
      }),
    ).toBe(512);
    expect(
      defaultMemoryBudgetMB({ maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 30 }),
    ).toBe(4096);
    expect(
      defaultMemoryBudgetMB({ maxBufferSize: 64 * 2 ** 20, maxStorageBufferBindingSize: 2 ** 30 }),
    ).toBe(256);
  });
});

describe('browser memory budget', () => {
  it('a small budget shrinks the 3d patch (and with it stages/features) and records why', () => {
    const c = cases['Dataset801_PhantomMR'];
    const budgetMB = 256;
    const plans = planExperiment(c.fingerprint, c.dataset, {
      datasetName: c.datasetName,
      memoryBudgetMB: budgetMB,
    });
    const ref = c.plans.configurations['3d_fullres']!;
    const ours = plans.configurations['3d_fullres']!;
    const refVoxels = ref.patch_size.reduce((a, b) => a * b);
    const voxels = ours.patch_size.reduce((a, b) => a * b);
    expect(voxels).toBeLessThan(refVoxels);
    const rec = ours.browser_budget!;
    expect(rec.memoryBudgetMB).toBe(budgetMB);
    expect(rec.changed.find((x) => x.field === 'patch_size')).toEqual({
      field: 'patch_size',
      from: ref.patch_size,
      to: ours.patch_size,
    });
    expect(rec.reason).toMatch(/shrank the patch/);
    // What was planned fits: batch × estimate × bytes/element ≤ budget.
    const k = ours.architecture.arch_kwargs;
    const e = estimateFeatureMapSize(
      ours.patch_size,
      k.strides,
      k.features_per_stage,
      Object.keys(c.dataset.labels).length,
    );
    expect(ours.batch_size * e * BYTES_PER_FEATURE_ELEMENT).toBeLessThanOrEqual(budgetMB * 2 ** 20);
    // The unbudgeted nnU-Net plan does not fit that budget (so the test is meaningful).
    const kr = ref.architecture.arch_kwargs;
    expect(
      ref.batch_size *
        estimateFeatureMapSize(ref.patch_size, kr.strides, kr.features_per_stage, 3) *
        BYTES_PER_FEATURE_ELEMENT,
    ).toBeGreaterThan(budgetMB * 2 ** 20);
  });

  it("811: budget shrinks further than nnU-Net's 14 steps and can reduce the batch of 2d", () => {
    const c = cases['Dataset811_PlanOnlyCTlarge'];
    const plans = planExperiment(c.fingerprint, c.dataset, {
      datasetName: c.datasetName,
      memoryBudgetMB: 2048,
    });
    const full = plans.configurations['3d_fullres']!;
    expect(full.patch_size.reduce((a, b) => a * b)).toBeLessThan(80 * 192 * 160);
    const twoD = plans.configurations['2d']!;
    expect(twoD.batch_size).toBeLessThan(c.plans.configurations['2d']!.batch_size);
    expect(twoD.browser_budget!.changed.map((x) => x.field)).toContain('batch_size');
  });

  it("a budget above nnU-Net's 8 GB reference changes nothing but adds the record", () => {
    const c = cases['Dataset802_PhantomCTaniso'];
    const plans = planExperiment(c.fingerprint, c.dataset, {
      datasetName: c.datasetName,
      memoryBudgetMB: 1e6,
    });
    for (const [name, cfg] of Object.entries(plans.configurations)) {
      if (!('patch_size' in cfg)) continue;
      expect(cfg.browser_budget!.changed).toEqual([]);
      expect(cfg.browser_budget!.reason).toMatch(/not binding/);
      const { browser_budget: _, ...rest } = cfg;
      expect(rest).toEqual(c.plans.configurations[name as '2d']);
    }
  });

  it('an impossible budget is reported, not looped on forever', () => {
    const c = cases['Dataset801_PhantomMR'];
    const plans = planExperiment(c.fingerprint, c.dataset, {
      datasetName: c.datasetName,
      memoryBudgetMB: 0.001,
    });
    expect(plans.configurations['3d_fullres']!.browser_budget!.reason).toMatch(/too small/);
  });
});
