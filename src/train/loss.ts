// nnU-Net's training loss (spec §7.3–7.4), non-region case: CE + soft Dice
// (MemoryEfficientSoftDiceLoss: softmax, do_bg false, smooth 1e-5, returned negative), with
// deep-supervision weighting. Computed on [B, N, C] / [B·N, C] views only, so no 4-/5-D
// broadcast or `where` reaches the webgpu backend (see src/model/ops5d.ts).
import * as tf from '@tensorflow/tfjs';
import { toBNC } from '../model/ops5d.ts';
import { addMany } from './optimizer.ts';

export interface DcCeOptions {
  /** Plan's batch_dice: sum I, S_p, S_y over the batch before the ratio. */
  batchDice: boolean;
  smooth?: number;
  doBg?: boolean;
  /** Label value to ignore (nnU-Net: the `ignore` label, = number of classes); null: none. */
  ignoreLabel?: number | null;
  weightCe?: number;
  weightDice?: number;
}

/**
 * Labels [B, ...spatial] or [B, ...spatial, 1] (int) → one-hot [B, N, C] (float32), the
 * validity mask [B, N, 1] (null without an ignore label) and the labels flat [B·N].
 */
function prepareTarget(target: tf.Tensor, b: number, n: number, c: number, ignore: number | null) {
  const flat = tf.cast(tf.reshape(target, [b * n]), 'int32');
  if (ignore === null) {
    return {
      onehot: tf.reshape(tf.cast(tf.oneHot(flat, c), 'float32'), [b, n, c]),
      mask: null,
      flat,
    };
  }
  const valid = tf.notEqual(flat, ignore);
  // As nnU-Net: ignored voxels become class 0 for the Dice target, and are masked out.
  const dice = tf.where(valid, flat, tf.zerosLike(flat));
  const onehot = tf.reshape(tf.cast(tf.oneHot(dice, c), 'float32'), [b, n, c]);
  return { onehot, mask: tf.reshape(tf.cast(valid, 'float32'), [b, n, 1]), flat };
}

/**
 * −mean soft Dice from probabilities and one-hot targets on [B, N, C] (MemoryEfficientSoftDiceLoss).
 */
export function softDiceLoss(
  probs: tf.Tensor3D,
  onehot: tf.Tensor3D,
  mask: tf.Tensor | null,
  opts: { batchDice: boolean; smooth?: number; doBg?: boolean },
): tf.Scalar {
  const smooth = opts.smooth ?? 1e-5;
  return tf.tidy(() => {
    let p: tf.Tensor = probs;
    let y: tf.Tensor = onehot;
    if (!(opts.doBg ?? false)) {
      const [b, n, c] = probs.shape;
      // Dropping channel 0 as a 2-D slice of the [B·N, C] view.
      p = tf.reshape(tf.slice(tf.reshape(p, [b * n, c]), [0, 1], [b * n, c - 1]), [b, n, c - 1]);
      y = tf.reshape(tf.slice(tf.reshape(y, [b * n, c]), [0, 1], [b * n, c - 1]), [b, n, c - 1]);
    }
    if (mask) {
      p = tf.mul(p, mask);
      y = tf.mul(y, mask);
    }
    let inter = tf.sum(tf.mul(p, y), 1); // [B, C']
    let sumP = tf.sum(p, 1);
    let sumY = tf.sum(y, 1);
    if (opts.batchDice) {
      inter = tf.sum(inter, 0);
      sumP = tf.sum(sumP, 0);
      sumY = tf.sum(sumY, 0);
    }
    const dc = tf.div(
      tf.add(tf.mul(inter, 2), smooth),
      tf.maximum(tf.add(tf.add(sumY, sumP), smooth), 1e-8),
    );
    return tf.neg(tf.mean(dc)) as tf.Scalar;
  });
}

/**
 * CE + Dice for channels-last logits [B, ...spatial, C] and integer labels [B, ...spatial(, 1)].
 * CE is the mean over valid voxels and is skipped when none is valid (nnU-Net's DC_and_CE_loss).
 */
export function dcAndCeLoss(logits: tf.Tensor, target: tf.Tensor, opts: DcCeOptions): tf.Scalar {
  const ignore = opts.ignoreLabel ?? null;
  const wCe = opts.weightCe ?? 1;
  const wDice = opts.weightDice ?? 1;
  return tf.tidy(() => {
    const v = toBNC(logits);
    const [b, n, c] = v.shape;
    if (target.size !== b * n) throw new Error(`target ${target.shape} vs logits ${logits.shape}`);
    const { onehot, mask } = prepareTarget(target, b, n, c, ignore);
    const flatLogits = tf.reshape(v, [b * n, c]);
    const probs = tf.reshape(tf.softmax(flatLogits, -1), [b, n, c]) as tf.Tensor3D;
    const dice = softDiceLoss(probs, onehot as tf.Tensor3D, mask, opts);
    // CE from log-softmax; ignored voxels have an all-zero row in `ceTarget`.
    const logp = tf.logSoftmax(flatLogits, -1);
    const ceTarget = mask
      ? tf.mul(tf.reshape(onehot, [b * n, c]), tf.reshape(mask, [b * n, 1]))
      : tf.reshape(onehot, [b * n, c]);
    const nll = tf.neg(tf.sum(tf.mul(logp, ceTarget)));
    // With no valid voxel nll is 0, so dividing by max(count, 1) gives 0 = "CE skipped",
    // without a GPU→CPU readback.
    const nValid = mask ? tf.maximum(tf.sum(mask), 1) : tf.scalar(b * n);
    const ce = tf.div(nll, nValid);
    return tf.add(tf.mul(ce, wCe), tf.mul(dice, wDice)) as tf.Scalar;
  });
}

/** w_k = 1/2^k, the lowest-resolution weight set to 0, normalised to sum 1 (spec §7.4). */
export function deepSupervisionWeights(nOutputs: number): number[] {
  if (nOutputs < 1) throw new Error('no outputs');
  if (nOutputs === 1) return [1];
  const w = Array.from({ length: nOutputs }, (_, k) => 1 / 2 ** k);
  w[nOutputs - 1] = 0;
  const s = w.reduce((a, v) => a + v, 0);
  return w.map((v) => v / s);
}

/** Σ w_k · loss(out_k, target_k), skipping zero weights (outputs highest resolution first). */
export function deepSupervisionLoss(
  outputs: tf.Tensor[],
  targets: tf.Tensor[],
  loss: (o: tf.Tensor, t: tf.Tensor) => tf.Scalar,
  weights: number[] = deepSupervisionWeights(outputs.length),
): tf.Scalar {
  if (outputs.length !== targets.length || outputs.length !== weights.length) {
    throw new Error(
      `deep supervision: ${outputs.length} outputs, ${targets.length} targets, ${weights.length} weights`,
    );
  }
  return tf.tidy(() => {
    const terms: tf.Tensor[] = [];
    weights.forEach((w, k) => {
      if (w !== 0) terms.push(tf.mul(loss(outputs[k], targets[k]), w));
    });
    return (terms.length === 1 ? terms[0] : addMany(tf, terms)) as tf.Scalar;
  });
}
