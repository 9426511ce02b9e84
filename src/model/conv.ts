// Convolutions with PyTorch's padding semantics, channels-last (NDHWC / NHWC).
//
// nnU-Net pads (k−1)//2 on both sides. tfjs 'same' agrees for stride 1 and odd kernels, but
// for a stride-2 conv on an even size it pads (0, 1) where PyTorch pads (1, 1) (its right pad
// is then unused), which shifts the sampling grid by one voxel. Strided convs therefore pad
// explicitly and run 'valid'.
import * as tf from '@tensorflow/tfjs';
import { padSpatial } from './ops5d.ts';
import { registerConv3dTransposeGrad } from './grad-conv3d-transpose.ts';

type T = tf.Tensor;

/** PyTorch output size of a conv with padding (k−1)//2. */
export function convOutSize(n: number, k: number, s: number): number {
  const p = Math.floor((k - 1) / 2);
  return Math.floor((n + 2 * p - k) / s) + 1;
}

/** (before, after) zero padding that makes a 'valid' conv equal PyTorch's. */
export function torchPads(
  spatial: readonly number[],
  kernel: readonly number[],
  stride: readonly number[],
): Array<[number, number]> {
  return spatial.map((n, i) => {
    const k = kernel[i];
    const s = stride[i];
    const p = Math.floor((k - 1) / 2);
    const needed = (convOutSize(n, k, s) - 1) * s + k;
    const after = needed - n - p;
    if (after < 0)
      throw new Error(`torchPads: kernel ${k} stride ${s} on size ${n} would need a crop`);
    return [p, after];
  });
}

/** Conv with PyTorch padding. filter in tfjs layout [...k, in, out]. */
export function convNd(x: T, filter: T, kernel: readonly number[], stride: readonly number[]): T {
  const dims = x.rank - 2;
  if (dims !== 2 && dims !== 3) throw new Error(`convNd: rank ${x.rank}`);
  const sameOk = stride.every((s) => s === 1) && kernel.every((k) => k % 2 === 1);
  return tf.tidy(() => {
    const input = sameOk ? x : padSpatial(x, torchPads(x.shape.slice(1, -1), kernel, stride));
    const pad = sameOk ? 'same' : 'valid';
    return dims === 3
      ? tf.conv3d(
          input as tf.Tensor5D,
          filter as tf.Tensor5D,
          stride as [number, number, number],
          pad,
        )
      : tf.conv2d(input as tf.Tensor4D, filter as tf.Tensor4D, stride as [number, number], pad);
  });
}

/**
 * ConvTranspose with kernel = stride and no padding (nnU-Net's upsampling): output size
 * n·s per axis. filter in tfjs layout [...k, out, in].
 */
export function convTransposeNd(x: T, filter: T, stride: readonly number[]): T {
  const dims = x.rank - 2;
  const cout = filter.shape[dims];
  const outShape = [x.shape[0], ...x.shape.slice(1, -1).map((n, i) => n * stride[i]), cout];
  if (dims === 3) {
    registerConv3dTransposeGrad();
    return tf.conv3dTranspose(
      x as tf.Tensor5D,
      filter as tf.Tensor5D,
      outShape as [number, number, number, number, number],
      stride as [number, number, number],
      'valid',
    );
  }
  if (dims === 2) {
    return tf.conv2dTranspose(
      x as tf.Tensor4D,
      filter as tf.Tensor4D,
      outShape as [number, number, number, number],
      stride as [number, number],
      'valid',
    );
  }
  throw new Error(`convTransposeNd: rank ${x.rank}`);
}
