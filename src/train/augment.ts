// nnU-Net's training augmentation (batchgeneratorsv2 v0.2.2 as nnUNetTrainer.get_training_transforms
// composes it; spec §7.7), per sample and in upstream order, plus the validation path.
import {
  randomBrightness,
  randomContrast,
  randomGamma,
  randomGaussianBlur,
  randomGaussianNoise,
  randomLowResolution,
} from './aug-intensity.ts';
import { sampleSpatialParams, spatialTransform } from './aug-spatial.ts';
import type { PatchBatch } from './sampler.ts';
import { type Rng, type SegArray, as3d, newSegLike } from './util.ts';
import { prod } from '../util/numeric.ts';

export interface AugmentOptions {
  /** Final (network) patch size, 2 (Y, X) or 3 (Z, Y, X) entries. */
  patchSize: readonly number[];
  /** Rotation range in radians (from configureAugmentationGeometry). */
  rotation: readonly [number, number];
  dummy2d: boolean;
  /** Spatial axes to mirror, each with p 0.5. */
  mirrorAxes: readonly number[];
  /** Plans' use_mask_for_norm per channel; any true → image set to 0 where seg < 0 (all channels). */
  useMaskForNorm?: boolean | readonly boolean[];
  /**
   * Multiplies every transform's apply probability (rotation, scaling, noise, blur, brightness,
   * contrast, low-res, both gammas, per-axis mirror). 1 = nnU-Net; 0 = deterministic centre crop.
   */
  probabilityScale?: number;
}

/** Flips `channels` volumes of spatial shape (Z, Y, X) along `axis` (0..2) in place. */
export function flipAxis(
  arr: Float32Array | SegArray,
  channels: number,
  s3: readonly [number, number, number],
  axis: number,
): void {
  const [Z, Y, X] = s3;
  const n = s3[axis];
  const stride = axis === 2 ? 1 : axis === 1 ? X : Y * X;
  const outer = (channels * Z * Y * X) / (n * stride);
  for (let a = 0; a < outer; a++)
    for (let b = 0; b < stride; b++) {
      const base = a * n * stride + b;
      for (let i = 0, j = n - 1; i < j; i++, j--) {
        const p = base + i * stride,
          q = base + j * stride;
        const t = arr[p];
        arr[p] = arr[q];
        arr[q] = t;
      }
    }
}

/** Mirrors image and seg along the given spatial axes (indices into `spatial`). */
export function applyMirror(
  img: Float32Array,
  channels: number,
  seg: SegArray,
  segChannels: number,
  spatial: readonly number[],
  axes: readonly number[],
): void {
  const s3 = as3d(spatial);
  const lead = 3 - spatial.length;
  for (const ax of axes) {
    flipAxis(img, channels, s3, ax + lead);
    flipAxis(seg, segChannels, s3, ax + lead);
  }
}

/** MaskImageTransform: image voxels where seg < 0 become 0, in every channel. */
export function applyMaskForNorm(img: Float32Array, channels: number, seg: SegArray): void {
  const vol = seg.length;
  for (let i = 0; i < vol; i++)
    if (seg[i] < 0) for (let c = 0; c < channels; c++) img[c * vol + i] = 0;
}

/** RemoveLabelTransform(−1 → 0), in place. */
export function removeNegativeLabel(seg: SegArray): void {
  for (let i = 0; i < seg.length; i++) if (seg[i] === -1) seg[i] = 0;
}

export interface AugmentedSample {
  data: Float32Array;
  seg: SegArray;
}

/**
 * Augments one loaded patch: `img` (C, ...inSpatial), `seg` (1, ...inSpatial); returns arrays of the
 * final patch size. `inSpatial` has as many entries as `opts.patchSize`.
 */
