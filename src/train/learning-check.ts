// The learning check of the training recipe (issue 5), shared by the Node test (cpu backend) and
// the browser test (webgpu): the tiny 3d network trained with a fixed seed and a fixed step
// budget must segment held-out synthetic cases. Runs on whatever tfjs backend is current.
//
// Data: 6 phantoms of 32³ (1 mm), an ellipsoid (label 1, radii 5–10 voxels) of mean 170 in a
// background of mean 100, Gaussian noise σ 10. Pipeline: fingerprint → nnU-Net planner → tiny
// preset with 16³ patches (batch 2) → run_case → Trainer with nnU-Net's defaults (augmentation,
// deep supervision, 33% oversampling, SGD Nesterov lr 1e-2, PolyLR) on a seeded 80:20 split
// (4 train / 2 held-out). Budget: 6 epochs × 25 iterations = 150 steps, 2 validation batches per
// epoch. Dice: one full-volume forward per held-out case (32³ divides by the strides), argmax,
// src/eval/metrics.ts.
import { computeCaseMetrics } from '../eval/metrics.ts';
import { ellipsoidPhantom, PHANTOM_DATASET_JSON } from '../demo/ellipsoid-phantom.ts';
import { prepareTraining, SitePipeline } from '../pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../pipeline/site-store.ts';
import { Trainer, type EpochEvent } from './trainer.ts';

export const LEARNING_CHECK = {
  cases: 6,
  edge: 32,
  noise: 10,
  patch: 16,
  epochs: 6,
  itersPerEpoch: 25,
  valIters: 2,
  seed: 0,
} as const;

export interface LearningCheckResult {
  /** Dice of label 1 on each held-out case. */
  dice: number[];
  mean: number;
  pseudoDice: number[];
  msPerIter: number;
  seconds: number;
  steps: number;
}

export async function learningCheck(
  onEpoch?: (e: EpochEvent) => void,
): Promise<LearningCheckResult> {
  const c = LEARNING_CHECK;
  const t0 = performance.now();
  const ph = Array.from({ length: c.cases }, (_, i) =>
    ellipsoidPhantom(100 + i, c.edge, 1, c.noise),
  );
  const dj = { ...PHANTOM_DATASET_JSON, numTraining: c.cases };
  const store = memoryCasesStore(
    'Dataset999_Phantom',
    dj,
    ph.map((p, i) => ({ id: `ph_${i}`, ...p })),
  );
  const prep = await prepareTraining(new SitePipeline(store), {
    configuration: '3d_fullres',
    tiny: { patch: c.patch },
  });
  const trainer = new Trainer({
    plans: prep.plans,
    configuration: '3d_fullres',
    datasetJson: dj,
    cases: prep.cases,
    options: {
      epochs: c.epochs,
      itersPerEpoch: c.itersPerEpoch,
      valIters: c.valIters,
      seed: c.seed,
    },
  });
  try {
    if (trainer.valIds.length !== 2)
      throw new Error(`expected 2 held-out cases, got ${trainer.valIds.length}`);
    const epochs: EpochEvent[] = [];
    await trainer.run({
      onEvent: (e) => {
        if (e.type !== 'epoch') return;
        epochs.push(e);
        onEpoch?.(e);
      },
    });
    const dice: number[] = [];
    for (const id of trainer.valIds) {
      const cs = prep.cases.find((x) => x.id === id)!;
      const n = cs.seg.length;
      const logits = await trainer.predictLogits(cs.data, 1, cs.shape);
      const pred = new Uint8Array(n);
      for (let v = 0; v < n; v++) pred[v] = logits[n + v] > logits[v] ? 1 : 0;
      dice.push(computeCaseMetrics(cs.seg, pred, [1])['1'].Dice);
    }
    return {
      dice,
      mean: dice.reduce((a, b) => a + b, 0) / dice.length,
      pseudoDice: epochs.map((e) => e.pseudoDice),
      msPerIter: epochs.reduce((a, e) => a + e.msPerIter, 0) / Math.max(1, epochs.length),
      seconds: (performance.now() - t0) / 1000,
      steps: c.epochs * c.itersPerEpoch,
    };
  } finally {
    trainer.dispose();
  }
}
