// Activation checkpointing: run `fn` without keeping its intermediates for backprop, and
// recompute them in the backward pass. Built on tf.customGrad, whose forward runs with the
// tape off (kernelDepth > 0) inside a tidy, so only the inputs are kept alive.
import * as tf from '@tensorflow/tfjs';

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
      tf.grads((...ys: tf.Tensor[]) => fn(ys))(saved, dy);
    return { value, gradFunc };
  });
  return op(...inputs);
}
