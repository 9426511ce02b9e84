import { beforeAll, describe, expect, it } from 'vitest';
import { useBackend, tf } from '../../src/model/tf-backend.ts';
import { convNd, convTransposeNd, torchPads } from '../../src/model/conv.ts';
import { registerConv3dTransposeGrad } from '../../src/model/grad-conv3d-transpose.ts';
import { permute } from '../../src/model/named-weights.ts';
import { randomArray } from '../../src/util/rng.ts';
import { maxAbsDiff, relL2 } from '../../src/util/compare.ts';
import { refConv, refConvTranspose, type Img } from './model-ref.ts';
import { prod } from '../../src/util/numeric.ts';

beforeAll(async () => {
  await useBackend('cpu');
});

const TF5 = [2, 3, 4, 1, 0]; // PyTorch [a, b, k0, k1, k2] → tfjs [k0, k1, k2, b, a]

describe('Conv3DBackpropInputV2 gradient', () => {
  it('is missing in tfjs-core and registered idempotently', () => {
    const x = tf.ones([1, 2, 2, 2, 2]);
    const f = tf.ones([2, 2, 2, 3, 2]);
    const loss = (a: tf.Tensor) =>
      tf.sum(tf.conv3dTranspose(a as tf.Tensor5D, f as tf.Tensor5D, [1, 4, 4, 4, 3], 2, 'valid'));
    // Fresh module registry per test file: nothing has registered it yet.
    expect(tf.getGradient('Conv3DBackpropInputV2') ?? null).toBeNull();
    expect(() => tf.grad(loss)(x)).toThrow(/gradient/i);
    registerConv3dTransposeGrad();
    const cfg = tf.getGradient('Conv3DBackpropInputV2');
    registerConv3dTransposeGrad();
    expect(tf.getGradient('Conv3DBackpropInputV2')).toBe(cfg);
    expect(tf.grad(loss)(x).shape).toEqual([1, 2, 2, 2, 2]);
  });

  it('matches the explicit gradient of sum(r · convT(x, w)) (kernel = stride, float64 reference)', async () => {
    registerConv3dTransposeGrad();
    const xs: Img['shape'] = [1, 2, 2, 3, 3];
    const ptW = [3, 2, 2, 1, 2]; // [in, out, kd, kh, kw], stride [2, 1, 2]
    const x = randomArray(prod(xs), 11);
    const w = randomArray(prod(ptW), 12);
    const outShape: Img['shape'] = [1, 4, 2, 6, 2];
    const r = randomArray(prod(outShape), 13);
    const loss64 = (xx: ArrayLike<number>, ww: ArrayLike<number>) => {
      const y = refConvTranspose({ data: Float64Array.from(xx), shape: xs }, ww, ptW);
      let s = 0;
      for (let i = 0; i < y.data.length; i++) s += r[i] * y.data[i];
      return s;
    };
    // The loss is linear in x (and in w): each gradient entry is the loss at a unit vector.
    const unit = (n: number, i: number) => {
      const e = new Float64Array(n);
      e[i] = 1;
      return e;
    };
    const gx = Array.from({ length: x.length }, (_, i) => loss64(unit(x.length, i), w));
    const gw = Array.from({ length: w.length }, (_, i) => loss64(x, unit(w.length, i)));

    const wTf = permute(w, ptW, TF5);
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(convTransposeNd(a, b, [2, 1, 2]), tf.tensor(r, outShape))),
    )([tf.tensor(x, xs), tf.tensor(wTf.data, wTf.shape)]);
    expect(relL2(await dx.data(), gx)).toBeLessThan(1e-6);
    const dwPt = permute((await dw.data()) as Float32Array, dw.shape, [4, 3, 0, 1, 2]);
    expect(relL2(dwPt.data, gw)).toBeLessThan(1e-6);
  });

  it('is the adjoint for a 3×3×3 kernel, stride 2, "same" padding too', async () => {
    registerConv3dTransposeGrad();
    const xs = [1, 2, 3, 2, 2];
    const fs = [3, 3, 3, 3, 2]; // [k, k, k, out, in]
    const os = [1, 4, 6, 4, 3];
    const x = randomArray(prod(xs), 21);
    const f = randomArray(prod(fs), 22);
    const r = tf.tensor(randomArray(prod(os), 23), os);
    const L = (a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(
        tf.mul(
          tf.conv3dTranspose(
            a as tf.Tensor5D,
            b as tf.Tensor5D,
            os as [number, number, number, number, number],
            2,
            'same',
          ),
          r,
        ),
      );
    // Linear in each argument: reference gradient entries are forward passes at unit vectors.
    const at = (a: Float32Array, b: Float32Array) =>
      L(tf.tensor(a, xs), tf.tensor(b, fs)).dataSync()[0];
    const unit = (n: number, i: number) => {
      const e = new Float32Array(n);
      e[i] = 1;
      return e;
    };
    const gx = Array.from({ length: x.length }, (_, i) => at(unit(x.length, i), f));
    const gf = Array.from({ length: f.length }, (_, i) => at(x, unit(f.length, i)));
    const [dx, df] = tf.grads(L)([tf.tensor(x, xs), tf.tensor(f, fs)]);
    expect(relL2(await dx.data(), gx)).toBeLessThan(1e-5);
    expect(relL2(await df.data(), gf)).toBeLessThan(1e-5);
  });
});

