// Online validation pseudo-Dice (nnUNetTrainer validation_step / on_validation_epoch_end, §7.8):
// hard TP/FP/FN per class summed over an epoch's validation batches, background dropped,
// nanmean over classes, and the logger's EMA (0.9·previous + 0.1·value; first epoch = value)
// that decides checkpoint_best (strictly greater than the best EMA so far).

import { numpySum } from '../util/numpy-sum.ts';
import { prod } from '../util/numeric.ts';

export interface HardCounts {
  /** One entry per foreground class (labels: 1..K-1) or per region. */
  tp: number[];
  fp: number[];
  fn: number[];
}

/**
 * Label training: argmax of logits (B, K, ...spatial) vs the target label map (B, 1, ...spatial).
 * Voxels whose target is `ignoreLabel` are masked out. Ties in argmax go to the lowest index (torch).
 */
export function hardCountsLabels(
  logits: ArrayLike<number>,
  shape: readonly number[],
  target: ArrayLike<number>,
  ignoreLabel?: number | null,
): HardCounts {
  const [B, K, ...spatial] = shape;
  const n = prod(spatial);
  if (logits.length !== B * K * n || target.length !== B * n)
    throw new Error('hardCountsLabels: sizes do not match shape');
  const tp = new Array<number>(K).fill(0),
    fp = new Array<number>(K).fill(0),
    fn = new Array<number>(K).fill(0);
  for (let b = 0; b < B; b++) {
    const base = b * K * n;
    for (let v = 0; v < n; v++) {
      const t = target[b * n + v];
      if (ignoreLabel != null && t === ignoreLabel) continue;
      let arg = 0;
      let best = logits[base + v];
      for (let k = 1; k < K; k++) {
        const x = logits[base + k * n + v];
        if (x > best) {
          best = x;
          arg = k;
        }
      }
      if (arg === t) tp[arg]++;
      else {
        fp[arg]++;
        if (t >= 0 && t < K) fn[t]++;
      }
    }
  }
  return { tp: tp.slice(1), fp: fp.slice(1), fn: fn.slice(1) };
}

/**
 * Region training: sigmoid(logit) > 0.5 per region channel of (B, R, ...spatial) vs the binary
 * region target (B, R, ...) — or (B, R+1, ...) whose last channel is the ignore mask when
 * `hasIgnore`. No channel is dropped: every region is foreground.
 */
export function hardCountsRegions(
  logits: ArrayLike<number>,
  shape: readonly number[],
  target: ArrayLike<number>,
  hasIgnore = false,
): HardCounts {
  const [B, R, ...spatial] = shape;
  const n = prod(spatial);
  const Rt = hasIgnore ? R + 1 : R;
  if (logits.length !== B * R * n || target.length !== B * Rt * n)
    throw new Error('hardCountsRegions: sizes do not match shape');
  const tp = new Array<number>(R).fill(0),
    fp = new Array<number>(R).fill(0),
    fn = new Array<number>(R).fill(0);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < R; r++) {
      for (let v = 0; v < n; v++) {
        if (hasIgnore && target[(b * Rt + R) * n + v]) continue;
        const p = Math.fround(1 / (1 + Math.exp(-logits[(b * R + r) * n + v]))) > 0.5;
        const y = target[(b * Rt + r) * n + v] !== 0;
        if (p && y) tp[r]++;
        else if (p) fp[r]++;
        else if (y) fn[r]++;
      }
    }
  }
  return { tp, fp, fn };
}

/**
 * Label training from an argmax already taken (pred, e.g. tf.argMax on the device, so only B·N
 * ints are read back) vs the target label map, both flat over (B, ...spatial) in the same order.
 * Same counts as hardCountsLabels on the logits.
 */
export function hardCountsFromPrediction(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  numClasses: number,
  ignoreLabel?: number | null,
): HardCounts {
  const K = numClasses;
  if (pred.length !== target.length) throw new Error('hardCountsFromPrediction: sizes differ');
  const tp = new Array<number>(K).fill(0),
    fp = new Array<number>(K).fill(0),
    fn = new Array<number>(K).fill(0);
  for (let v = 0; v < pred.length; v++) {
    const t = target[v];
    if (ignoreLabel != null && t === ignoreLabel) continue;
    const p = pred[v];
    if (p === t) tp[p]++;
    else {
      fp[p]++;
      if (t >= 0 && t < K) fn[t]++;
    }
  }
  return { tp: tp.slice(1), fp: fp.slice(1), fn: fn.slice(1) };
}

export interface EpochResult {
  /** 2tp/(2tp+fp+fn) per foreground class; NaN where the class is absent from target and prediction. */
  dicePerClass: number[];
  meanFgDice: number;
  ema: number;
  /** True when this epoch's EMA is strictly above every earlier one (nnU-Net saves checkpoint_best). */
  isNewBest: boolean;
}

export class PseudoDiceTracker {
  private tp: number[] = [];
  private fp: number[] = [];
  private fn: number[] = [];
  private emaHistory: number[] = [];
  private bestEma: number | null = null;

  /** `state` resumes a run: the EMA history and best EMA of the epochs done so far. */
  constructor(state?: { emas: readonly number[]; best: number | null }) {
    if (state) {
      this.emaHistory = [...state.emas];
      this.bestEma = state.best;
    }
  }

  /** Adds one validation batch's counts. */
  add(c: HardCounts): void {
    if (this.tp.length === 0) {
      this.tp = new Array<number>(c.tp.length).fill(0);
      this.fp = new Array<number>(c.tp.length).fill(0);
      this.fn = new Array<number>(c.tp.length).fill(0);
    }
    if (
      c.tp.length !== this.tp.length ||
      c.fp.length !== this.tp.length ||
      c.fn.length !== this.tp.length
    ) {
      throw new Error('PseudoDiceTracker: class count changed within an epoch');
    }
    for (let i = 0; i < c.tp.length; i++) {
      this.tp[i] += c.tp[i];
      this.fp[i] += c.fp[i];
      this.fn[i] += c.fn[i];
    }
  }

  /** Closes the epoch: per-class Dice, nanmean, EMA, best flag; resets the counts. */
  endEpoch(): EpochResult {
    const dicePerClass = this.tp.map((tp, i) => {
      const den = 2 * tp + this.fp[i] + this.fn[i];
      return den === 0 ? NaN : (2 * tp) / den;
    });
    const valid = dicePerClass.filter((d) => !Number.isNaN(d));
    const meanFgDice =
      valid.length === 0
        ? NaN
        : numpySum(dicePerClass.map((d) => (Number.isNaN(d) ? 0 : d))) / valid.length;
    const prev = this.emaHistory[this.emaHistory.length - 1];
    const ema = this.emaHistory.length > 0 ? prev * 0.9 + 0.1 * meanFgDice : meanFgDice;
    this.emaHistory.push(ema);
    // `best is None or ema > best`: a NaN EMA is stored as best on the first epoch, as nnU-Net.
    const isNewBest = this.bestEma === null || ema > this.bestEma;
    if (isNewBest) this.bestEma = ema;
    this.tp = [];
    this.fp = [];
    this.fn = [];
    return { dicePerClass, meanFgDice, ema, isNewBest };
  }

  get emas(): readonly number[] {
    return this.emaHistory;
  }

  get best(): number | null {
    return this.bestEma;
  }
}
