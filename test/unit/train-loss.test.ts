import { beforeAll, describe, expect, it } from 'vitest';
import { useBackend, tf } from '../../src/model/tf-backend.ts';
import {
  dcAndCeLoss,
  dcAndCeLossAutodiff,
  deepSupervisionLoss,
  deepSupervisionWeights,
} from '../../src/train/loss.ts';
import { deepSupervisionTargets, dsTargetShapes } from '../../src/train/ds-targets.ts';
import { resizeNearestExact } from '../../src/train/resize.ts';
import { randomArray, mulberry32 } from '../../src/util/rng.ts';

beforeAll(async () => {
  await useBackend('cpu');
});

// B = 2, spatial 2×2 (N = 4), C = 3.
const LABELS = [0, 1, 1, 2, 2, 2, 0, 0];
const value = async (t: tf.Tensor) => (await t.data())[0];

/** float64 reference written from spec §7.3, per-voxel loops. */
function refLoss(
  logits: ArrayLike<number>,
  labels: number[],
  B: number,
  N: number,
  C: number,
  batchDice: boolean,
  ignore: number | null,
) {
  const smooth = 1e-5;
  const I = Array.from({ length: B }, () => new Array(C).fill(0));
  const P = Array.from({ length: B }, () => new Array(C).fill(0));
  const Y = Array.from({ length: B }, () => new Array(C).fill(0));
  let nll = 0;
  let valid = 0;
  for (let b = 0; b < B; b++)
    for (let n = 0; n < N; n++) {
      const row = Array.from({ length: C }, (_, c) => logits[(b * N + n) * C + c]);
      const m = Math.max(...row);
      const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
      const lab = labels[b * N + n];
      if (ignore !== null && lab === ignore) continue;
      valid++;
      nll -= row[lab] - m - Math.log(z);
      for (let c = 0; c < C; c++) {
        const p = Math.exp(row[c] - m) / z;
        P[b][c] += p;
        if (c === lab) {
          I[b][c] += p;
          Y[b][c] += 1;
        }
      }
    }
  const dcs: number[] = [];
  if (batchDice) {
    for (let c = 1; c < C; c++) {
      const i = I.reduce((s, r) => s + r[c], 0),
        p = P.reduce((s, r) => s + r[c], 0),
        y = Y.reduce((s, r) => s + r[c], 0);
      dcs.push((2 * i + smooth) / Math.max(y + p + smooth, 1e-8));
    }
  } else {
    for (let b = 0; b < B; b++)
      for (let c = 1; c < C; c++)
        dcs.push((2 * I[b][c] + smooth) / Math.max(Y[b][c] + P[b][c] + smooth, 1e-8));
  }
  const ce = valid > 0 ? nll / valid : 0;
  return ce - dcs.reduce((s, v) => s + v, 0) / dcs.length;
}

