// TrainerCheckpoint ⇄ bytes: nnU-Net's checkpoint content (network_weights, optimizer_state,
// logging, _best_ema, current_epoch, init_args) plus what an exact resume needs here (random
// stream states, the position inside an epoch, the split).
//
// Layout: 8-byte magic "FNNUCKP1", uint32 LE header length, UTF-8 JSON header, zero padding to a
// multiple of 4, then the payload: the weights and the momentum buffers encoded fp32 by
// src/model/weights-codec.ts (each tensor CRC-checked). Floats never go through JSON except scalars
// (epoch-level log values), which JSON round-trips exactly; NaN is written as null.
import { decodeWeights, encodeWeights, type TensorEntry } from '../model/weights-codec.ts';
import type { NamedWeights } from '../model/named-weights.ts';
import type { Plans } from '../plan/types.ts';

export const CHECKPOINT_MAGIC = 'FNNUCKP1';

/** nnU-Net's logger keys (per epoch) plus our timing and memory columns. */
export interface TrainingLog {
  train_losses: number[];
  val_losses: number[];
  mean_fg_dice: number[];
  ema_fg_dice: number[];
  dice_per_class_or_region: number[][];
  lrs: number[];
  epoch_start_timestamps: number[];
  epoch_end_timestamps: number[];
  /** Mean wall time of a training iteration (sampling, augmentation, forward, backward, step). */
  ms_per_iter: number[];
  /** Largest tf.memory().numBytes seen during a training iteration of the epoch. */
  peak_bytes: number[];
}

export function emptyLog(): TrainingLog {
  return {
    train_losses: [],
    val_losses: [],
    mean_fg_dice: [],
    ema_fg_dice: [],
    dice_per_class_or_region: [],
    lrs: [],
    epoch_start_timestamps: [],
    epoch_end_timestamps: [],
    ms_per_iter: [],
    peak_bytes: [],
  };
}

/** The options a run was started with, fully resolved (the checkpoint's init_args). */
export interface ResolvedTrainerOptions {
  epochs: number;
  itersPerEpoch: number;
  valIters: number;
  seed: number;
  deepSupervision: boolean;
  checkpointing: { encoder: boolean[]; decoder: boolean[] };
  augmentation: boolean;
  split: 'all' | 'random80' | { train: string[]; val: string[] };
  initialLR: number;
  weightDecay: number;
  momentum: number;
  clipNorm: number;
  oversampleForegroundPercent: number;
  /** Absent in checkpoints written before mixed precision existed: fp32. */
  precision?: 'fp32' | 'mixed';
}

export interface TrainerCheckpoint {
  /** Network weights, PyTorch names, shapes and layout. */
  weights: NamedWeights;
  /** SGD momentum buffers by parameter name, PyTorch layout (absent before the first step). */
  momentum: NamedWeights;
  /** Epochs completed. */
  epoch: number;
  /** Training iterations already done in epoch `epoch` (0 at an epoch boundary). */
  iterationInEpoch: number;
  /** Sum of the training losses of those iterations (the epoch's mean needs it). */
  partialLossSum: number;
  bestEma: number | null;
  /** Random stream states (mulberry32) of the training and validation loaders. */
  rng: { train: number; val: number };
  plans: Plans;
  configuration: string;
  datasetJson: { labels: Record<string, number | number[]> };
  options: ResolvedTrainerOptions;
  split: { train: string[]; val: string[] };
  log: TrainingLog;
  /** Dynamic loss scale and its growth count (mixed precision only). */
  gradScaler?: { scale: number; growthTracker: number };
}

interface Header {
  format: 'fednnunet-trainer-checkpoint';
  version: 1;
  meta: Omit<TrainerCheckpoint, 'weights' | 'momentum'>;
  weights: TensorEntry[];
  momentum: TensorEntry[];
  momentumOffset: number;
}

// NaN/±Inf ⇄ null in the JSON scalars (the log has NaN Dice for absent classes).
const nanToNull = (_k: string, v: unknown) =>
  typeof v === 'number' && !Number.isFinite(v) ? null : v;
function nullToNaN(x: unknown): unknown {
  if (x === null) return NaN;
  if (Array.isArray(x)) return x.map(nullToNaN);
  return x;
}

export function encodeCheckpoint(c: TrainerCheckpoint): Uint8Array {
  const w = encodeWeights(c.weights, 'fp32');
  const m = encodeWeights(c.momentum, 'fp32');
  const { weights: _w, momentum: _m, ...rest } = c;
  // A NaN best EMA (first epoch without foreground) differs from "no epoch yet" (null).
  const meta = {
    ...rest,
    bestEma: (c.bestEma !== null && Number.isNaN(c.bestEma) ? 'NaN' : c.bestEma) as number | null,
  };
  const header: Header = {
    format: 'fednnunet-trainer-checkpoint',
    version: 1,
    meta,
    weights: w.entries,
    momentum: m.entries,
    momentumOffset: w.payload.length,
  };
  const json = new TextEncoder().encode(JSON.stringify(header, nanToNull));
  const start = 12 + json.length + ((4 - ((12 + json.length) % 4)) % 4);
  const out = new Uint8Array(start + w.payload.length + m.payload.length);
  out.set(new TextEncoder().encode(CHECKPOINT_MAGIC), 0);
  new DataView(out.buffer).setUint32(8, json.length, true);
  out.set(json, 12);
  out.set(w.payload, start);
  out.set(m.payload, start + w.payload.length);
  return out;
}

export function decodeCheckpoint(bytes: Uint8Array): TrainerCheckpoint {
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== CHECKPOINT_MAGIC) {
    throw new Error('not a fednnunet trainer checkpoint (bad magic)');
  }
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  if (12 + len > bytes.length) throw new Error('trainer checkpoint truncated (header)');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + len))) as Header;
  if (header.format !== 'fednnunet-trainer-checkpoint' || header.version !== 1) {
    throw new Error(`unsupported checkpoint format ${header.format} v${header.version}`);
  }
  const start = 12 + len + ((4 - ((12 + len) % 4)) % 4);
  const payload = bytes.subarray(start);
  const weights = decodeWeights(header.weights, payload.subarray(0, header.momentumOffset));
  const momentum = decodeWeights(header.momentum, payload.subarray(header.momentumOffset));
  const meta = header.meta;
  const log = meta.log;
  for (const k of [
    'train_losses',
    'val_losses',
    'mean_fg_dice',
    'ema_fg_dice',
    'dice_per_class_or_region',
    'lrs',
  ] as const) {
    (log as unknown as Record<string, unknown>)[k] = nullToNaN(log[k]);
  }
  const bestEma = (meta.bestEma as unknown) === 'NaN' ? NaN : meta.bestEma;
  return { ...meta, bestEma, weights, momentum, log };
}
