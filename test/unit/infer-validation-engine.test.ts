// The federation sites' validation on onnxruntime-node (one ONNX export per evaluation) gives the
// tfjs-cpu path's logits and Dice within float tolerance; the validation schedule (--val-every).
import { beforeAll, describe, expect, it } from 'vitest';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import type { FederationConfig } from '../../src/fed/protocol.ts';
import { slidingWindowPredict } from '../../src/infer/sliding-window.ts';
import {
  nodeValidationEngine,
  ortNodeAvailable,
  tfjsValidationEngine,
  type ValidationEngine,
} from '../../src/infer/validation-engine.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { SitePipeline } from '../../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../../src/pipeline/site-store.ts';
import { meanForegroundDice, TrainerSite } from '../../src/pipeline/trainer-site.ts';
import { maxAbsDiff } from '../../src/util/compare.ts';

// onnxruntime-node is a devDependency; where it is missing, the comparison cannot run (says so).
const HAVE_ORT = await ortNodeAvailable();
// Site A's phantoms at 2 mm (28³ voxels): a tfjs-cpu sliding window over a case stays cheap.
const ds = demoDataset({ ...DEMO_SITES[0], spacing: [2, 2, 2] }, 0, 3);
const pipeline = new SitePipeline(memoryCasesStore(ds.name, ds.datasetJson, ds.cases));
const config: FederationConfig = {
  method: 'fedavg',
  configuration: '3d_fullres',
  rounds: 2,
  itersPerRound: 1,
  minSites: 1,
  roundDeadlineMs: 60_000,
  weighting: 'uniform',
  encoding: 'fp32',
};

async function preparedSite(engine?: ValidationEngine, valEvery?: number | 'final') {
  const site = new TrainerSite({
    pipeline,
    tiny: { patch: 16 },
    seed: 3,
    valIters: 0,
    validationEngine: engine,
    valEvery,
  });
  await site.prepare(null, config);
  return site;
}

describe('validation engine', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it.skipIf(!HAVE_ORT)(
    `onnxruntime-node gives the tfjs-cpu logits and validation Dice (same weights)${HAVE_ORT ? '' : ' — skipped: onnxruntime-node is not installed'}`,
    async () => {
      const ort = await nodeValidationEngine('ort-node');
      expect(ort.name).toBe('onnxruntime-node (cpu)');
      const a = await preparedSite(tfjsValidationEngine());
      const b = await preparedSite(ort);
      try {
        // One round of training moves the weights away from the init (same seed: same weights).
        await a.train(1);
        await b.train(1);
        const t = a.trainer!;
        const patch = t.config.patch_size;
        // The site's validation case (random80 split of 3 cases: 2 train, 1 validate).
        expect(t.valIds).toHaveLength(1);
        const pc = (await pipeline.trainingCases(a.plans!, '3d_fullres')).find(
          (x) => x.id === t.valIds[0],
        )!;
        const vol = {
          data: pc.data,
          shape: [1, ...pc.shape] as [number, number, number, number],
        };
        const logits = [];
        for (const [site, engine] of [
          [a, tfjsValidationEngine()],
          [b, ort],
        ] as const) {
          const e = await engine.open(site.trainer!.net, patch);
          logits.push(
            await slidingWindowPredict(vol, patch, t.numClasses, e.predictTiles, {
              tileBatch: e.tileBatch,
            }),
          );
          await e.release();
        }
        const scale = Math.max(...logits[0].data.map(Math.abs));
        expect(scale).toBeGreaterThan(0.1);
        expect(maxAbsDiff(logits[0].data, logits[1].data)).toBeLessThan(1e-4 * scale);
        // The site's validation Dice on onnxruntime equals the tfjs logits' Dice.
        const tfjsDice = meanForegroundDice(logits[0].data, pc.seg, t.numClasses);
        expect(tfjsDice).toBeGreaterThan(0); // a real prediction, not all background
        expect(Math.abs((await b.validationDice()) - tfjsDice)).toBeLessThan(1e-3);
      } finally {
        a.trainer?.dispose();
        b.trainer?.dispose();
      }
    },
    120_000,
  );

  it('--val-every: every K rounds (scoring the model after round − 1), or only at the end', async () => {
    const every2 = new TrainerSite({ pipeline, valEvery: 2 });
    expect([1, 2, 3, 4, 5].map((r) => every2.evaluatesBefore(r))).toEqual([
      false,
      false,
      true,
      false,
      true,
    ]);
    const each = new TrainerSite({ pipeline });
    expect([1, 2, 3].map((r) => each.evaluatesBefore(r))).toEqual([false, true, true]);
    const final = new TrainerSite({ pipeline, valEvery: 'final' });
    expect([1, 2, 3].map((r) => final.evaluatesBefore(r))).toEqual([false, false, false]);
    const off = new TrainerSite({ pipeline, evaluate: false });
    expect(off.evaluatesBefore(2)).toBe(false);
    expect(() => new TrainerSite({ pipeline, valEvery: 0 })).toThrow(/valEvery/);
    // A whole run: 'final' trains every round without evaluating, then scores once at the end.
    const site = await preparedSite(await nodeValidationEngine(), 'final');
    try {
      await site.train(1);
      await site.train(2);
      expect(site.rounds.map((r) => r.diceBefore)).toEqual([undefined, undefined]);
      expect(site.rounds.every((r) => r.evalMs === 0 && r.trainMs > 0)).toBe(true);
      await site.finish(new Map(), []);
      expect(site.finalDice).toBeGreaterThanOrEqual(0);
      expect(site.finalEvalMs).toBeGreaterThan(0);
    } finally {
      site.trainer?.dispose();
    }
  });

  it('meanForegroundDice: argmax against the label map, mean over the labels present', () => {
    // 2 classes × 4 voxels: prediction [1, 0, 1, 0] against [1, 1, 0, 0] → Dice 0.5.
    const logits = new Float32Array([0, 1, 0, 1, 1, 0, 1, 0]);
    expect(meanForegroundDice(logits, [1, 1, 0, 0], 2)).toBeCloseTo(0.5, 12);
    expect(meanForegroundDice(new Float32Array([1, 1, 0, 0]), [0, 0], 2)).toBeNaN();
    expect(() => meanForegroundDice(new Float32Array(3), [0, 0], 2)).toThrow(/logits/);
  });
});
