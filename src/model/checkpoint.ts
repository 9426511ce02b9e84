// Activation checkpointing: run `fn` without keeping its intermediates for backprop, and
// recompute them in the backward pass. Built on tf.customGrad, whose forward runs with the
// tape off (kernelDepth > 0) inside a tidy, so only the inputs are kept alive.
import * as tf from '@tensorflow/tfjs';

/**
 * tf.grads inside a backward pass. tfjs 4.22's engine.gradients() starts a fresh tape when
 * gradientDepth is 0 (which it is during the outer backward) and nulls it when done, losing the
 * outer tape whose saved tensors the outer call disposes at its end. So the outer tape is put
 * back afterwards. The inner call still frees its own saved tensors at its end, which is what
 * keeps the recomputed activations of one stage from outliving that stage's backward.
 */
export function gradsInBackward(
  f: (...ys: tf.Tensor[]) => tf.Tensor,
  xs: tf.Tensor[],
  dy: tf.Tensor,
): tf.Tensor[] {
  const state = tf.engine().state;
  const outerTape = state.activeTape;
  try {
    return tf.grads(f)(xs, dy);
  } finally {
    state.activeTape = outerTape;
  }
}

/**
 * y = fn(inputs) with gradients w.r.t. every input (pass parameters as inputs, too: tensors
 * that `fn` closes over get no gradient through a customGrad op).
 */
export function checkpoint(fn: (xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[]): tf.Tensor {
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xs = args.slice(0, -1) as tf.Tensor[];
    save(xs); // clones share data: this only pins the inputs for the recompute
    const value = fn(xs);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] =>
      gradsInBackward((...ys: tf.Tensor[]) => fn(ys), saved, dy);
    return { value, gradFunc };
  });
  return op(...inputs);
}
