// Mixed precision by fp16 storage: a conv block (conv → InstanceNorm → LeakyReLU) as one
// custom-gradient op that computes in f32 (f32 master weights, f32 accumulation in every
// kernel) but keeps what the backward pass needs — the conv's input and output — as packed
// binary16 (kernels/half-pack.ts) instead of f32: half the bytes of the activations saved for
// backward. The backward unpacks them to f32 temporaries that live only for this block's
// gradient (each freed once used), then runs the fused norm gradient and the two conv gradient
// kernels.
// Every op here also frees, in its backward, the gradient it received and what it saved: tfjs
// 4.22's backprop (tape.ts) keeps every gradient of every intermediate, and engine.gradients
// every saved tensor, until the whole backward ends — f32 gradients of all activations at once,
// which outweigh the fp16 activations themselves. A freed gradient is never read again: nodes run
// in reverse order, and these ops' outputs are never the variables asked for. (The engine's own
// final dispose of a saved tensor is then a no-op.)
// The decoder's other ops — transposed conv, seg heads, the concat — and activation
// checkpointing use the same pattern (mixedRecompute, mixedConcat), as do ResidualEncoderUNet's
// residual sum + activation and skip pooling (mixedAddAct, mixedLinear) and, in every precision,
// the DC+CE loss (train/loss.ts).
// Works on every WebGPU adapter (WGSL core has pack2x16float); f16 *compute* (the `shader-f16`
// feature) is not used: SwiftShader, where this is tested, has no shader-f16.
import * as tf from '@tensorflow/tfjs';
import { gradsInBackward } from './checkpoint.ts';
import { convNd, torchPads } from './conv.ts';
import {
  fusedOpsActive,
  NORM_ACT,
  NORM_ACT_GRAD,
  packHalfOp,
  unpackHalfOp,
} from './kernels/index.ts';
import { concatChannels, cropSpatial, padSpatial, toBNC } from './ops5d.ts';

export type Precision = 'fp32' | 'mixed';

/** Why mixed precision cannot run now (null when it can): it needs our WebGPU kernels, 3-D. */
export function mixedPrecisionProblem(dims: number): string | null {
  if (!fusedOpsActive())
    return `mixed precision needs the webgpu backend with the fast kernels (backend now: ${tf.getBackend()})`;
  if (dims !== 3) return `mixed precision covers 3-D networks only (this one is ${dims}-D)`;
  return null;
}

const release = (...ts: tf.Tensor[]): void => tf.dispose(ts);

/**
 * Pads or crops (ops5d's padSpatial / cropSpatial) one spatial axis at a time, freeing each
 * step's result as the next exists: those helpers keep every axis' temporaries until their end.
 * Consumes `x` (frees it unless nothing was to do).
 */
function axisByAxis(
  x: tf.Tensor,
  pads: ReadonlyArray<readonly [number, number]>,
  f: (t: tf.Tensor, p: ReadonlyArray<readonly [number, number]>) => tf.Tensor,
): tf.Tensor {
  let y = x;
  pads.forEach(([before, after], i) => {
    if (before === 0 && after === 0) return;
    const one = pads.map((p, j) => (j === i ? p : ([0, 0] as const)));
    const next = tf.tidy(() => f(y, one));
    y.dispose();
    y = next;
  });
  return y;
}

/**
 * y = fn(inputs) as one op that saves fp16 copies of its first `nActs` inputs and the rest as
 * they are; the backward unpacks the copies, re-runs fn on them in f32 and differentiates that
 * (checkpoint.ts' gradsInBackward), then frees what it saved. Nothing fn computes is kept, so this
 * serves both the cheap decoder ops (transposed conv, seg head: recomputing costs one forward
 * kernel; their gradients are those at the rounded input, within fp16's storage error) and
 * activation checkpointing of whole stages with nActs 0 (see unet.ts' runStage).
 */
export function mixedRecompute(
  fn: (xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  nActs: number,
): tf.Tensor {
  const shapes = inputs.slice(0, nActs).map((t) => [...t.shape]);
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xs = args.slice(0, -1) as tf.Tensor[];
    save([...xs.slice(0, nActs).map((t) => packHalfOp(t)), ...xs.slice(nActs)]);
    return {
      value: fn(xs),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const packed = saved.slice(0, nActs);
        const acts = packed.map((p, i) => unpackHalfOp(p, shapes[i]));
        release(...packed);
        const rest = saved.slice(nActs);
        const grads = gradsInBackward((...ys) => fn(ys), [...acts, ...rest], dy);
        release(dy, ...acts, ...rest);
        return grads;
      },
    };
  });
  return op(...inputs);
}

/**
 * concatChannels(a, b) as an op that saves nothing (its gradient is a split of dy, which only
 * needs the shapes) and frees dy after the split; as plain tf ops, the reshapes around the
 * concat would keep f32 references to both inputs until the backward ends.
 */
