// tfjs-core 4.22 registers no gradient for Conv3DBackpropInputV2, the kernel behind
// conv3dTranspose, so training through the decoder's upsampling throws. This registers it,
// mirroring tfjs's own Conv2DBackpropInput gradient:
//   y = conv3dBackpropInput(dy, filter) is the adjoint of x ↦ conv3d(x, filter), so for an
//   upstream gradient g (shaped like y):  ∂/∂dy = conv3d(g, filter),
//   ∂/∂filter = Conv3DBackpropFilterV2(x = g, dy = dy).
import * as tf from '@tensorflow/tfjs';

const KERNEL = 'Conv3DBackpropInputV2';

/** Idempotent; leaves an existing registration (e.g. a future tfjs's own) in place. */
export function registerConv3dTransposeGrad(): void {
  if (tf.getGradient(KERNEL) != null) return;
  tf.registerGradient({
    kernelName: KERNEL,
    inputsToSave: ['dy', 'filter'],
    gradFunc: (g: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const ddx = g as tf.Tensor5D;
      const [dy, filter] = saved as [tf.Tensor5D, tf.Tensor5D];
      const { strides, pad } = attrs as unknown as {
        strides: [number, number, number];
        pad: 'valid' | 'same';
      };
      return {
        dy: () => tf.conv3d(ddx, filter, strides, pad),
        filter: () =>
          tf
            .engine()
            .runKernel(
              'Conv3DBackpropFilterV2',
              { x: ddx, dy },
              { strides, pad, filterShape: filter.shape },
            ) as tf.Tensor,
      };
    },
  });
}
