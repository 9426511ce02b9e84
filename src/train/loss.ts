// nnU-Net's training loss (spec §7.3–7.4), non-region case: CE + soft Dice
// (MemoryEfficientSoftDiceLoss: softmax, do_bg false, smooth 1e-5, returned negative), with
// deep-supervision weighting. Computed on [B, N, C] / [B·N, C] views only, so no 4-/5-D
// broadcast or `where` reaches the webgpu backend (see src/model/ops5d.ts).
import * as tf from '@tensorflow/tfjs';
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
 * Labels [B, ...spatial] or [B, ...spatial, 1] (int) → one-hot [B, N, C] (float32) and the
 * validity mask [B, N, 1] (null without an ignore label). Ignored voxels get no class (nnU-Net
 * makes them class 0 for the Dice target): every use of the one-hot is masked, so it is the same.
 * Float one-hots only, no bool → float cast: tfjs-backend-webgpu 4.22 casts bool (and int32) to
 * float32 by relabelling the buffer, so a `notEqual` mask read as f32 is garbage there.
 */
function prepareTarget(target: tf.Tensor, b: number, n: number, c: number, ignore: number | null) {
  const flat = tf.cast(tf.reshape(target, [b * n]), 'int32');
  if (ignore === null) {
    return { onehot: tf.reshape(tf.oneHot(flat, c, 1, 0, 'float32'), [b, n, c]), mask: null };
  }
  if (!(Number.isInteger(ignore) && ignore >= 0)) throw new Error(`ignore label ${ignore}`);
  const depth = Math.max(c, ignore + 1);
  const all = tf.oneHot(flat, depth, 1, 0, 'float32'); // [B·N, depth]
  const onehot = tf.reshape(depth === c ? all : tf.slice(all, [0, 0], [b * n, c]), [b, n, c]);
  const ignored = tf.slice(all, [0, ignore], [b * n, 1]);
  return { onehot, mask: tf.reshape(tf.sub(1, ignored), [b, n, 1]) };
}

/** Soft Dice's sums I = Σ p·y, S_p = Σ p, S_y = Σ y per [B, C'] (or [C'] with batch Dice). */
function diceSums(
  probs: tf.Tensor3D,
  onehot: tf.Tensor3D,
  mask: tf.Tensor | null,
  opts: { batchDice: boolean; doBg?: boolean },
): { inter: tf.Tensor; sumP: tf.Tensor; sumY: tf.Tensor } {
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
  return { inter, sumP, sumY };
}

/** −mean of (2I + smooth) / max(S_y + S_p + smooth, 1e-8). */
function diceFromSums(inter: tf.Tensor, sumP: tf.Tensor, sumY: tf.Tensor, smooth: number) {
  const dc = tf.div(
    tf.add(tf.mul(inter, 2), smooth),
    tf.maximum(tf.add(tf.add(sumY, sumP), smooth), 1e-8),
  );
  return tf.neg(tf.mean(dc)) as tf.Scalar;
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
  return tf.tidy(() => {
    const { inter, sumP, sumY } = diceSums(probs, onehot, mask, opts);
    return diceFromSums(inter, sumP, sumY, opts.smooth ?? 1e-5);
  });
}

/** The loss' value and what its analytic gradient needs, from [B·N, C] logits. */
function dcAndCeParts(
  flatLogits: tf.Tensor2D,
  flatTarget: tf.Tensor,
  b: number,
  n: number,
  opts: DcCeOptions,
) {
  const c = flatLogits.shape[1];
  const ignore = opts.ignoreLabel ?? null;
  const { onehot, mask } = prepareTarget(flatTarget, b, n, c, ignore);
  const probs = tf.reshape(tf.softmax(flatLogits, -1), [b, n, c]) as tf.Tensor3D;
  const sums = diceSums(probs, onehot as tf.Tensor3D, mask, opts);
  const dice = diceFromSums(sums.inter, sums.sumP, sums.sumY, opts.smooth ?? 1e-5);
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
  const loss = tf.add(tf.mul(ce, opts.weightCe ?? 1), tf.mul(dice, opts.weightDice ?? 1));
  return { loss: loss as tf.Scalar, sums, nValid };
}

function checkedBNC(logits: tf.Tensor, target: tf.Tensor): [number, number, number] {
  const c = logits.shape[logits.rank - 1];
  const b = logits.shape[0];
  const n = logits.size / (b * c);
  if (target.size !== b * n) throw new Error(`target ${target.shape} vs logits ${logits.shape}`);
  return [b, n, c];
}

/**
 * The same loss by tfjs autodiff of plain ops (the reference dcAndCeLoss is tested against; it
 * keeps every intermediate and its gradient until the whole backward ends).
 */
export function dcAndCeLossAutodiff(
  logits: tf.Tensor,
  target: tf.Tensor,
  opts: DcCeOptions,
): tf.Scalar {
  return tf.tidy(() => {
    const [b, n, c] = checkedBNC(logits, target);
    return dcAndCeParts(tf.reshape(logits, [b * n, c]), target, b, n, opts).loss;
  });
}