describe('convNd / convTransposeNd follow PyTorch', () => {
  it('torchPads: (1, 0) for k3 s2 on even sizes, symmetric for stride 1', () => {
    expect(torchPads([8, 7, 4], [3, 3, 1], [2, 2, 1])).toEqual([
      [1, 0],
      [1, 1],
      [0, 0],
    ]);
    expect(torchPads([5], [3], [1])).toEqual([[1, 1]]);
  });

  const convCases: Array<[string, Img['shape'], number[], number[]]> = [
    ['3-D k3 stride 1', [2, 4, 5, 6, 2], [3, 2, 3, 3, 3], [1, 1, 1]],
    ['3-D k3 stride 2, even sizes', [1, 6, 4, 8, 2], [3, 2, 3, 3, 3], [2, 2, 2]],
    ['3-D k3 stride 2, odd sizes', [1, 5, 7, 3, 2], [2, 2, 3, 3, 3], [2, 2, 2]],
    ['3-D anisotropic k[1,3,3] stride [1,2,2]', [1, 3, 6, 4, 2], [3, 2, 1, 3, 3], [1, 2, 2]],
  ];
  for (const [what, xs, ptW, stride] of convCases) {
    it(`conv ${what}`, async () => {
      const x = randomArray(prod(xs), 31);
      const w = randomArray(prod(ptW), 32);
      const ref = refConv({ data: x, shape: xs }, w, ptW, stride);
      const wt = permute(w, ptW, TF5);
      const y = convNd(tf.tensor(x, xs), tf.tensor(wt.data, wt.shape), ptW.slice(2), stride);
      expect(y.shape).toEqual(ref.shape);
      expect(maxAbsDiff(await y.data(), ref.data)).toBeLessThan(1e-5);
    });
  }

  it('conv 2-D k3 stride 2 (NHWC) equals the 3-D reference with depth 1', async () => {
    const xs: Img['shape'] = [2, 1, 6, 8, 3];
    const ptW = [4, 3, 1, 3, 3];
    const x = randomArray(prod(xs), 41);
    const w = randomArray(prod(ptW), 42);
    const ref = refConv({ data: x, shape: xs }, w, ptW, [1, 2, 2]);
    const wt = permute(w, [4, 3, 3, 3], [2, 3, 1, 0]);
    const y = convNd(tf.tensor(x, [2, 6, 8, 3]), tf.tensor(wt.data, wt.shape), [3, 3], [2, 2]);
    expect(y.shape).toEqual([2, 3, 4, 4]);
    expect(maxAbsDiff(await y.data(), ref.data)).toBeLessThan(1e-5);
  });

  it('transposed conv 3-D and 2-D (kernel = stride)', async () => {
    const xs: Img['shape'] = [2, 2, 3, 2, 4];
    const ptW = [4, 3, 2, 2, 2];
    const x = randomArray(prod(xs), 51);
    const w = randomArray(prod(ptW), 52);
    const ref = refConvTranspose({ data: x, shape: xs }, w, ptW);
    const wt = permute(w, ptW, TF5);
    const y = convTransposeNd(tf.tensor(x, xs), tf.tensor(wt.data, wt.shape), [2, 2, 2]);
    expect(y.shape).toEqual(ref.shape);
    expect(maxAbsDiff(await y.data(), ref.data)).toBeLessThan(1e-5);

    const ref2 = refConvTranspose(
      { data: x, shape: [2, 1, 6, 2, 4] },
      w.slice(0, 4 * 3 * 4),
      [4, 3, 1, 2, 2],
    );
    const wt2 = permute(w.slice(0, 48), [4, 3, 2, 2], [2, 3, 1, 0]);
    const y2 = convTransposeNd(tf.tensor(x, [2, 6, 2, 4]), tf.tensor(wt2.data, wt2.shape), [2, 2]);
    expect(y2.shape).toEqual([2, 12, 4, 3]);
    expect(maxAbsDiff(await y2.data(), ref2.data)).toBeLessThan(1e-5);
  });
});
