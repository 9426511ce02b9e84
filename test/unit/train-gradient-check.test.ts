import { describe, expect, it } from 'vitest';
import { useBackend } from '../../src/model/tf-backend.ts';
import { compareSteps, trainingStep } from '../../src/train/gradient-check.ts';

describe('training-step check (the browser compares webgpu against this on cpu)', () => {
  it('is deterministic and has a gradient for every parameter the loss reaches', async () => {
    const tf = await useBackend('cpu');
    const a = await trainingStep(tf, 1);
    const b = await trainingStep(tf, 1);
    const c = compareSteps(a, b);
    expect(c.gradRelL2).toBe(0);
    expect(Number.isFinite(a.loss)).toBe(true);
    // 3 stages: every tensor except the lowest-resolution seg head (deep-supervision weight 0).
    expect(c.tensors).toBeGreaterThan(20);
    const other = await trainingStep(tf, 2);
    expect(compareSteps(other, a).gradRelL2).toBeGreaterThan(0.1);
  });
});
