// The training loop on tiny data (cpu backend): determinism, exact resume from a checkpoint,
// no tensor leaks, pause/stop, 2d, and the small pieces (tiny preset, split, checkpoint bytes).
import { beforeAll, describe, expect, it } from 'vitest';
import { hardCountsFromPrediction, hardCountsLabels } from '../../src/eval/pseudo-dice.ts';
import { useBackend, tf } from '../../src/model/tf-backend.ts';
import type { NamedWeights } from '../../src/model/named-weights.ts';
import type { ConfigurationPlan } from '../../src/plan/types.ts';
import {
  prepareTraining,
  SitePipeline,
  type PreparedTraining,
} from '../../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../../src/pipeline/site-store.ts';
import { splitCases } from '../../src/train/split.ts';
import { tinyConfiguration } from '../../src/train/tiny.ts';
import {
  decodeCheckpoint,
  emptyLog,
  encodeCheckpoint,
  type TrainerCheckpoint,
} from '../../src/train/train-checkpoint.ts';
import {
  Trainer,
  TrainingControl,
  type TrainerEvent,
  type TrainerOptions,
} from '../../src/train/trainer.ts';
import { Mulberry32, mulberry32, randomArray } from '../../src/util/rng.ts';
import { ellipsoidPhantom, PHANTOM_DATASET_JSON } from './helpers/phantom.ts';

const DJ = { ...PHANTOM_DATASET_JSON, numTraining: 5 };
let prep3d: PreparedTraining;
let prep2d: PreparedTraining;

beforeAll(async () => {
  await useBackend('cpu');
  const ph = Array.from({ length: 5 }, (_, i) => ellipsoidPhantom(10 + i, 12));
  const pipeline = new SitePipeline(
    memoryCasesStore(
      'Dataset999_T',
      DJ,
      ph.map((p, i) => ({ id: `c${i}`, ...p })),
    ),
  );
  prep3d = await prepareTraining(pipeline, { configuration: '3d_fullres', tiny: { patch: 8 } });
  prep2d = await prepareTraining(pipeline, { configuration: '2d', tiny: { patch: 8 } });
});

// Budget per run: 2 epochs × 2 iterations, 1 validation batch per epoch, batch 2, patch 8³.
const OPTS: TrainerOptions = { epochs: 2, itersPerEpoch: 2, valIters: 1, seed: 3 };

function make(p: PreparedTraining, cfg: string, o: Partial<TrainerOptions> = {}): Trainer {
  return new Trainer({
    plans: p.plans,
    configuration: cfg,
    datasetJson: DJ,
    cases: p.cases,
    options: { ...OPTS, ...o },
  });
}

