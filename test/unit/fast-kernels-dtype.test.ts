// tfjs' Cast of a bool or int32 tensor to float32 on webgpu relabels the buffer without converting
// it (its i32 values stay). Our fast reductions read f32, so such an input must reach the stock
// kernel (kernels/index.ts, storedAsFloat32): before, a sum of a cast mask failed to compile and
// came back as 0. WebGPU in Node through Dawn (SwiftShader here); skipped without an adapter.
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useFastKernels } from '../../src/model/kernels/index.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { installNodeWebGPU } from '../../src/node/webgpu.ts';

let gpu = true;
beforeAll(async () => {
  try {
    await installNodeWebGPU();
    await useBackend('webgpu', { fastKernels: true });
  } catch (e) {
    console.warn(`skipped: ${String(e)}`);
    gpu = false;
  }
});
afterAll(() => useFastKernels(false));

describe('fast kernels on relabeled (cast) inputs', () => {
  it('sum, mean, max and softmax of cast bool / int32 tensors equal the values', async () => {
    if (!gpu) return;
    // 6000 × 7, computed on the GPU (an add first), so no CPU copy of the data exists
    const v = tf.add(
      tf.tensor2d(
        Array.from({ length: 42_000 }, (_, i) => (i % 5) - 1),
        [6000, 7],
      ),
      0,
    );
    const mask = tf.cast(tf.greater(v, 0), 'float32'); // bool → float32: relabeled
    const ints = tf.cast(tf.cast(v, 'int32'), 'float32'); // int32 → float32: relabeled
    const want = (x: number[]) => x.reduce((a, b) => a + b, 0);
    const vals = Array.from(await v.data());
    expect((await tf.sum(mask).data())[0]).toBe(want(vals.map((x) => (x > 0 ? 1 : 0))));
    expect((await tf.sum(ints).data())[0]).toBe(want(vals));
    expect((await tf.mean(mask).data())[0]).toBeCloseTo(
      want(vals.map((x) => (x > 0 ? 1 : 0))) / 42_000,
      6,
    );
    expect(Array.from(await tf.max(ints, 0).data())).toEqual(Array(7).fill(3));
    const colSums = Array.from(await tf.sum(mask, 0).data());
    expect(want(colSums)).toBe(want(vals.map((x) => (x > 0 ? 1 : 0))));
    const sm = await tf.softmax(ints).data();
    expect(Math.abs(want(Array.from(sm).slice(0, 7)) - 1)).toBeLessThan(1e-5);
    tf.dispose([v, mask, ints]);
  }, 60_000);
});
