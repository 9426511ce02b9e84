// Data pipeline throughput on the CPU: sampling + nnU-Net augmentation + deep-supervision targets
// for a batch of 2 patches of 64×80×80 from a 64×80×80 single-channel volume (the 801 plan's patch).
import { mulberry32, randomArray } from '../src/util/rng.ts';
import { augmentBatch } from '../src/train/augment.ts';
import { deepSupervisionTargets } from '../src/train/ds-targets.ts';
import { configureAugmentationGeometry } from '../src/train/rotation-config.ts';
import { sampleBatch, type TrainingCase } from '../src/train/sampler.ts';

const shape: [number, number, number] = [64, 80, 80];
const n = shape[0] * shape[1] * shape[2];
const seg = new Int8Array(n);
const locs: number[] = [];
for (let i = 0; i < n; i += 97) {
  seg[i] = 1;
  locs.push(i);
}
const c: TrainingCase = { data: randomArray(n, 1), seg, shape, classLocations: { '1': locs } };
const patch = [64, 80, 80];
const geo = configureAugmentationGeometry(patch);
const strides = [
  [1, 1, 1],
  [2, 2, 2],
  [2, 2, 2],
  [2, 2, 2],
  [2, 2, 2],
];
const rng = mulberry32(1);
function run(probabilityScale: number): number[] {
  const t0 = performance.now();
  const b = sampleBatch(
    [c],
    { batchSize: 2, patchSize: patch, initialPatchSize: geo.initialPatchSize },
    rng,
  );
  const t1 = performance.now();
  const a = augmentBatch(
    b,
    {
      patchSize: patch,
      rotation: geo.rotation,
      dummy2d: geo.dummy2d,
      mirrorAxes: geo.mirrorAxes,
      probabilityScale,
    },
    rng,
  );
  const t2 = performance.now();
  deepSupervisionTargets(a.seg, 2, patch, strides);
  return [t1 - t0, t2 - t1, performance.now() - t2];
}
run(1); // JIT warm-up
const reps = 10;
const mean = (rows: number[][], k: number) => rows.reduce((s, t) => s + t[k], 0) / rows.length;
const typical = Array.from({ length: reps }, () => run(1));
const all = Array.from({ length: 3 }, () => run(100));
console.log(`loader patch ${geo.initialPatchSize.join('×')} → 64×80×80, batch 2\n`);
console.log('| augmentation | sample (ms) | augment (ms) | DS targets (ms) |');
console.log('|---|---|---|---|');
console.log(
  `| nnU-Net probabilities (mean of ${reps}) | ${mean(typical, 0).toFixed(1)} | ${mean(typical, 1).toFixed(1)} | ${mean(typical, 2).toFixed(1)} |`,
);
console.log(
  `| every transform on (mean of 3) | ${mean(all, 0).toFixed(1)} | ${mean(all, 1).toFixed(1)} | ${mean(all, 2).toFixed(1)} |`,
);
