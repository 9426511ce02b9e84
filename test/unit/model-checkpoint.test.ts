import { beforeAll, describe, expect, it } from 'vitest';
import { useBackend, tf } from '../../src/model/tf-backend.ts';
import type { UNetArch } from '../../src/model/arch.ts';
import { checkpoint } from '../../src/model/checkpoint.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { randomArray } from '../../src/util/rng.ts';
import { relL2 } from '../../src/util/compare.ts';

beforeAll(async () => {
  await useBackend('cpu');
});

const ARCH: UNetArch = {
  dims: 3,
  inputChannels: 1,
  numClasses: 3,
  nStages: 3,
  features: [4, 8, 16],
  kernelSizes: Array(3).fill([3, 3, 3]),
  strides: [
    [1, 1, 1],
    [2, 2, 2],
    [2, 2, 2],
  ],
  nConvPerStage: [2, 2, 2],
  nConvPerStageDecoder: [2, 2],
  convBias: true,
  normEps: 1e-5,
  negativeSlope: 0.01,
};

/** Gradients of sum(r_k · out_k), keyed by parameter name, and the bytes live at the end of the forward. */
async function run(net: PlainConvUNet, x: tf.Tensor, rs: tf.Tensor[]) {
  let liveBytes = 0;
  const { value, grads } = tf.variableGrads(() => {
    const outs = net.forward(x);
    const loss = tf.addN(outs.map((o, k) => tf.sum(tf.mul(o, rs[k])))) as tf.Scalar;
    liveBytes = tf.memory().numBytes;
    return loss;
  });
  const byName = new Map<string, Float32Array>();
  for (const s of net.specs)
    byName.set(s.name, (await grads[net.variable(s.name).name].data()) as Float32Array);
  const out = { loss: (await value.data())[0], grads: byName, liveBytes };
  value.dispose();
  Object.values(grads).forEach((g) => g.dispose());
  return out;
}

describe('activation checkpointing', () => {
  it('checkpoint() gives the same value and gradients as the plain function', async () => {
    const f = (xs: tf.Tensor[]) => tf.sum(tf.mul(tf.sin(tf.mul(xs[0], xs[1])), xs[0]));
    const a = tf.tensor(randomArray(10, 1));
    const b = tf.tensor(randomArray(10, 2));
    const plain = tf.grads((p: tf.Tensor, q: tf.Tensor) => f([p, q]))([a, b]);
    const ck = tf.grads((p: tf.Tensor, q: tf.Tensor) => checkpoint(f, [p, q]))([a, b]);
    expect(relL2(await ck[0].data(), await plain[0].data())).toBeLessThan(1e-7);
    expect(relL2(await ck[1].data(), await plain[1].data())).toBeLessThan(1e-7);
  });

  it('per-stage checkpointing of the tiny U-Net leaves loss and all gradients unchanged, with less live memory', async () => {
    const net = new PlainConvUNet(ARCH, { seed: 5 });
    const x = tf.tensor(randomArray(2 * 8 ** 3, 6), [2, 8, 8, 8, 1]);
    const rs = [
      tf.tensor(randomArray(2 * 8 ** 3 * 3, 7), [2, 8, 8, 8, 3]),
      tf.tensor(randomArray(2 * 4 ** 3 * 3, 8), [2, 4, 4, 4, 3]),
    ];
    const before = tf.memory().numTensors;
    const base = await run(net, x, rs);
    expect(tf.memory().numTensors).toBe(before);
    const configs: Array<[boolean[], boolean[]]> = [
      [
        [true, true, true],
        [true, true],
      ],
      [
        [true, false, true],
        [false, true],
      ],
    ];
    for (const [enc, dec] of configs) {
      net.checkpointEncoder = enc;
      net.checkpointDecoder = dec;
      const ck = await run(net, x, rs);
      // No tensor outlives the step (the backward-inside-backward leaves nothing behind).
      expect(tf.memory().numTensors).toBe(before);
      if (process.env.LOG_CKPT) console.log('live bytes', base.liveBytes, ck.liveBytes);
      expect(Math.abs(ck.loss - base.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(base.loss));
      for (const [name, g] of base.grads) {
        const err = relL2(ck.grads.get(name)!, g);
        // Bias before InstanceNorm: its true gradient is 0, both sides are rounding noise.
        if (name.includes('conv.bias'))
          expect(Math.max(...ck.grads.get(name)!.map(Math.abs))).toBeLessThan(1e-4);
        else expect(err, name).toBeLessThan(1e-5);
      }
      if (enc.every(Boolean)) expect(ck.liveBytes).toBeLessThan(base.liveBytes);
    }
    net.dispose();
  });
});
