// A small conv3d forward + gradient run used to prove a backend computes what the cpu
// backend computes (browser self-test, `doctor`, tests). Pure: takes tf as an argument.
import type * as TF from '@tensorflow/tfjs';
import { randomArray } from '../util/rng.ts';
import { relL2 } from '../util/compare.ts';
import { prod } from '../util/numeric.ts';

export interface Conv3dRun {
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
}

// NDHWC input [1, 7, 6, 5, 2] (odd sizes on purpose), filter [3, 3, 3, 2, 4].
const X_SHAPE: [number, number, number, number, number] = [1, 7, 6, 5, 2];
const W_SHAPE: [number, number, number, number, number] = [3, 3, 3, 2, 4];

export async function runConv3d(tf: typeof TF): Promise<Conv3dRun> {
  const x = tf.tensor5d(randomArray(prod(X_SHAPE), 1), X_SHAPE);
  const w = tf.tensor5d(randomArray(prod(W_SHAPE), 2), W_SHAPE);
  const y = tf.conv3d(x, w, 1, 'same');
  const r = tf.tensor(randomArray(prod(y.shape), 3), y.shape);
  // Loss = sum(conv3d(x, w) * r): its gradients exercise Conv3DBackpropInputV2 and
  // Conv3DBackpropFilterV2 with a non-trivial upstream gradient.
  const grads = tf.grads((a: TF.Tensor, b: TF.Tensor) =>
    tf.sum(tf.mul(tf.conv3d(a as TF.Tensor5D, b as TF.Tensor5D, 1, 'same'), r)),
  );
  const [dx, dw] = grads([x, w]);
  const out = {
    y: (await y.data()) as Float32Array,
    dx: (await dx.data()) as Float32Array,
    dw: (await dw.data()) as Float32Array,
  };
  tf.dispose([x, w, y, r, dx, dw]);
  return out;
}

export function compareConv3d(a: Conv3dRun, ref: Conv3dRun): { y: number; dx: number; dw: number } {
  return { y: relL2(a.y, ref.y), dx: relL2(a.dx, ref.dx), dw: relL2(a.dw, ref.dw) };
}
