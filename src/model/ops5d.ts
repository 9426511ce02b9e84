// Rank-safe elementwise ops for channels-last tensors ([B, ...spatial, C], 2-D or 3-D images).
//
// tfjs-backend-webgpu 4.22 silently miscomputes a [C] bias broadcast onto a 5-D tensor, fails
// on 5-D stridedSlice and throws on 5-D `where` (leakyRelu's gradient). So the network keeps
// tensors 5-D (or 4-D) only around the convs, and everything else here runs on a reshaped
// view: [B, N, C] with N = prod(spatial), or [B·N, C] for concat. Reshapes are free in tfjs.
import * as tf from '@tensorflow/tfjs';
import { fusedBiasNormAct, fusedOpsActive } from './kernels/index.ts';

type T = tf.Tensor;

function spatialSize(x: T): number {
  return x.shape.slice(1, -1).reduce((a, b) => a * b, 1);
}

/** [B, ...spatial, C] → [B, N, C]. */
export function toBNC(x: T): tf.Tensor3D {
  if (x.rank < 2) throw new Error(`toBNC: rank ${x.rank}`);
  const c = x.shape[x.rank - 1];
  return tf.reshape(x, [x.shape[0], spatialSize(x), c]);
}

/** Runs `f` on the [B, N, C] view and reshapes the result back to x's shape. */
function onView(x: T, f: (v: tf.Tensor3D) => T): T {
  return tf.tidy(() => tf.reshape(f(toBNC(x)), x.shape));
}

export function biasAdd(x: T, bias: T): T {
  return onView(x, (v) => tf.add(v, bias));
}

/**
 * InstanceNorm (affine) over the spatial axes per sample and channel, population variance,
 * as torch.nn.InstanceNormNd(eps, affine=True) without running stats.
 */
export function instanceNormView(v: tf.Tensor3D, gamma: T, beta: T, eps: number): tf.Tensor3D {
  const mean = tf.mean(v, 1, true);
  const centred = tf.sub(v, mean);
  const variance = tf.mean(tf.square(centred), 1, true);
  const normed = tf.mul(centred, tf.rsqrt(tf.add(variance, eps)));
  return tf.add(tf.mul(normed, gamma), beta);
}

export function instanceNorm(x: T, gamma: T, beta: T, eps = 1e-5): T {
  return onView(x, (v) => instanceNormView(v, gamma, beta, eps));
}

export function leakyRelu(x: T, alpha = 0.01): T {
  return onView(x, (v) => tf.leakyRelu(v, alpha));
}

export function softmaxChannels(x: T): T {
  return onView(x, (v) => tf.softmax(v, -1));
}

/** conv bias → InstanceNorm → LeakyReLU on one [B, N, C] view (the tail of a conv block). */
export function biasNormAct(
  x: T,
  bias: T | null,
  gamma: T,
  beta: T,
  eps: number,
  alpha: number,
): T {
  if (fusedOpsActive()) return onView(x, (v) => fusedBiasNormAct(v, bias, gamma, beta, eps, alpha));
  return onView(x, (v) => {
    // The bias is cancelled by the norm's mean subtraction, but it is a real parameter of
    // the PyTorch model (exported, averaged), so it is applied for exact equivalence.
    const b = bias ? tf.add(v, bias) : v;
    return tf.leakyRelu(instanceNormView(b as tf.Tensor3D, gamma, beta, eps), alpha);
  });
}

/** Channel concatenation [a, b] on the [B·N, C] view (its gradient is a 2-D split). */
export function concatChannels(a: T, b: T): T {
  const ca = a.shape[a.rank - 1];
  const cb = b.shape[b.rank - 1];
  const rows = a.size / ca;
  if (b.size / cb !== rows) throw new Error(`concatChannels: ${a.shape} vs ${b.shape}`);
  return tf.tidy(() => {
    const cat = tf.concat([tf.reshape(a, [rows, ca]), tf.reshape(b, [rows, cb])], 1);
    return tf.reshape(cat, [...a.shape.slice(0, -1), ca + cb]);
  });
}

/**
 * Zero padding of the spatial axes, one axis at a time on a 3-D view
 * [prod(before), axis, prod(after)], so no 4-D/5-D pad (or its slice gradient) is needed.
 */
export function padSpatial(x: T, pads: ReadonlyArray<readonly [number, number]>): T {
  const nsp = x.rank - 2;
  if (pads.length !== nsp) throw new Error(`padSpatial: ${pads.length} pads for ${nsp} axes`);
  if (pads.every(([b, a]) => b === 0 && a === 0)) return x;
  return tf.tidy(() => {
    let y = x;
    for (let i = 0; i < nsp; i++) {
      const [before, after] = pads[i];
      if (before === 0 && after === 0) continue;
      const ax = i + 1;
      const shape = y.shape;
      const outer = shape.slice(0, ax).reduce((p, q) => p * q, 1);
      const inner = shape.slice(ax + 1).reduce((p, q) => p * q, 1);
      const v = tf.reshape(y, [outer, shape[ax], inner]);
      const padded = tf.pad(v, [
        [0, 0],
        [before, after],
        [0, 0],
      ]);
      const next = [...shape];
      next[ax] = shape[ax] + before + after;
      y = tf.reshape(padded, next);
    }
    return y;
  });
}

/** Undoes padSpatial: crops the spatial axes one at a time on a 3-D view (rank-safe on webgpu). */
export function cropSpatial(
  x: tf.Tensor,
  pads: ReadonlyArray<readonly [number, number]>,
): tf.Tensor {
  let y = x;
  for (let i = 0; i < pads.length; i++) {
    const [before, after] = pads[i];
    if (before === 0 && after === 0) continue;
    const ax = i + 1;
    const shape = y.shape;
    const outer = shape.slice(0, ax).reduce((p, q) => p * q, 1);
    const inner = shape.slice(ax + 1).reduce((p, q) => p * q, 1);
    const n = shape[ax] - before - after;
    const v = tf.slice(tf.reshape(y, [outer, shape[ax], inner]), [0, before, 0], [outer, n, inner]);
    const next = [...shape];
    next[ax] = n;
    y = tf.reshape(v, next);
  }
  return y;
}
