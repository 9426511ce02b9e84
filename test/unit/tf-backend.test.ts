import type { Tensor5D } from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';

describe('tfjs cpu backend in Node', () => {
  it('conv3d forward equals a hand-computed sum', async () => {
    const { useBackend } = await import('../../src/model/tf-backend.ts');
    const tf = await useBackend('cpu');
    // 1x1x1 input channel, 3x3x3 ones filter, 'valid': output = sum of the 3x3x3 block.
    const x = tf.range(0, 27).reshape([1, 3, 3, 3, 1]) as Tensor5D;
    const w = tf.ones([3, 3, 3, 1, 1]) as Tensor5D;
    expect((await tf.conv3d(x, w, 1, 'valid').data())[0]).toBe(351);
  });
});
