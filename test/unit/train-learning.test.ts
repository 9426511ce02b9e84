// Acceptance check of the training recipe (issue 5) on the cpu backend: the tiny 3d network
// trained with a fixed seed and a fixed step budget (150 steps) segments held-out synthetic
// cases; the procedure and data are in src/train/learning-check.ts (the browser test
// test/browser/learning.test.ts runs the same on WebGPU). About 3–4 minutes on 2 slow cores,
// hence its own file.
import { beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../../src/model/tf-backend.ts';
import { learningCheck } from '../../src/train/learning-check.ts';

beforeAll(async () => {
  await useBackend('cpu');
});

describe('learning check (tiny 3d, cpu)', () => {
  it('150 steps reach Dice ≥ 0.85 on held-out cases', async () => {
    const r = await learningCheck();
    console.log(
      `learning check (cpu): held-out Dice ${r.dice.map((d) => d.toFixed(4)).join(', ')} (mean ${r.mean.toFixed(4)}); ` +
        `pseudo-Dice per epoch ${r.pseudoDice.map((d) => d.toFixed(3)).join(' ')}; ${r.msPerIter.toFixed(0)} ms/iter; ${r.seconds.toFixed(0)} s total`,
    );
    expect(r.steps).toBe(150);
    expect(r.mean).toBeGreaterThanOrEqual(0.85);
    expect(Math.min(...r.dice)).toBeGreaterThanOrEqual(0.8);
  }, 900_000);
});
