// The float64 reference of the full-channel-width kernel checks (test/kernels/conv-reference.ts)
// equals tfjs' cpu backend on every element of the kernel suite's shapes: strides 1 and 2, 'same'
// and 'valid', 1×3×3 / 3×3×3 / 2×2×2 kernels, batch 1 and 2.
import type * as TF from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { useBackend } from '../../src/model/tf-backend.ts';
import { randomArray } from '../../src/util/rng.ts';
import { relL2 } from '../../src/util/compare.ts';
import { prod } from '../../src/util/numeric.ts';
import { convShapes } from '../../src/model/kernels/autotune.ts';
import { KERNEL_CASES } from '../kernels/cases.ts';
import { referenceAt, sampleIndices } from '../kernels/conv-reference.ts';

describe('float64 conv reference', () => {
  it('forward, dx and dw equal the cpu backend at every element (rel. L2 < 1e-5)', async () => {
    const tf = await useBackend('cpu');
    for (const [i, c] of KERNEL_CASES.entries()) {
      const { xShape, wShape, yShape } = convShapes(c);
      const t = {
        x: randomArray(prod(xShape), 10 + i),
        w: randomArray(prod(wShape), 20 + i),
        dy: randomArray(prod(yShape), 30 + i),
      };
      const x = tf.tensor(t.x, xShape);
      const w = tf.tensor(t.w, wShape);
      const dy = tf.tensor(t.dy, yShape);
      const e = tf.engine();
      const outs = [
        e.runKernel(
          'Conv3D',
          { x, filter: w },
          { strides: c.strides, pad: c.pad, dataFormat: 'NDHWC', dilations: [1, 1, 1] },
        ),
        e.runKernel(
          'Conv3DBackpropInputV2',
          { dy, filter: w },
          { strides: c.strides, pad: c.pad, inputShape: xShape },
        ),
        e.runKernel(
          'Conv3DBackpropFilterV2',
          { x, dy },
          { strides: c.strides, pad: c.pad, filterShape: wShape },
        ),
      ] as TF.Tensor[];
      for (const [j, pass] of (['y', 'dx', 'dw'] as const).entries()) {
        const cpu = outs[j].dataSync();
        const all = Array.from({ length: cpu.length }, (_, k) => k);
        const ref = referenceAt(c, pass, all, t);
        expect(relL2(cpu, ref), `${pass} case ${i}`).toBeLessThan(1e-5);
      }
      tf.dispose([x, w, dy, ...outs]);
    }
  });

  it('samples every element of a small output; else both end rows and a seeded random set', () => {
    expect(sampleIndices(10, 2, 10, 1)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const s = sampleIndices(1000, 4, 50, 1);
    expect(s.slice(0, 4)).toEqual([0, 1, 2, 3]);
    expect(s.slice(-4)).toEqual([996, 997, 998, 999]);
    expect(s.length).toBe(58);
    expect(new Set(s).size).toBe(s.length);
    expect(s).toEqual([...s].sort((a, b) => a - b));
    expect(sampleIndices(1000, 4, 50, 1)).toEqual(s);
  });
});