/**
 * CE + Dice for channels-last logits [B, ...spatial, C] and integer labels [B, ...spatial(, 1)].
 * CE is the mean over valid voxels and is skipped when none is valid (nnU-Net's DC_and_CE_loss).
 *
 * One custom-gradient op: the forward runs the ops of dcAndCeLossAutodiff (the same value) and
 * saves only the logits, the labels and the Dice sums; the backward computes the analytic
 * gradient and frees what it saved and the gradient it received. With plain ops, tfjs 4.22 keeps
 * the loss graph's logits-sized intermediates (softmax, log-softmax, one-hot, products) and all
 * their gradients until the whole backward ends — at full resolution the largest thing alive at
 * the start of the backward in mixed precision.
 * With p = softmax(x), t the one-hot target (ignored voxels: class 0), m the validity mask:
 *   ∂CE/∂x = m·(p − t)/n_valid;
 *   Dice: dc = (2I + s)/D, D = max(S_y + S_p + s, 1e-8), L = −mean(dc) over K terms, so
 *   ∂L/∂p_c = m·(−2/(K·D)·t_c + (2I + s)/(K·D²)) on the foreground channels (all with do_bg), 0 on
 *   channel 0 otherwise, and through the softmax ∂L/∂x = p ⊙ (g − Σ_c g·p).
 */
export function dcAndCeLoss(logits: tf.Tensor, target: tf.Tensor, opts: DcCeOptions): tf.Scalar {
  const [b, n, c] = checkedBNC(logits, target);
  const xShape = [...logits.shape];
  const smooth = opts.smooth ?? 1e-5;
  const doBg = opts.doBg ?? false;
  const wCe = opts.weightCe ?? 1;
  const wDice = opts.weightDice ?? 1;
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const x = tf.reshape(args[0] as tf.Tensor, [b * n, c]) as tf.Tensor2D;
    const flat = tf.cast(tf.reshape(target, [b * n]), 'int32');
    const { loss, sums, nValid } = dcAndCeParts(x, flat, b, n, opts);
    save([x, flat, sums.inter, sums.sumP, sums.sumY, nValid]);
    return {
      value: loss,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sFlat, inter, sumP, sumY, nv] = saved;
        // Logits-sized f32 temporaries are freed as soon as the next exists: at most about five
        // at a time (p, t, the Dice gradient, and an op's input and output).
        const [onehot, mask] = tf.tidy(() => {
          const t = prepareTarget(sFlat, b, n, c, opts.ignoreLabel ?? null);
          return t.mask ? [t.onehot, t.mask] : [t.onehot];
        }) as [tf.Tensor, tf.Tensor | undefined];
        const p = tf.tidy(() => tf.reshape(tf.softmax(sx, -1), [b, n, c]));
        tf.dispose([sx, sFlat]);
        // ∂L_dice/∂p = wDice·(A·t + B)·m per [B or 1, 1, C]: A = −2/(K·D), B = (2I + s)/(K·D²)
        const [coefA, coefB] = tf.tidy(() => {
          const cf = doBg ? c : c - 1;
          const k = inter.size; // the number of Dice terms averaged
          const sumAll = tf.add(tf.add(sumY, sumP), smooth);
          const pass = tf.cast(tf.greaterEqual(sumAll, 1e-8), 'float32'); // tf.maximum's gradient
          const den = tf.maximum(sumAll, 1e-8);
          const shape = inter.rank === 2 ? [b, 1, cf] : [1, 1, cf];
          const coef = (v: tf.Tensor) => {
            const r = tf.reshape(tf.mul(v, pass), shape);
            return doBg ? r : tf.concat([tf.zeros([shape[0], 1, 1]), r], 2);
          };
          return [
            coef(tf.div(-2 * wDice, tf.mul(den, k))),
            coef(
              tf.div(tf.mul(tf.add(tf.mul(inter, 2), smooth), wDice), tf.mul(tf.square(den), k)),
            ),
          ];
        });
        tf.dispose([inter, sumP, sumY]);
        const g = tf.tidy(() => {
          const gm = tf.add(tf.mul(onehot, coefA), coefB);
          return mask ? tf.mul(gm, mask) : gm;
        });
        tf.dispose([coefA, coefB]);
        // through the softmax: p ⊙ (g − Σ_c g·p)
        const dDice = tf.tidy(() => tf.mul(p, tf.sub(g, tf.sum(tf.mul(g, p), -1, true))));
        g.dispose();
        const dCe = tf.tidy(() => {
          const d = tf.mul(tf.sub(p, onehot), tf.div(wCe, nv));
          return mask ? tf.mul(d, mask) : d;
        });
        tf.dispose([p, onehot, nv]);
        if (mask) mask.dispose();
        const dx = tf.tidy(() => tf.reshape(tf.mul(tf.add(dCe, dDice), dy), xShape));
        tf.dispose([dCe, dDice]);
        dy.dispose();
        return [dx];
      },
    };
  });
  return op(logits) as tf.Scalar;
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
