import { describe, expect, it } from 'vitest';
import { mulberry32, randomArray } from '../../src/util/rng.ts';
import { augmentBatch } from '../../src/train/augment.ts';
import { deepSupervisionScales, deepSupervisionTargets } from '../../src/train/deep-supervision.ts';
import { configureAugmentationGeometry } from '../../src/train/rotation-config.ts';
import { sampleBatch, type TrainingCase } from '../../src/train/sampler.ts';

// Throughput note only (printed, never asserted): sampling + augmentation of a batch of 2 patches
// of 64×80×80 from a 64×80×80 single-channel volume.
describe('training data throughput (informational)', () => {
  it('sample + augment + DS targets, batch 2 of 64×80×80', () => {
    const shape: [number, number, number] = [64, 80, 80];
    const n = shape[0] * shape[1] * shape[2];
    const seg = new Int8Array(n);
    const locs: number[] = [];
    for (let i = 0; i < n; i += 97) { seg[i] = 1; locs.push(i); }
    const c: TrainingCase = { data: randomArray(n, 1), seg, shape, classLocations: { '1': locs } };
    const patch = [64, 80, 80];
    const geo = configureAugmentationGeometry(patch);
    const scales = deepSupervisionScales([[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]);
    const rng = mulberry32(1);
    const run = (probabilityScale: number) => {
      const t0 = performance.now();
      const b = sampleBatch([c], { batchSize: 2, patchSize: patch, initialPatchSize: geo.initialPatchSize }, rng);
      const t1 = performance.now();
      const a = augmentBatch(b, { patchSize: patch, rotation: geo.rotation, dummy2d: geo.dummy2d, mirrorAxes: geo.mirrorAxes, probabilityScale }, rng);
      const t2 = performance.now();
      const ds = deepSupervisionTargets(a.seg, 2, patch, scales);
      const t3 = performance.now();
      expect(a.data.length).toBe(2 * 64 * 80 * 80);
      expect(ds.map((d) => d.shape)).toEqual([[64, 80, 80], [32, 40, 40], [16, 20, 20], [8, 10, 10]]);
      return [t1 - t0, t2 - t1, t3 - t2];
    };
    run(1); // warm-up (JIT)
    const typical = Array.from({ length: 6 }, () => run(1));
    const mean = (k: number) => typical.reduce((s, t) => s + t[k], 0) / typical.length;
    const all = run(100); // every transform applied to both samples
    console.log(
      `[throughput] loader patch ${geo.initialPatchSize.join('×')} → 64×80×80, batch 2: ` +
        `sample ${mean(0).toFixed(1)} ms, augment (nnU-Net probabilities, mean of 6) ${mean(1).toFixed(1)} ms, ` +
        `DS ${mean(2).toFixed(1)} ms; all transforms on: sample ${all[0].toFixed(1)} ms, augment ${all[1].toFixed(1)} ms`,
    );
  });
});
