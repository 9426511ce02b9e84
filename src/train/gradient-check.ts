// One training step (forward with deep supervision, DC+CE loss, gradients of every parameter)
// on a chosen tfjs backend, for checking a GPU backend against the cpu reference: same seed,
// same weights, same batch, so the results must agree to float32 round-off.
import type * as TF from '@tensorflow/tfjs';
import { PlainConvUNet } from '../model/unet.ts';
import type { Precision } from '../model/mixed-precision.ts';
import { dcAndCeLoss, deepSupervisionLoss } from './loss.ts';
import { deepSupervisionTargets } from './ds-targets.ts';
import { randomArray, mulberry32 } from '../util/rng.ts';

/** A 3-stage 3-D configuration with deep supervision (what the tiny preset trains). */
export const CHECK_CONFIG = {
  patch_size: [16, 16, 16],
  architecture: {
    network_class_name: 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
    arch_kwargs: {
      n_stages: 3,
      features_per_stage: [4, 8, 16],
      conv_op: 'torch.nn.modules.conv.Conv3d',
      kernel_sizes: [
        [3, 3, 3],
        [3, 3, 3],
        [3, 3, 3],
      ],
      strides: [
        [1, 1, 1],
        [2, 2, 2],
        [2, 2, 2],
      ],
      n_conv_per_stage: [2, 2, 2],
      n_conv_per_stage_decoder: [2, 2],
      conv_bias: true,
      norm_op: 'torch.nn.modules.instancenorm.InstanceNorm3d',
      norm_op_kwargs: { eps: 1e-5, affine: true },
      dropout_op: null,
      dropout_op_kwargs: null,
      nonlin: 'torch.nn.LeakyReLU',
      nonlin_kwargs: { inplace: true, negative_slope: 0.01 },
    },
    _kw_requires_import: ['conv_op', 'norm_op', 'dropout_op', 'nonlin'],
  },
};

export interface StepResult {
  loss: number;
  grads: Map<string, Float32Array>;
}

/**
 * One deep-supervised DC+CE training step of the check network (or of `config`, a plan
 * configuration of the same form, e.g. for benchmarks) on the current backend.
 */
export async function trainingStep(
  tf: typeof TF,
  seed = 1,
  batch = 2,
  config: typeof CHECK_CONFIG = CHECK_CONFIG,
  precision: Precision = 'fp32',
  checkpointing = false,
): Promise<StepResult> {
  const classes = 3;
  const stages = config.architecture.arch_kwargs.n_stages;
  const net = PlainConvUNet.fromPlan(config as never, 1, classes, {
    seed,
    deepSupervision: true,
    precision,
    checkpointEncoder: new Array<boolean>(stages).fill(checkpointing),
    checkpointDecoder: new Array<boolean>(stages - 1).fill(checkpointing),
  });
  if (net.precisionInUse !== precision)
    throw new Error(`trainingStep: ${precision} precision is not available on this backend`);
  try {
    const [Z, Y, X] = config.patch_size;
    const vox = Z * Y * X;
    const x = tf.tensor(randomArray(batch * vox, seed + 1), [batch, Z, Y, X, 1]);
    const r = mulberry32(seed + 2);
    const seg = Int8Array.from({ length: batch * vox }, () => Math.floor(r() * classes));
    const targets = deepSupervisionTargets(
      seg,
      batch,
      [Z, Y, X],
      config.architecture.arch_kwargs.strides,
    ).map((t) => tf.tensor(Int32Array.from(t.seg), [batch, ...t.shape], 'int32'));
    const names = net.specs.map((s) => s.name);
    const { value, grads } = tf.variableGrads(
      () =>
        deepSupervisionLoss(net.forward(x), targets, (o, t) =>
          dcAndCeLoss(o, t, { batchDice: false }),
        ),
      net.variables,
    );
    const out: StepResult = { loss: (await value.data())[0], grads: new Map() };
    for (const name of names) {
      const g = grads[net.variable(name).name];
      if (g) out.grads.set(name, (await g.data()) as Float32Array);
    }
    tf.dispose([x, value, ...targets, ...Object.values(grads)]);
    return out;
  } finally {
    net.dispose();
  }
}

export interface StepComparison {
  loss: [number, number];
  /** rel. L2 of all gradients concatenated. */
  gradRelL2: number;
  /**
   * The worst single tensor: ||a − b|| / max(||b||, 1e-3 · RMS tensor norm). The floor matters:
   * a conv bias right before InstanceNorm has a true gradient of zero (the norm removes the
   * mean), so both backends give round-off noise there, and noise over noise is no measure.
   */
  worstTensor: { name: string; relL2: number };
  tensors: number;
}

export function compareSteps(a: StepResult, ref: StepResult): StepComparison {
  let num = 0;
  let den = 0;
  let worst = { name: '', relL2: 0 };
  const norm = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
  const rms = Math.sqrt(
    [...ref.grads.values()].reduce((s, g) => s + norm(g) ** 2, 0) / ref.grads.size,
  );
  for (const [name, g] of ref.grads) {
    const o = a.grads.get(name);
    if (!o) throw new Error(`gradient '${name}' missing`);
    let d = 0;
    for (let i = 0; i < g.length; i++) {
      d += (o[i] - g[i]) ** 2;
      den += g[i] ** 2;
    }
    num += d;
    const e = Math.sqrt(d) / Math.max(norm(g), 1e-3 * rms);
    if (e > worst.relL2) worst = { name, relL2: e };
  }
  return {
    loss: [a.loss, ref.loss],
    gradRelL2: Math.sqrt(num / den),
    worstTensor: worst,
    tensors: ref.grads.size,
  };
}
