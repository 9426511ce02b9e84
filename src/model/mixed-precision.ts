// Mixed precision by fp16 storage: a conv block (conv → InstanceNorm → LeakyReLU) as one
// custom-gradient op that computes in f32 (f32 master weights, f32 accumulation in every
// kernel) but keeps what the backward pass needs — the conv's input and output — as packed
// binary16 (kernels/half-pack.ts) instead of f32: half the bytes of the activations saved for
// backward. The backward unpacks them to f32 temporaries that live only for this block's
// gradient (its own tidy), then runs the fused norm gradient and the two conv gradient kernels.
// Works on every WebGPU adapter (WGSL core has pack2x16float); f16 *compute* (the `shader-f16`
// feature) is not used: SwiftShader, where this is tested, has no shader-f16.
import * as tf from '@tensorflow/tfjs';
import { convNd, torchPads } from './conv.ts';
import {
  fusedOpsActive,
  NORM_ACT,
  NORM_ACT_GRAD,
  packHalfOp,
  unpackHalfOp,
} from './kernels/index.ts';
import { cropSpatial, padSpatial, toBNC } from './ops5d.ts';

export type Precision = 'fp32' | 'mixed';

/** Why mixed precision cannot run now (null when it can): it needs our WebGPU kernels, 3-D. */
export function mixedPrecisionProblem(dims: number): string | null {
  if (!fusedOpsActive())
    return `mixed precision needs the webgpu backend with the fast kernels (backend now: ${tf.getBackend()})`;
  if (dims !== 3) return `mixed precision covers 3-D networks only (this one is ${dims}-D)`;
  return null;
}

/**
 * conv(x, w) → (bias) → InstanceNorm(γ, β, eps) → LeakyReLU(α), 3-D channels-last, with fp16
 * storage of the saved activations. The conv bias is cancelled by the norm (as in
 * fusedBiasNormAct its gradient is exactly 0). Call only when mixedPrecisionProblem(3) is null.
 */
export function mixedConvNormAct(
  x: tf.Tensor,
  w: tf.Tensor,
  bias: tf.Tensor | null,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  kernel: readonly number[],
  stride: readonly number[],
  eps: number,
  alpha: number,
): tf.Tensor {
  const e = tf.engine();
  const sameOk = stride.every((s) => s === 1) && kernel.every((k) => k % 2 === 1);
  const xShape = [...x.shape];
  const pads = sameOk ? null : torchPads(xShape.slice(1, -1), kernel, stride);
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [xx, ww, g, b] = args as tf.Tensor[];
    const y = convNd(xx, ww, kernel, stride);
    const v = toBNC(y);
    const [z, stats] = e.runKernel(NORM_ACT, { x: v, gamma: g, beta: b }, {
      eps,
      alpha,
    } as never) as unknown as tf.Tensor[];
    save([packHalfOp(xx), packHalfOp(v), stats, ww, g, b]);
    const yShape = [...y.shape];
    return {
      value: tf.reshape(z, yShape),
      gradFunc: (dz: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [px, py, st, sw, sg, sb] = saved;
          const vShape = [...v.shape];
          const [dv, dgamma, dbeta] = e.runKernel(
            NORM_ACT_GRAD,
            {
              dz: tf.reshape(dz, vShape),
              x: unpackHalfOp(py, vShape),
              stats: st,
              gamma: sg,
              beta: sb,
            },
            { alpha } as never,
          ) as unknown as tf.Tensor[];
          const dy = tf.reshape(dv, yShape);
          const xf = unpackHalfOp(px, xShape);
          const xin = pads ? padSpatial(xf, pads) : xf;
          const pad = pads ? 'valid' : 'same';
          const dw = e.runKernel('Conv3DBackpropFilterV2', { x: xin, dy }, {
            strides: stride,
            pad,
            filterShape: [...sw.shape],
          } as never) as unknown as tf.Tensor;
          const dxin = e.runKernel('Conv3DBackpropInputV2', { dy, filter: sw }, {
            strides: stride,
            pad,
            inputShape: [...xin.shape],
          } as never) as unknown as tf.Tensor;
          const dx = pads ? cropSpatial(dxin, pads) : dxin;
          const grads = [dx, dw, dgamma, dbeta];
          if (bias) grads.push(tf.zerosLike(bias));
          return grads;
        }),
    };
  });
  const inputs = [x, w, gamma, beta];
  if (bias) inputs.push(bias);
  return op(...inputs);
}
