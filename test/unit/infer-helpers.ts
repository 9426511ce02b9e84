// Shared by the inference tests: tiny PlainConvUNet plan configurations, random weights, and a
// tfjs full-volume forward in NC(D)HW layout.
import * as tf from '@tensorflow/tfjs';
import type { PredictorPlans } from '../../src/infer/predictor.ts';
import type { PlanConfigurationLike } from '../../src/model/arch.ts';
import { permute, type NamedWeights } from '../../src/model/named-weights.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { mulberry32 } from '../../src/util/rng.ts';

export { randomArray } from '../../src/util/rng.ts';

export function tinyConfig(
  dims: 2 | 3,
  strides: number[][],
  kernels?: number[][],
  features = [4, 8, 16],
): PlanConfigurationLike {
  const n = strides.length;
  return {
    architecture: {
      network_class_name: 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
      arch_kwargs: {
        n_stages: n,
        features_per_stage: features.slice(0, n),
        conv_op: `torch.nn.modules.conv.Conv${dims}d`,
        kernel_sizes: kernels ?? strides.map((s) => s.map(() => 3)),
        strides,
        n_conv_per_stage: new Array(n).fill(2),
        n_conv_per_stage_decoder: new Array(n - 1).fill(2),
        conv_bias: true,
        norm_op: `torch.nn.modules.instancenorm.InstanceNorm${dims}d`,
        norm_op_kwargs: { eps: 1e-5, affine: true },
        dropout_op: null,
        nonlin: 'torch.nn.LeakyReLU',
        nonlin_kwargs: { inplace: true } as Record<string, unknown>,
      },
    },
  };
}

/** Random values for every parameter (biases and norm affines too, so none is a no-op). */
export async function randomizeWeights(model: PlainConvUNet, seed: number): Promise<NamedWeights> {
  const rnd = mulberry32(seed);
  const w = await model.namedWeights();
  for (const [name, t] of w) {
    const [base, half] = name.endsWith('norm.weight')
      ? [1, 0.2]
      : name.endsWith('weight')
        ? [0, 0.5]
        : [0, 0.3];
    for (let i = 0; i < t.data.length; i++) t.data[i] = base + half * (2 * rnd() - 1);
  }
  model.loadNamedWeights(w);
  return w;
}

/** tfjs forward (deep supervision off) of an NC(D)HW array → NK(D)HW logits. */
export async function tfForwardNC(
  model: PlainConvUNet,
  x: Float32Array,
  shape: number[],
): Promise<Float32Array> {
  const r = shape.length;
  const toLast = [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2), 1];
  const xl = permute(x, shape, toLast);
  const ds = model.deepSupervision;
  model.deepSupervision = false;
  try {
    const y = tf.tidy(() => model.forward(tf.tensor(xl.data, xl.shape, 'float32'))[0]);
    const data = (await y.data()) as Float32Array;
    const yShape = y.shape;
    y.dispose();
    const toFirst = [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)];
    return permute(data, yShape, toFirst).data;
  } finally {
    model.deepSupervision = ds;
  }
}

export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0,
    den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** Minimal plans with one configuration (name `3d_fullres` for 3-D patches, `2d` otherwise). */
export function tinyPlans(opts: {
  patch: number[];
  spacing: number[];
  strides: number[][];
  transposeForward?: number[];
  features?: number[];
}): { plans: PredictorPlans; configuration: string } {
  const dims = opts.patch.length as 2 | 3;
  const configuration = dims === 3 ? '3d_fullres' : '2d';
  const tfw = opts.transposeForward ?? [0, 1, 2];
  const tbw = [0, 1, 2].map((i) => tfw.indexOf(i));
  const plans: PredictorPlans = {
    transpose_forward: tfw,
    transpose_backward: tbw,
    foreground_intensity_properties_per_channel: {
      '0': {
        max: 3,
        mean: 0.5,
        median: 0.5,
        min: -1,
        percentile_00_5: -0.9,
        percentile_99_5: 2.5,
        std: 0.7,
      },
    },
    configurations: {
      [configuration]: {
        patch_size: opts.patch,
        spacing: opts.spacing,
        normalization_schemes: ['ZScoreNormalization'],
        use_mask_for_norm: [false],
        resampling_fn_data_kwargs: { order: 3, order_z: 0, force_separate_z: null },
        resampling_fn_seg_kwargs: { order: 1, order_z: 0, force_separate_z: null },
        resampling_fn_probabilities_kwargs: { order: 1, order_z: 0, force_separate_z: null },
        architecture: tinyConfig(dims, opts.strides, undefined, opts.features).architecture,
      },
    },
  };
  return { plans, configuration };
}

export const DATASET_JSON = {
  channel_names: { '0': 'T1' },
  labels: { background: 0, organ: 1, lesion: 2 },
  numTraining: 1,
  file_ending: '.nii.gz',
};
