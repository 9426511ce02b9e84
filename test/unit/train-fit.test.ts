// The Train tab's choice of network per adapter (src/plan/train-fit.ts) on Dataset801's reference
// plans: the full 3d_fullres where a desktop GPU's limits hold it, the reduced plan (with the limit
// or tensor named) where Chrome's default limits or a small budget do not, nothing where even
// the reduced plan's largest tensor is over the binding limit.
import { describe, expect, it } from 'vitest';
import { planExperiment } from '../../src/plan/planner.ts';
import { defaultMemoryBudgetMB } from '../../src/plan/budget.ts';
import { chooseTrainFit } from '../../src/plan/train-fit.ts';
import { largestTrainingTensor } from '../../src/gpu/binding-limit.ts';
import { plannerCases } from './plan-fixtures.ts';

const c = plannerCases().find(
  (p) => p.datasetName === 'Dataset801_PhantomMR' && !p.name.startsWith('FFE'),
)!;
const inChannels = Object.keys(c.dataset.channel_names ?? {}).length;
const numClasses = Object.keys(c.dataset.labels).length;
const plan = (memoryBudgetMB?: number) =>
  planExperiment(c.fingerprint, c.dataset, { datasetName: c.datasetName, memoryBudgetMB })
    .configurations['3d_fullres']!;
const MiB = 2 ** 20;
const fit = (
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number },
  budgetMB = defaultMemoryBudgetMB(limits),
) =>
  chooseTrainFit({
    full: plan(),
    reduced: plan(budgetMB),
    budgetMB,
    limits,
    inChannels,
    numClasses,
  });

describe('chooseTrainFit', () => {
  it("offers nnU-Net's full 3d_fullres where the adapter's limits and budget hold it (2 GiB bindings, 64 GB budget)", () => {
    const f = fit({ maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 31 }, 65536);
    expect(f.offer).toBe('full');
    expect(f.network).toEqual(f.full);
    expect(f.network.patch).toEqual(c.plans.configurations['3d_fullres']!.patch_size);
    expect(f.reason).toMatch(/fits this GPU/);
  });

  it("offers the reduced plan over the default budget of Chrome's default limits (512 MB), naming the budget", () => {
    const f = fit({ maxStorageBufferBindingSize: 128 * MiB, maxBufferSize: 256 * MiB });
    expect(f.offer).toBe('reduced');
    expect(f.network.patch.reduce((a, b) => a * b)).toBeLessThan(
      f.full.patch.reduce((a, b) => a * b),
    );
    expect(f.reason).toMatch(/512 MB memory budget/);
    expect(f.reason).toMatch(/does not fit/);
  });

  it('names the binding limit and the tensor when the full plan has a tensor over it', () => {
    const full = plan();
    const big = largestTrainingTensor(full as never, full.batch_size, inChannels, numClasses);
    // A binding limit just under the full plan's largest tensor, with a budget that holds it.
    const limit = big.bytes - 1;
    const f = chooseTrainFit({
      full,
      reduced: plan(4096),
      budgetMB: 4096,
      limits: { maxStorageBufferBindingSize: limit, maxBufferSize: 2 ** 31 },
      inChannels,
      numClasses,
    });
    expect(f.offer).not.toBe('full');
    expect(f.reason).toMatch(/maxStorageBufferBindingSize/);
    expect(f.reason).toContain(big.what);
  });

  it('offers nothing (and says why) when even the reduced plan has a tensor over the limit', () => {
    const f = fit({ maxStorageBufferBindingSize: 64 * 1024, maxBufferSize: 64 * 1024 }, 4096);
    expect(f.offer).toBe('none');
    expect(f.reason).toMatch(/does not fit either/);
  });
});