function expectSameWeights(a: NamedWeights, b: NamedWeights): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [k, t] of a)
    expect(Buffer.from(b.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
}

describe('Trainer (tiny 3d, cpu)', () => {
  it("precision: a bad value is refused; 'mixed' on the cpu backend runs fp32 (no loss scaling)", () => {
    expect(() => make(prep3d, '3d_fullres', { precision: 'fp8' as never })).toThrow(
      /precision must be fp32 or mixed/,
    );
    const t = make(prep3d, '3d_fullres', { precision: 'mixed' });
    expect(t.precisionInUse).toBe('fp32');
    expect(t.lossScale).toBeNull();
    expect(t.options.precision).toBe('mixed');
    t.dispose();
  });

  it('two runs with the same seed give identical weights; stop → checkpoint bytes → resume continues bit-identically', async () => {
    const a = make(prep3d, '3d_fullres');
    const eventsA: TrainerEvent[] = [];
    expect(await a.run({ onEvent: (e) => void eventsA.push(e) })).toEqual({
      epoch: 2,
      stopped: false,
    });
    const wa = await a.net.namedWeights();
    const logA = a.log;
    a.dispose();
    expect(eventsA.map((e) => e.type)).toEqual([
      'iteration',
      'iteration',
      'epoch',
      'iteration',
      'iteration',
      'epoch',
    ]);
    const ep = eventsA.filter((e) => e.type === 'epoch');
    expect(ep.map((e) => e.lr)).toEqual([1e-2, 1e-2 * 0.5 ** 0.9]);
    for (const e of eventsA) {
      expect(Number.isFinite(e.type === 'epoch' ? e.trainLoss : e.loss)).toBe(true);
      expect(e.peakBytes).toBeGreaterThan(0);
      expect(e.msPerIter).toBeGreaterThan(0);
    }

    // Stopped at an epoch boundary, and (separately) in the middle of epoch 1.
    for (const stopAt of ['epoch 0', 'iteration 2'] as const) {
      const b = make(prep3d, '3d_fullres');
      const control = new TrainingControl();
      let n = 0;
      const r = await b.run({
        control,
        onEvent: (e) => {
          if (e.type === 'iteration') n++;
          if (
            (stopAt === 'epoch 0' && e.type === 'epoch') ||
            (stopAt === 'iteration 2' && e.type === 'iteration' && n === 3)
          )
            control.stop();
        },
      });
      expect(r.stopped).toBe(true);
      const bytes = encodeCheckpoint(await b.checkpoint());
      b.dispose();
      const ck = decodeCheckpoint(bytes);
      expect([ck.epoch, ck.iterationInEpoch]).toEqual(stopAt === 'epoch 0' ? [1, 0] : [1, 1]);
      const c = Trainer.fromCheckpoint(ck, prep3d.cases);
      expect(await c.run()).toEqual({ epoch: 2, stopped: false });
      expectSameWeights(await c.net.namedWeights(), wa);
      expect(c.log.train_losses).toEqual(logA.train_losses);
      expect(c.log.ema_fg_dice).toEqual(logA.ema_fg_dice);
      c.dispose();
    }
  }, 120_000);

  it('no tensor leaks: numTensors is the same after every iteration from the second on', async () => {
    const t = make(prep3d, '3d_fullres', { epochs: 1, itersPerEpoch: 4, valIters: 2 });
    const counts: number[] = [];
    await t.run({ onEvent: () => void counts.push(tf.memory().numTensors) });
    // The first step creates the momentum buffers (one per parameter that gets a gradient).
    expect(new Set(counts.slice(1)).size).toBe(1);
    t.dispose();
  }, 60_000);

  it('pause holds the loop until resume; an AbortSignal stops it', async () => {
    const t = make(prep3d, '3d_fullres', { epochs: 1, itersPerEpoch: 3, valIters: 0 });
    const control = new TrainingControl();
    let seen = 0;
    let resumedAt = -1;
    const run = t.run({
      control,
      onEvent: (e) => {
        if (e.type !== 'iteration') return;
        seen++;
        if (seen === 1) {
          control.pause();
          setTimeout(() => {
            resumedAt = seen;
            control.resume();
          }, 50);
        }
      },
    });
    expect((await run).stopped).toBe(false);
    expect(resumedAt).toBe(1); // nothing ran while paused
    expect(seen).toBe(3);
    t.dispose();

    const ac = new AbortController();
    ac.abort();
    const u = make(prep3d, '3d_fullres');
    expect(await u.run({ control: new TrainingControl(ac.signal) })).toEqual({
      epoch: 0,
      stopped: true,
    });
    u.dispose();
  }, 60_000);

  it('deep supervision off and per-stage checkpointing train too; checkpointing leaves the result (nearly) unchanged', async () => {
    const plain = make(prep3d, '3d_fullres', { epochs: 1, valIters: 0, deepSupervision: false });
    const ck = make(prep3d, '3d_fullres', {
      epochs: 1,
      valIters: 0,
      deepSupervision: false,
      checkpointing: true,
    });
    const peaks: number[][] = [[], []];
    await plain.run({
      onEvent: (e) => void (e.type === 'iteration' && peaks[0].push(e.peakBytes)),
    });
    await ck.run({ onEvent: (e) => void (e.type === 'iteration' && peaks[1].push(e.peakBytes)) });
    const [wp, wc] = [await plain.net.namedWeights(), await ck.net.namedWeights()];
    for (const [k, t] of wp) {
      const u = wc.get(k)!.data;
      let d = 0;
      t.data.forEach((v, i) => (d = Math.max(d, Math.abs(v - u[i]))));
      expect(d, k).toBeLessThan(1e-5);
    }
    expect(Math.max(...peaks[1])).toBeLessThan(Math.max(...peaks[0]));
    plain.dispose();
    ck.dispose();
  }, 60_000);
});

describe('Trainer (tiny 2d, cpu)', () => {
  it('trains on slices: 2 epochs × 2 iterations change the weights, losses finite', async () => {
    const t = make(prep2d, '2d');
    expect(t.config.patch_size).toEqual([8, 8]);
    const before = await t.net.namedWeights();
    await t.run();
    const after = await t.net.namedWeights();
    expect(t.log.train_losses.every(Number.isFinite)).toBe(true);
    const w = 'encoder.stages.0.0.convs.0.conv.weight';
    expect(after.get(w)!.data).not.toEqual(before.get(w)!.data);
    expect(after.get(w)!.shape).toEqual([8, 1, 3, 3]);
    t.dispose();
  }, 60_000);
});

describe('tiny preset', () => {
  it('replaces network, patch and batch; keeps spacing and preprocessing; documents itself; input untouched', () => {
    const cfg = prep3d.plans.configurations['3d_fullres']! as ConfigurationPlan & {
      tiny_preset?: unknown;
    };
    expect(cfg.tiny_preset).toBeDefined();
    const orig = structuredClone(cfg);
    const t = tinyConfiguration(cfg);
    expect(cfg).toEqual(orig);
    const k = t.architecture.arch_kwargs;
    expect(t.patch_size).toEqual([24, 24, 24]);
    expect(t.batch_size).toBe(2);
    expect([k.n_stages, k.features_per_stage, k.strides, k.kernel_sizes]).toEqual([
      3,
      [8, 16, 32],
      [
        [1, 1, 1],
        [2, 2, 2],
        [2, 2, 2],
      ],
      [
        [3, 3, 3],
        [3, 3, 3],
        [3, 3, 3],
      ],
    ]);
    expect([k.n_conv_per_stage, k.n_conv_per_stage_decoder]).toEqual([
      [2, 2, 2],
      [2, 2],
    ]);
    expect(t.spacing).toEqual(cfg.spacing);
    expect(t.normalization_schemes).toEqual(cfg.normalization_schemes);
    expect(t.tiny_preset.description).toMatch(/Not nnU-Net's plan/);
    expect(
      tinyConfiguration(prep2d.plans.configurations['2d']!, { patch: 16 }).architecture.arch_kwargs
        .strides,
    ).toEqual([
      [1, 1],
      [2, 2],
      [2, 2],
    ]);
    expect(() => tinyConfiguration(cfg, { patch: 10 })).toThrow(/multiple of 4/);
  });
});

describe('split', () => {
  it("'all' uses every case twice; 'random80' is seeded, int(0.8 n) for training, disjoint", () => {
    const ids = ['e', 'a', 'c', 'b', 'd'];
    expect(splitCases(ids, 'all')).toEqual({
      train: ['a', 'b', 'c', 'd', 'e'],
      val: ['a', 'b', 'c', 'd', 'e'],
    });
    const s = splitCases(ids, 'random80', 1);
    expect(s).toEqual(splitCases(ids, 'random80', 1));
    expect(s.train).toHaveLength(4);
    expect([...s.train, ...s.val].sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(() => splitCases(['a'], 'random80')).toThrow(/use fold 'all'/);
  });

  it('an explicit split (e.g. from splits_final.json) is used as given', () => {
    const t = make(prep3d, '3d_fullres', { split: { train: ['c4', 'c1'], val: ['c0'] } });
    expect([t.trainIds, t.valIds]).toEqual([['c4', 'c1'], ['c0']]);
    t.dispose();
    expect(() => make(prep3d, '3d_fullres', { split: { train: ['zz'], val: ['c0'] } })).toThrow(
      /unknown case/,
    );
  });
});

describe('pieces', () => {
  it('Mulberry32 continues mulberry32 from any saved state', () => {
    const f = mulberry32(42);
    const g = new Mulberry32(42);
    for (let i = 0; i < 5; i++) expect(g.next()).toBe(f());
    const h = new Mulberry32(0);
    h.state = g.state;
    for (let i = 0; i < 5; i++) expect(h.next()).toBe(f());
  });

  it('hard counts from an argmax equal hardCountsLabels on the logits', () => {
    const B = 2,
      K = 3,
      n = 50;
    const logits = randomArray(B * K * n, 7);
    const target = Array.from({ length: B * n }, (_, i) => Math.floor(mulberry32(i)() * 4)); // 3 = ignore
    const pred = new Int32Array(B * n);
    for (let b = 0; b < B; b++)
      for (let v = 0; v < n; v++) {
        let arg = 0;
        for (let k = 1; k < K; k++)
          if (logits[(b * K + k) * n + v] > logits[(b * K + arg) * n + v]) arg = k;
        pred[b * n + v] = arg;
      }
    expect(hardCountsFromPrediction(pred, target, K, 3)).toEqual(
      hardCountsLabels(logits, [B, K, n], target, 3),
    );
  });

  it('checkpoint bytes round-trip: tensors exact, NaN in the log and as best EMA', () => {
    const log = emptyLog();
    log.mean_fg_dice.push(NaN, 0.5);
    log.dice_per_class_or_region.push([NaN], [0.5]);
    const ck: TrainerCheckpoint = {
      weights: new Map([['a', { shape: [2, 1], data: Float32Array.from([1.5, -2e-30]) }]]),
      momentum: new Map([['a', { shape: [2, 1], data: Float32Array.from([0.25, 3]) }]]),
      epoch: 3,
      iterationInEpoch: 1,
      partialLossSum: -0.125,
      bestEma: NaN,
      rng: { train: 4294967295, val: 7 },
      plans: prep3d.plans,
      configuration: '3d_fullres',
      datasetJson: DJ,
      options: {
        epochs: 4,
        itersPerEpoch: 2,
        valIters: 1,
        seed: 0,
        deepSupervision: true,
        checkpointing: { encoder: [false], decoder: [] },
        augmentation: true,
        split: 'all',
        initialLR: 0.01,
        weightDecay: 3e-5,
        momentum: 0.99,
        clipNorm: 12,
        oversampleForegroundPercent: 0.33,
      },
      split: { train: ['c0'], val: ['c0'] },
      log,
    };
    const back = decodeCheckpoint(encodeCheckpoint(ck));
    expect(back).toEqual(ck);
    expect(Number.isNaN(back.bestEma)).toBe(true);
    expect(decodeCheckpoint(encodeCheckpoint({ ...ck, bestEma: null })).bestEma).toBeNull();
    const bad = encodeCheckpoint(ck);
    bad[bad.length - 1] ^= 1;
    expect(() => decodeCheckpoint(bad)).toThrow(/checksum/);
  });
});
