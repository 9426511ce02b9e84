// Acceptance check of the training recipe (issue 5) in Chromium on WebGPU (SwiftShader here),
// with the fast kernels (the default): the same procedure, data, seed and step budget (150
// steps) as the cpu test test/unit/train-learning.test.ts (src/train/learning-check.ts). The
// held-out Dice must reach 0.85. Several minutes on SwiftShader, hence its own file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKernelsPage, type KernelsPage } from '../pages/kernels/open-page.ts';
import type { LearningCheckResult } from '../../src/train/learning-check.ts';

describe('learning check (tiny 3d, webgpu)', () => {
  let s: KernelsPage;
  beforeAll(async () => {
    s = await openKernelsPage();
  });
  afterAll(async () => s?.close());

  it('150 steps reach Dice ≥ 0.85 on held-out cases', async () => {
    const r = (await s.page.evaluate(() =>
      (
        window as unknown as { __learning: (o: { fastKernels: boolean }) => Promise<unknown> }
      ).__learning({ fastKernels: true }),
    )) as LearningCheckResult & { backend: string };
    console.log(
      `learning check (${r.backend}): held-out Dice ${r.dice.map((d) => d.toFixed(4)).join(', ')} (mean ${r.mean.toFixed(4)}); ` +
        `pseudo-Dice per epoch ${r.pseudoDice.map((d) => d.toFixed(3)).join(' ')}; ${r.msPerIter.toFixed(0)} ms/iter; ${r.seconds.toFixed(0)} s total`,
    );
    expect(r.backend).toBe('webgpu (fast kernels)');
    expect(r.steps).toBe(150);
    expect(r.pseudoDice).toHaveLength(6);
    expect(r.mean).toBeGreaterThanOrEqual(0.85);
    expect(Math.min(...r.dice)).toBeGreaterThanOrEqual(0.8);
    expect(s.errors).toEqual([]);
  }, 1_800_000);
});
