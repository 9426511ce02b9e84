import { it, expect } from 'vitest';
import { computeCaseMetrics } from '/work/main/src/eval/metrics.ts';
import { useBackend } from '/work/main/src/model/tf-backend.ts';
import { prepareTraining } from '/work/main/src/train/prepare.ts';
import { Trainer } from '/work/main/src/train/trainer.ts';
import { ellipsoidPhantom, PHANTOM_DATASET_JSON } from '/work/main/test/unit/helpers/phantom.ts';
it('2d', async () => {
  await useBackend('cpu');
  const t0 = performance.now();
  const N = 6;
  const ph = Array.from({ length: N }, (_, i) => ellipsoidPhantom(100 + i, 32, 1, 10));
  const dj = { ...PHANTOM_DATASET_JSON, numTraining: N };
  const prep = await prepareTraining(N, (i) => ({ id: `ph_${i}`, ...ph[i] }), dj, { datasetName: 'Dataset999_Phantom', configuration: '2d', tiny: { patch: 32 } });
  const trainer = new Trainer({ plans: prep.plans, configuration: '2d', datasetJson: dj, cases: prep.cases, options: { epochs: 6, itersPerEpoch: 25, valIters: 2, seed: 0 } });
  await trainer.run({});
  const dice: number[] = [];
  for (const id of trainer.valIds) {
    const c = prep.cases.find((x) => x.id === id)!;
    const [Z, Y, X] = c.shape;
    const n = Y * X;
    const pred = new Uint8Array(c.seg.length);
    for (let z = 0; z < Z; z++) {
      const l = await trainer.predictLogits(c.data.subarray(z * n, (z + 1) * n), 1, [Y, X]);
      for (let v = 0; v < n; v++) pred[z * n + v] = l[n + v] > l[v] ? 1 : 0;
    }
    dice.push(computeCaseMetrics(c.seg, pred, [1])['1'].Dice);
  }
  console.log('2d dice', dice, (performance.now() - t0) / 1000);
}, 900000);