export function augmentSample(
  img: Float32Array,
  channels: number,
  seg: SegArray,
  inSpatial: readonly number[],
  opts: AugmentOptions,
  rng: Rng,
): AugmentedSample {
  const ps = opts.probabilityScale ?? 1;
  const patch = opts.patchSize;
  if (inSpatial.length !== patch.length)
    throw new Error(`input is ${inSpatial.length}D, patch is ${patch.length}D`);

  // 1–3. Spatial. Dummy-2D folds Z into channels: each slice is rotated/scaled in-plane alike.
  let data: Float32Array;
  let out: SegArray;
  if (opts.dummy2d) {
    if (patch.length !== 3) throw new Error('dummy-2D needs a 3D patch');
    const Z = inSpatial[0];
    if (Z !== patch[0]) throw new Error(`dummy-2D: loaded Z ${Z} must equal patch Z ${patch[0]}`);
    const params = sampleSpatialParams(2, opts.rotation, rng, 0.2 * ps, 0.2 * ps);
    const r = spatialTransform(
      img,
      channels * Z,
      seg,
      Z,
      inSpatial.slice(1),
      patch.slice(1),
      params,
    );
    data = r.img;
    out = r.seg;
  } else {
    const params = sampleSpatialParams(patch.length, opts.rotation, rng, 0.2 * ps, 0.2 * ps);
    const r = spatialTransform(img, channels, seg, 1, inSpatial, patch, params);
    data = r.img;
    out = r.seg;
  }

  // 4–10. Intensity, each as a RandomTransform (draw, then parameters).
  if (rng() < 0.1 * ps) randomGaussianNoise(data, channels, rng);
  if (rng() < 0.2 * ps) randomGaussianBlur(data, channels, patch, rng);
  if (rng() < 0.15 * ps) randomBrightness(data, channels, rng);
  if (rng() < 0.15 * ps) randomContrast(data, channels, rng);
  if (rng() < 0.25 * ps) randomLowResolution(data, channels, patch, rng, opts.dummy2d ? [0] : []);
  if (rng() < 0.1 * ps) randomGamma(data, channels, true, rng);
  if (rng() < 0.3 * ps) randomGamma(data, channels, false, rng);

  // 11. Mirror: every allowed axis independently with p 0.5.
  const axes = opts.mirrorAxes.filter(() => rng() < 0.5 * ps);
  if (axes.length) applyMirror(data, channels, out, 1, patch, axes);

  // 12–13.
  const m = opts.useMaskForNorm;
  if (m === true || (Array.isArray(m) && m.some(Boolean))) applyMaskForNorm(data, channels, out);
  removeNegativeLabel(out);
  return { data, seg: out };
}

export interface AugmentedBatch {
  /** (B, C, ...patch) */
  data: Float32Array;
  /** (B, 1, ...patch), labels ≥ 0 */
  seg: SegArray;
  batchSize: number;
  channels: number;
  /** Spatial patch shape: 2 entries for 2D configurations, 3 for 3D. */
  patchShape: number[];
}

/** Drops the singleton slice axis of 2D configurations' (1, Y, X) loader patches. */
function loaderSpatial(batch: PatchBatch, dims: number): number[] {
  const s = batch.patchShape;
  if (dims === 3) return [...s];
  if (s[0] !== 1) throw new Error(`2D patch expected (1, Y, X), got (${s.join(', ')})`);
  return [s[1], s[2]];
}

/** Training batch: augments every sample of a sampled batch (spec §7.7 steps 1–13). */
export function augmentBatch(batch: PatchBatch, opts: AugmentOptions, rng: Rng): AugmentedBatch {
  const inSpatial = loaderSpatial(batch, opts.patchSize.length);
  const vin = prod(inSpatial);
  const vout = prod(opts.patchSize);
  const C = batch.channels;
  const data = new Float32Array(batch.batchSize * C * vout);
  const seg = newSegLike(batch.seg, batch.batchSize * vout);
  for (let b = 0; b < batch.batchSize; b++) {
    const r = augmentSample(
      batch.data.subarray(b * C * vin, (b + 1) * C * vin),
      C,
      batch.seg.subarray(b * vin, (b + 1) * vin),
      inSpatial,
      opts,
      rng,
    );
    data.set(r.data, b * C * vout);
    seg.set(r.seg, b * vout);
  }
  return { data, seg, batchSize: batch.batchSize, channels: C, patchShape: [...opts.patchSize] };
}

/**
 * Validation batch (loaded at the final patch size): only seg −1 → 0 (spec §7.7, last line).
 * Reuses the batch's arrays (the seg is changed in place) to avoid copying.
 */
export function validationBatch(batch: PatchBatch, patchDims: number): AugmentedBatch {
  removeNegativeLabel(batch.seg);
  return {
    data: batch.data,
    seg: batch.seg,
    batchSize: batch.batchSize,
    channels: batch.channels,
    patchShape: loaderSpatial(batch, patchDims),
  };
}
