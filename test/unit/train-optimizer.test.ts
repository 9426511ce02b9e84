import { describe, expect, it } from 'vitest';
import { useBackend } from '../../src/model/tf-backend.ts';
import { addMany, SGDNesterov } from '../../src/train/optimizer.ts';
import { polyLR } from '../../src/train/schedule.ts';

describe('PolyLR', () => {
  it('matches the spec examples', () => {
    expect(polyLR(0, 1000)).toBe(1e-2);
    expect(polyLR(500, 1000)).toBeCloseTo(5.36e-3, 5);
    expect(polyLR(999, 1000)).toBeCloseTo(2.0e-5, 6);
  });
});

describe('SGD (Nesterov, weight decay, clipping) as torch.optim.SGD + clip_grad_norm_', () => {
  // float64 reference of PyTorch's update rule, written out independently.
  function reference(
    p0: number[],
    grads: number[][],
    lr: number,
    mom: number,
    wd: number,
    clip: number,
  ) {
    const p = [...p0];
    let buf: number[] | undefined;
    for (const g0 of grads) {
      const total = Math.sqrt(g0.reduce((s, v) => s + v * v, 0));
      const coef = Math.min(1, clip / (total + 1e-6));
      const d = g0.map((v, i) => v * coef + wd * p[i]);
      buf = buf ? buf.map((b, i) => mom * b + d[i]) : d;
      for (let i = 0; i < p.length; i++) p[i] -= lr * (d[i] + mom * buf[i]);
    }
    return p;
  }

  it('three steps match the float64 reference', async () => {
    const tf = await useBackend('cpu');
    const p0 = [0.5, -1.5, 2, 0.25];
    const grads = [
      [10, -20, 5, 1],
      [0.1, 0.2, -0.3, 0.4],
      [-3, 1, 2, -1],
    ]; // the first is clipped (norm 23.0 > 12)
    const v = tf.variable(tf.tensor(p0));
    const opt = new SGDNesterov(tf, new Map([['w', v]]), {
      lr: 0.01,
      momentum: 0.99,
      weightDecay: 3e-5,
      clipNorm: 12,
    });
    const norms: number[] = [];
    for (const g of grads)
      norms.push(await SGDNesterov.checkNorm(opt.step(new Map([['w', tf.tensor(g)]]))));
    expect(norms[0]).toBeCloseTo(Math.sqrt(100 + 400 + 25 + 1), 4);
    const ref = reference(p0, grads, 0.01, 0.99, 3e-5, 12);
    const got = await v.data();
    ref.forEach((r, i) => expect(got[i]).toBeCloseTo(r, 5));
    // Momentum state round-trips through a checkpoint.
    const state = await opt.state();
    const v2 = tf.variable(tf.tensor(Array.from(got)));
    const opt2 = new SGDNesterov(tf, new Map([['w', v2]]), { lr: 0.01 });
    opt2.loadState(state);
    opt.step(new Map([['w', tf.tensor([1, 1, 1, 1])]]));
    opt2.step(new Map([['w', tf.tensor([1, 1, 1, 1])]]));
    expect(Array.from(await v2.data())).toEqual(Array.from(await v.data()));
    await expect(
      SGDNesterov.checkNorm(opt.step(new Map([['w', tf.tensor([NaN, 0, 0, 0])]]))),
    ).rejects.toThrow(/diverged/);
  });
});

describe('addMany (tf.addN in groups of ≤ 7, for adapters with 8 storage buffers per stage)', () => {
  it('sums 1, 7, 8 and 50 tensors exactly like a plain loop', async () => {
    const tf = await useBackend('cpu');
    for (const n of [1, 7, 8, 50]) {
      const xs = Array.from({ length: n }, (_, i) => tf.tensor([i + 1, -2 * i, 0.5]));
      const got = addMany(tf, xs);
      const want = [(n * (n + 1)) / 2, -n * (n - 1), 0.5 * n];
      expect(Array.from(await got.data())).toEqual(want);
      tf.dispose([got, ...xs]);
    }
    expect(() => addMany(tf, [])).toThrow(/nothing to add/);
  });
});
