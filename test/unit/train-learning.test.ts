// Acceptance check of the training recipe (issue 5): the tiny 3d network trained on cpu with a
// fixed seed and a fixed step budget segments held-out synthetic cases.
//
// Data: 6 phantoms of 32³ (1 mm), an ellipsoid (label 1, radii 5–10 voxels) of mean 170 in a
// background of mean 100, Gaussian noise σ 10. Pipeline: fingerprint → nnU-Net planner → --tiny
// preset with 16³ patches (batch 2) → runCase → Trainer with nnU-Net's defaults (augmentation,
// deep supervision, 33% oversampling, SGD Nesterov lr 1e-2, PolyLR) on a seeded 80:20 split
// (4 train / 2 held-out). Budget: 6 epochs × 25 iterations = 150 steps, 2 validation batches per
// epoch. Dice: one full-volume forward per held-out case (32³ divides by the strides), argmax,
// src/eval/metrics.ts. Takes about 3–4 minutes on 2 slow cores, hence its own file.
import { beforeAll, describe, expect, it } from 'vitest';
import { computeCaseMetrics } from '../../src/eval/metrics.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { prepareTraining } from '../../src/train/prepare.ts';
import { Trainer, type EpochEvent } from '../../src/train/trainer.ts';
import { ellipsoidPhantom, PHANTOM_DATASET_JSON } from './helpers/phantom.ts';

beforeAll(async () => {
  await useBackend('cpu');
});

describe('learning check (tiny 3d, cpu)', () => {
  it('150 steps reach Dice ≥ 0.85 on held-out cases', async () => {
    const t0 = performance.now();
    const N = 6;
    const ph = Array.from({ length: N }, (_, i) => ellipsoidPhantom(100 + i, 32, 1, 10));
    const dj = { ...PHANTOM_DATASET_JSON, numTraining: N };
    const prep = await prepareTraining(N, (i) => ({ id: `ph_${i}`, ...ph[i] }), dj, { datasetName: 'Dataset999_Phantom', configuration: '3d_fullres', tiny: { patch: 16 } });
    const trainer = new Trainer({
      plans: prep.plans, configuration: '3d_fullres', datasetJson: dj, cases: prep.cases,
      options: { epochs: 6, itersPerEpoch: 25, valIters: 2, seed: 0 },
    });
    expect(trainer.valIds).toHaveLength(2);
    const epochs: EpochEvent[] = [];
    await trainer.run({ onEvent: (e) => void (e.type === 'epoch' && epochs.push(e)) });
    const trainSeconds = (performance.now() - t0) / 1000;

    const dice: number[] = [];
    for (const id of trainer.valIds) {
      const c = prep.cases.find((x) => x.id === id)!;
      const n = c.seg.length;
      const logits = await trainer.predictLogits(c.data, 1, c.shape);
      const pred = new Uint8Array(n);
      for (let v = 0; v < n; v++) pred[v] = logits[n + v] > logits[v] ? 1 : 0;
      dice.push(computeCaseMetrics(c.seg, pred, [1])['1'].Dice);
    }
    trainer.dispose();
    const mean = dice.reduce((a, b) => a + b, 0) / dice.length;
    console.log(
      `learning check: held-out Dice ${dice.map((d) => d.toFixed(4)).join(', ')} (mean ${mean.toFixed(4)}); ` +
        `pseudo-Dice per epoch ${epochs.map((e) => e.pseudoDice.toFixed(3)).join(' ')}; ` +
        `${(epochs.reduce((a, e) => a + e.msPerIter, 0) / epochs.length).toFixed(0)} ms/iter; ${trainSeconds.toFixed(0)} s total`,
    );
    expect(mean).toBeGreaterThanOrEqual(0.85);
    expect(Math.min(...dice)).toBeGreaterThanOrEqual(0.8);
  }, 900_000);
});