describe('DC_and_CE loss', () => {
  it('hand-computed: zero logits (p = 1/3 everywhere)', async () => {
    const logits = tf.zeros([2, 2, 2, 3]);
    const target = tf.tensor(LABELS, [2, 2, 2, 1], 'int32');
    // CE = ln 3 = 1.0986123. Per-sample Dice (fg classes 1, 2), smooth ε = 1e-5:
    //  s0 c1: I = 2/3, S_y = 2, S_p = 4/3 → (4/3+ε)/(10/3+ε) = 0.4000012
    //  s0 c2: I = 1/3, S_y = 1            → (2/3+ε)/(7/3+ε)  = 0.2857158
    //  s1 c1: I = 0,   S_y = 0            → ε/(4/3+ε)        = 0.0000075
    //  s1 c2: I = 2/3, S_y = 2            → 0.4000012
    //  mean 0.2714314 → loss = 1.0986123 − 0.2714314 = 0.8271809
    expect(await value(dcAndCeLoss(logits, target, { batchDice: false }))).toBeCloseTo(
      0.8271809,
      5,
    );
    // batch Dice: c1: I = 2/3, S_y = 2, S_p = 8/3 → (4/3)/(14/3) = 0.2857143;
    //  c2: I = 1, S_y = 3, S_p = 8/3 → 2/(17/3) = 0.3529412; mean 0.3193277 → 0.7792846
    expect(await value(dcAndCeLoss(logits, target, { batchDice: true }))).toBeCloseTo(0.7792846, 5);
  });

  it('random logits, per-sample and batch Dice, with and without an ignore label, equal the float64 reference', async () => {
    const B = 2,
      N = 3 * 4 * 5,
      C = 4;
    const logits = randomArray(B * N * C, 3, -3, 3);
    const r = mulberry32(4);
    const labels = Array.from({ length: B * N }, () => Math.floor(r() * 5)); // 4 = ignore
    const lt = tf.tensor(logits, [B, 3, 4, 5, C]);
    const tt = tf.tensor(labels, [B, 3, 4, 5], 'int32');
    for (const batchDice of [false, true]) {
      const got = await value(dcAndCeLoss(lt, tt, { batchDice, ignoreLabel: 4 }));
      expect(got).toBeCloseTo(refLoss(logits, labels, B, N, C, batchDice, 4), 5);
      const clean = labels.map((l) => l % 4);
      const got2 = await value(
        dcAndCeLoss(lt, tf.tensor(clean, [B, 3, 4, 5], 'int32'), { batchDice }),
      );
      expect(got2).toBeCloseTo(refLoss(logits, clean, B, N, C, batchDice, null), 5);
    }
  });

  it('all voxels ignored: CE is skipped, Dice sees empty sums', async () => {
    const got = await value(
      dcAndCeLoss(tf.zeros([1, 4, 3]), tf.fill([1, 4], 3, 'int32'), {
        batchDice: false,
        ignoreLabel: 3,
      }),
    );
    // Each fg class: (0 + ε)/(0 + 0 + ε) = 1 → Dice term −1, CE 0.
    expect(got).toBeCloseTo(-1, 6);
  });

  it('gradient w.r.t. the logits matches central differences of the reference', async () => {
    const B = 2,
      N = 4,
      C = 3;
    const logits = randomArray(B * N * C, 5, -2, 2);
    const g = await tf
      .grad((l: tf.Tensor) =>
        dcAndCeLoss(l, tf.tensor(LABELS, [2, 4], 'int32'), { batchDice: false }),
      )(tf.tensor(logits, [B, N, C]))
      .data();
    for (const i of [0, 7, 13, 22]) {
      const up = Float64Array.from(logits);
      up[i] += 1e-6;
      const dn = Float64Array.from(logits);
      dn[i] -= 1e-6;
      const fd =
        (refLoss(up, LABELS, B, N, C, false, null) - refLoss(dn, LABELS, B, N, C, false, null)) /
        2e-6;
      expect(Math.abs(g[i] - fd)).toBeLessThan(1e-4);
    }
  });
});

/** rel. L2 distance ‖a − b‖ / ‖b‖. */
const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0;
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d / n);
};

describe('DC_and_CE loss: the custom-gradient op vs autodiff of the plain ops', () => {
  // Every option the loss has (regions are not supported by the loss: the trainer refuses them).
  const cases = [
    { batchDice: false },
    { batchDice: true },
    { batchDice: false, ignoreLabel: 4 },
    { batchDice: true, ignoreLabel: 4 },
    { batchDice: false, doBg: true },
    { batchDice: true, doBg: true, ignoreLabel: 4, weightCe: 0.3, weightDice: 2, smooth: 1e-3 },
  ];
  for (const opts of cases) {
    it(`same value, same gradient (rel. L2 ≤ 1e-5), nothing left behind: ${JSON.stringify(opts)}`, async () => {
      const B = 2,
        C = 4,
        shape = [B, 3, 4, 5];
      const N = 60;
      const x = tf.tensor(randomArray(B * N * C, 7, -3, 3), [...shape, C]);
      const r = mulberry32(8);
      const labels = Array.from({ length: B * N }, () =>
        Math.floor(r() * (opts.ignoreLabel === undefined ? 4 : 5)),
      );
      const t = tf.tensor(labels, shape, 'int32');
      // ×3: the received gradient is not 1 (deep-supervision weight, loss scale)
      const run = async (f: typeof dcAndCeLoss) => {
        const before = tf.memory().numTensors;
        const { value, grads } = tf.valueAndGrads((l: tf.Tensor) => tf.mul(f(l, t, opts), 3))([x]);
        const out = { v: (await value.data())[0], g: (await grads[0].data()) as Float32Array };
        tf.dispose([value, ...grads]);
        expect(tf.memory().numTensors).toBe(before);
        return out;
      };
      const got = await run(dcAndCeLoss);
      const ref = await run(dcAndCeLossAutodiff);
      tf.dispose([x, t]);
      expect(got.v).toBe(ref.v);
      const e = relL2(got.g, ref.g);
      expect(e).toBeLessThanOrEqual(1e-5);
      // the gradient is not trivially small: a wrong formula would show
      expect(Math.max(...ref.g.map(Math.abs))).toBeGreaterThan(1e-3);
    });
  }

  it('a wrong gradient is caught: dropping the Dice or the CE part moves it far beyond 1e-5', async () => {
    const x = tf.tensor(randomArray(2 * 6 * 3, 9, -2, 2), [2, 6, 3]);
    const t = tf.tensor([0, 1, 2, 1, 1, 0, 2, 2, 0, 1, 0, 2], [2, 6], 'int32');
    const g = async (o: object) =>
      (await tf
        .grad((l: tf.Tensor) => dcAndCeLoss(l, t, { batchDice: false, ...o }))(x)
        .data()) as Float32Array;
    const both = await g({});
    const ceOnly = await g({ weightDice: 0 });
    const diceOnly = await g({ weightCe: 0 });
    tf.dispose([x, t]);
    expect(relL2(ceOnly, both)).toBeGreaterThan(1e-2);
    expect(relL2(diceOnly, both)).toBeGreaterThan(1e-2);
    expect(
      relL2(
        Float32Array.from(ceOnly, (v, i) => v + diceOnly[i]),
        both,
      ),
    ).toBeLessThan(1e-6);
  });
});