export function mixedConcat(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const ca = a.shape[a.rank - 1];
  const cb = b.shape[b.rank - 1];
  const rows = a.size / ca;
  const aShape = [...a.shape];
  const bShape = [...b.shape];
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [aa, bb] = args as tf.Tensor[];
    return {
      value: concatChannels(aa, bb),
      gradFunc: (dy: tf.Tensor) => {
        const grads = tf.tidy(() => {
          const d = tf.reshape(dy, [rows, ca + cb]);
          return [
            tf.reshape(tf.slice(d, [0, 0], [rows, ca]), aShape),
            tf.reshape(tf.slice(d, [0, ca], [rows, cb]), bShape),
          ];
        });
        release(dy);
        return grads;
      },
    };
  });
  return op(a, b);
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
    const vShape = [...v.shape];
    return {
      value: tf.reshape(z, yShape),
      gradFunc: (dz: tf.Tensor, saved: tf.Tensor[]) => {
        const [px, py, st, sw, sg, sb] = saved;
        // Each f32 temporary is freed as soon as the next one exists, so a block's backward
        // holds at most about three activation-sized f32 tensors at a time.
        const [dv, dgamma, dbeta] = tf.tidy(() =>
          e.runKernel(
            NORM_ACT_GRAD,
            {
              dz: tf.reshape(dz, vShape),
              x: unpackHalfOp(py, vShape),
              stats: st,
              gamma: sg,
              beta: sb,
            },
            { alpha } as never,
          ),
        ) as unknown as tf.Tensor[];
        release(dz, py, st);
        const dy = tf.reshape(dv, yShape);
        const pad = pads ? 'valid' : 'same';
        const xin = pads
          ? axisByAxis(unpackHalfOp(px, xShape), pads, padSpatial)
          : unpackHalfOp(px, xShape);
        release(px);
        const dw = e.runKernel('Conv3DBackpropFilterV2', { x: xin, dy }, {
          strides: stride,
          pad,
          filterShape: [...sw.shape],
        } as never) as unknown as tf.Tensor;
        const xinShape = [...xin.shape];
        release(xin);
        const dxin = e.runKernel('Conv3DBackpropInputV2', { dy, filter: sw }, {
          strides: stride,
          pad,
          inputShape: xinShape,
        } as never) as unknown as tf.Tensor;
        release(dv, dy);
        const dx = pads ? axisByAxis(dxin, pads, cropSpatial) : dxin;
        const grads = [dx, dw, dgamma, dbeta];
        if (bias) grads.push(tf.zerosLike(bias));
        return grads;
      },
    };
  });
  const inputs = [x, w, gamma, beta];
  if (bias) inputs.push(bias);
  return op(...inputs);
}

/**
 * LeakyReLU(a + b) (ResidualEncoderUNet's BasicBlockD tail: the residual sum, then the
 * activation) on flat views, as one op that saves an fp16 copy of its output and nothing else.
 * The gradient is dy·1 where the output is > 0 and dy·α elsewhere (tfjs' LeakyRelu gradient, with
 * sum > 0 ⇔ output > 0 for α ≥ 0), to both inputs; the fp16 copy keeps the sign, and only sums
 * below fp16's smallest subnormal (|s| < 2^-25) can land on the other side. As plain ops, the
 * reshapes, the add and the activation would keep a, b and the sum in f32 until the backward ends.
 */
export function mixedAddAct(a: tf.Tensor, b: tf.Tensor, alpha: number): tf.Tensor {
  if (!(alpha >= 0))
    throw new Error(`mixedAddAct: slope ${alpha} (the sign of the output is used)`);
  const shape = [...a.shape];
  const size = a.size;
  if (b.size !== size) throw new Error(`mixedAddAct: ${a.shape} vs ${b.shape}`);
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [aa, bb] = args as tf.Tensor[];
    const z = tf.reshape(
      tf.leakyRelu(tf.add(tf.reshape(aa, [size]), tf.reshape(bb, [size])), alpha),
      shape,
    );
    save([packHalfOp(z)]);
    return {
      value: z,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const zf = unpackHalfOp(saved[0], [size]);
        release(...saved);
        const da = tf.tidy(() => {
          const d = tf.reshape(dy, [size]);
          return tf.reshape(tf.where(tf.greater(zf, 0), d, tf.mul(d, alpha)), shape);
        });
        release(dy, zf);
        return [da, tf.clone(da)];
      },
    };
  });
  return op(a, b);
}

/**
 * fn(x) for an fn linear in x whose gradient does not depend on x's values (average pooling), as
 * an op that saves nothing: the backward differentiates fn at zeros of x's shape (a temporary
 * that lives only for this op's backward) and frees dy. As a plain op, avgPool3d keeps its f32
 * input until the backward ends.
 */
export function mixedLinear(fn: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor): tf.Tensor {
  const xShape = [...x.shape];
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: fn(args[0] as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => {
      const zeros = tf.zeros(xShape);
      const grads = gradsInBackward((y) => fn(y), [zeros], dy);
      release(dy, zeros);
      return grads;
    },
  }));
  return op(x);
}
