import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bindingLimitProblem, largestTrainingTensor } from '../../src/gpu/binding-limit.ts';
import { REFERENCE } from '../paths.ts';
import type { NetShape } from '../../src/gpu/binding-limit.ts';

const plan801 = (
  JSON.parse(
    readFileSync(join(REFERENCE, 'plans/Dataset801_PhantomMR/nnUNetPlans.json'), 'utf8'),
  ) as { configurations: Record<string, NetShape & { batch_size: number }> }
).configurations['3d_fullres'];

describe('binding limit check', () => {
  it("finds the largest tensor of 801's 3d_fullres step: the stage-1 decoder concat", () => {
    // 64×80×80 patch, 32 features at full resolution: concat of 2×32 channels, batch 2.
    const t = largestTrainingTensor(plan801, 2, 1, 2);
    expect(t.bytes).toBe(4 * 2 * 64 * 64 * 80 * 80);
    expect(t.what).toContain('stage 1 decoder concat (64 channels × 64×80×80 × batch 2)');
  });

  it("refuses on Chrome's default 128 MiB binding limit, naming it, and accepts a 1 GiB one", () => {
    const small = { maxStorageBufferBindingSize: 128 * 2 ** 20, maxBufferSize: 256 * 2 ** 20 };
    const msg = bindingLimitProblem(plan801, 2, 1, 2, small);
    expect(msg).toMatch(/maxStorageBufferBindingSize of 128 MiB/);
    expect(msg).toMatch(/200 MiB/);
    const big = { maxStorageBufferBindingSize: 2 ** 30, maxBufferSize: 2 ** 30 };
    expect(bindingLimitProblem(plan801, 2, 1, 2, big)).toBeNull();
  });

  it('names maxBufferSize when that is the smaller limit, and handles scalar strides', () => {
    const cfg: NetShape = {
      patch_size: [32, 32, 32],
      architecture: { arch_kwargs: { features_per_stage: [4, 8], strides: [1, 2] } },
    };
    // input 32³×1, logits 32³×3, stage 1 32³×4, concat 32³×8, stage 2 16³×8 → concat wins.
    expect(largestTrainingTensor(cfg, 1, 1, 3).bytes).toBe(4 * 8 * 32 ** 3);
    const msg = bindingLimitProblem(cfg, 1, 1, 3, {
      maxStorageBufferBindingSize: 2 ** 30,
      maxBufferSize: 2 ** 18,
    });
    expect(msg).toMatch(/maxBufferSize of 0.3 MiB/);
  });
});