describe('deep supervision', () => {
  it('weights: 1/2^k, last 0, normalised', () => {
    const w = deepSupervisionWeights(5);
    [8 / 15, 4 / 15, 2 / 15, 1 / 15, 0].forEach((v, i) => expect(w[i]).toBeCloseTo(v, 12));
    expect(w.map((v) => +v.toFixed(4))).toEqual([0.5333, 0.2667, 0.1333, 0.0667, 0]);
    expect(deepSupervisionWeights(2)).toEqual([1, 0]);
    expect(deepSupervisionWeights(1)).toEqual([1]);
  });

  it('loss = Σ w_k · loss_k over non-zero weights', async () => {
    const outs = [tf.scalar(2), tf.scalar(5), tf.scalar(100)];
    const l = deepSupervisionLoss(outs, outs, (o) => o as tf.Scalar, [0.8, 0.2, 0]);
    expect(await value(l)).toBeCloseTo(0.8 * 2 + 0.2 * 5, 6);
  });

  it('target shapes and nearest-exact downsampling', () => {
    expect(
      dsTargetShapes(
        [64, 80, 80],
        [
          [1, 1, 1],
          [2, 2, 2],
          [2, 2, 2],
          [2, 2, 2],
          [2, 2, 2],
        ],
      ),
    ).toEqual([
      [64, 80, 80],
      [32, 40, 40],
      [16, 20, 20],
      [8, 10, 10],
    ]);
    expect(
      dsTargetShapes(
        [32, 112, 112],
        [
          [1, 1, 1],
          [1, 2, 2],
          [1, 2, 2],
          [2, 2, 2],
          [2, 2, 2],
        ],
      ),
    ).toEqual([
      [32, 112, 112],
      [32, 56, 56],
      [32, 28, 28],
      [16, 14, 14],
    ]);
    // 4×4 → 2×2 picks source index floor((d + 0.5)·2) = 1, 3 on each axis.
    const lab = Int8Array.from({ length: 16 }, (_, i) => i);
    expect([...resizeNearestExact(lab, 1, [1, 4, 4], [1, 2, 2], new Int8Array(4))]).toEqual([
      5, 7, 13, 15,
    ]);
    // 5 → 2: floor(0.5·2.5) = 1, floor(1.5·2.5) = 3.
    expect([
      ...resizeNearestExact(
        Int16Array.from([10, 11, 12, 13, 14]),
        1,
        [1, 1, 5],
        [1, 1, 2],
        new Int16Array(2),
      ),
    ]).toEqual([11, 13]);
  });

  it('batched targets: full resolution is the input itself, each sample resized on its own', () => {
    // B = 2, 2D 4×4, strides [1,1],[2,2],[2,2] → targets 4×4 and 2×2.
    const seg = Int8Array.from({ length: 32 }, (_, i) => (i < 16 ? i : -(i - 16)));
    const t = deepSupervisionTargets(
      seg,
      2,
      [4, 4],
      [
        [1, 1],
        [2, 2],
        [2, 2],
      ],
    );
    expect(t.map((x) => x.shape)).toEqual([
      [4, 4],
      [2, 2],
    ]);
    expect(t[0].seg).toBe(seg);
    expect([...t[1].seg]).toEqual([5, 7, 13, 15, -5, -7, -13, -15]);
    // Anisotropic: 3D (2, 4, 4) with strides [1,2,2] keeps Z.
    const s3 = new Int8Array(32).map((_, i) => i);
    const a = deepSupervisionTargets(
      s3,
      1,
      [2, 4, 4],
      [
        [1, 1, 1],
        [1, 2, 2],
        [2, 2, 2],
      ],
    );
    expect(a[1].shape).toEqual([2, 2, 2]);
    expect([...a[1].seg]).toEqual([5, 7, 13, 15, 21, 23, 29, 31]);
  });
});
