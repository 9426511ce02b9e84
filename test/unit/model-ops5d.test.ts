import { beforeAll, describe, expect, it } from 'vitest';
import { useBackend, tf } from '../../src/model/tf-backend.ts';
import {
  biasAdd,
  biasNormAct,
  concatChannels,
  instanceNorm,
  leakyRelu,
  padSpatial,
  softmaxChannels,
  toBNC,
} from '../../src/model/ops5d.ts';
import { randomArray } from '../../src/util/rng.ts';
import { maxAbsDiff } from '../../src/util/compare.ts';
import { refInstanceNorm } from './model-ref.ts';

beforeAll(async () => {
  await useBackend('cpu');
});

const SHAPE5 = [2, 3, 4, 5, 3]; // B, D, H, W, C
const N = 3 * 4 * 5;

describe('rank-safe ops on channels-last tensors', () => {
  it('toBNC is a pure reshape to [B, N, C]', () => {
    const x = tf.tensor(randomArray(2 * N * 3, 1), SHAPE5);
    expect(toBNC(x).shape).toEqual([2, N, 3]);
  });

  it('biasAdd adds per channel (5-D and 4-D)', async () => {
    for (const shape of [SHAPE5, [2, 4, 5, 3]]) {
      const xs = randomArray(
        shape.reduce((a, b) => a * b, 1),
        2,
      );
      const bs = [0.5, -1, 2];
      const y = await biasAdd(tf.tensor(xs, shape), tf.tensor1d(bs)).data();
      const ref = Array.from(xs, (v, i) => v + bs[i % 3]);
      expect(maxAbsDiff(y, ref)).toBeLessThan(1e-6);
    }
  });

  it('instanceNorm equals the naive per-(sample, channel) normalisation', async () => {
    const xs = randomArray(2 * N * 3, 3, -2, 5);
    const g = [1.5, 0.5, -1];
    const b = [0.1, 0, -0.3];
    const y = await instanceNorm(
      tf.tensor(xs, SHAPE5),
      tf.tensor1d(g),
      tf.tensor1d(b),
      1e-5,
    ).data();
    expect(maxAbsDiff(y, refInstanceNorm(xs, 2, N, 3, g, b, 1e-5))).toBeLessThan(1e-5);
  });

  it('leakyRelu uses slope 0.01 below zero', async () => {
    const xs = randomArray(2 * N * 3, 4);
    const y = await leakyRelu(tf.tensor(xs, SHAPE5), 0.01).data();
    expect(
      maxAbsDiff(
        y,
        Array.from(xs, (v) => (v > 0 ? v : 0.01 * v)),
      ),
    ).toBeLessThan(1e-7);
  });

  it('softmaxChannels normalises over the last axis', async () => {
    const xs = randomArray(2 * N * 3, 5, -3, 3);
    const y = await softmaxChannels(tf.tensor(xs, SHAPE5)).data();
    const ref = new Float64Array(xs.length);
    for (let r = 0; r < xs.length / 3; r++) {
      const e = [0, 1, 2].map((c) => Math.exp(xs[r * 3 + c]));
      const s = e[0] + e[1] + e[2];
      for (let c = 0; c < 3; c++) ref[r * 3 + c] = e[c] / s;
    }
    expect(maxAbsDiff(y, ref)).toBeLessThan(1e-6);
  });

  it('biasNormAct = leakyRelu(instanceNorm(x + bias)) and its gradient matches finite differences', async () => {
    const xs = randomArray(2 * N * 3, 6, -1, 1);
    const bias = [0.3, -0.2, 0.1];
    const g = [1.2, 0.8, -0.5];
    const be = [0.05, -0.1, 0.2];
    const y = await biasNormAct(
      tf.tensor(xs, SHAPE5),
      tf.tensor1d(bias),
      tf.tensor1d(g),
      tf.tensor1d(be),
      1e-5,
      0.01,
    ).data();
    const shifted = Array.from(xs, (v, i) => v + bias[i % 3]);
    const ref = Array.from(refInstanceNorm(shifted, 2, N, 3, g, be, 1e-5), (v) =>
      v > 0 ? v : 0.01 * v,
    );
    expect(maxAbsDiff(y, ref)).toBeLessThan(1e-5);

    // d/dgamma of sum(r · y): tfjs vs central differences of the float64 reference.
    const r = randomArray(xs.length, 7);
    const loss64 = (gg: number[]) => {
      const z = refInstanceNorm(shifted, 2, N, 3, gg, be, 1e-5);
      let s = 0;
      for (let i = 0; i < z.length; i++) s += r[i] * (z[i] > 0 ? z[i] : 0.01 * z[i]);
      return s;
    };
    const dg = await tf
      .grad((gt: tf.Tensor) =>
        tf.sum(
          tf.mul(
            biasNormAct(tf.tensor(xs, SHAPE5), tf.tensor1d(bias), gt, tf.tensor1d(be), 1e-5, 0.01),
            tf.tensor(r, SHAPE5),
          ),
        ),
      )(tf.tensor1d(g))
      .data();
    for (let c = 0; c < 3; c++) {
      const h = 1e-6;
      const up = [...g];
      up[c] += h;
      const dn = [...g];
      dn[c] -= h;
      const fd = (loss64(up) - loss64(dn)) / (2 * h);
      expect(Math.abs(dg[c] - fd)).toBeLessThan(1e-3 * Math.max(1, Math.abs(fd)));
    }
  });

  it('concatChannels puts a first, then b, per voxel', async () => {
    const a = randomArray(2 * N * 3, 8);
    const b = randomArray(2 * N * 2, 9);
    const y = await concatChannels(tf.tensor(a, SHAPE5), tf.tensor(b, [2, 3, 4, 5, 2])).data();
    const ref: number[] = [];
    for (let v = 0; v < 2 * N; v++)
      ref.push(a[v * 3], a[v * 3 + 1], a[v * 3 + 2], b[v * 2], b[v * 2 + 1]);
    expect(maxAbsDiff(y, ref)).toBe(0);
  });

  it('padSpatial zero-pads each spatial axis (before, after)', async () => {
    const shape = [1, 2, 3, 2, 2];
    const xs = randomArray(24, 10);
    const pads: Array<[number, number]> = [
      [1, 0],
      [0, 2],
      [1, 1],
    ];
    const y = padSpatial(tf.tensor(xs, shape), pads);
    expect(y.shape).toEqual([1, 3, 5, 4, 2]);
    const yd = await y.data();
    for (let d = 0; d < 3; d++)
      for (let h = 0; h < 5; h++)
        for (let w = 0; w < 4; w++)
          for (let c = 0; c < 2; c++) {
            const [sd, sh, sw] = [d - 1, h, w - 1];
            const inside = sd >= 0 && sd < 2 && sh < 3 && sw >= 0 && sw < 2;
            const want = inside ? xs[((sd * 3 + sh) * 2 + sw) * 2 + c] : 0;
            expect(yd[((d * 5 + h) * 4 + w) * 2 + c]).toBe(want);
          }
  });
});
