// nnU-Net's predictor glue (nnUNetPredictor.predict_single_npy_array path, spec §8): preprocess a
// raw case with the model's plans, sliding-window logits with a pluggable tile predictor (tfjs
// forward or an onnxruntime session), optional mirroring TTA, then export: resample the logits
// with the real resampler (order 1, order_z 0), argmax (or regions), uncrop, transpose back, and a
// label Volume in the input's geometry (src/io/nifti-write.ts writes it with the input's header).
import type { Volume } from '../io/volume.ts';
import type { UNetArch } from '../model/arch.ts';
import { labelInfo, numInputChannels, type LabelsDatasetJson } from '../model/labels.ts';
import type { PlainConvUNet } from '../model/unet.ts';
import {
  resolveConfiguration,
  runCase,
  type PreprocessConfiguration,
  type PreprocessPlans,
} from '../preprocess/preprocess.ts';
import type { Shape3 } from '../preprocess/crop.ts';
import { resampleData } from '../preprocess/resample.ts';
import { configureAugmentationGeometry } from '../train/rotation-config.ts';
import { logitsToSegmentation, type ResampleLogits } from './export.ts';
import { slidingWindowPredict, type PredictTiles, type Tensor4 } from './sliding-window.ts';
import { fromHalfBits, toHalfBits } from '../util/float16.ts';

/** plans.json fields the predictor reads (a full nnU-Net plans.json satisfies it). */
export interface PredictorPlans extends PreprocessPlans {
  transpose_backward: number[];
  configurations: Record<string, PredictorConfiguration>;
}

export interface PredictorConfiguration extends PreprocessConfiguration {
  patch_size?: number[];
  resampling_fn_probabilities_kwargs?: {
    order?: number;
    order_z?: number;
    force_separate_z?: boolean | null;
  };
  architecture?: unknown;
}

/** dataset.json fields the predictor reads. */
export type PredictorDatasetJson = LabelsDatasetJson;

/**
 * nnU-Net's logit resampling (resample_data_or_seg_to_shape with the configuration's
 * resampling_fn_probabilities_kwargs; default order 1, order_z 0, separate-z rule).
 */
export function nnunetResampleLogits(
  kwargs: PredictorConfiguration['resampling_fn_probabilities_kwargs'] = {},
): ResampleLogits {
  const order = (kwargs.order ?? 1) as 0 | 1 | 3;
  const orderZ = (kwargs.order_z ?? 0) as 0 | 1;
  return (logits, fromShape, toShape, fromSpacing, toSpacing) =>
    resampleData(
      logits,
      fromShape[0],
      fromShape.slice(1) as Shape3,
      [...toShape] as Shape3,
      fromSpacing,
      toSpacing,
      {
        order,
        orderZ,
        forceSeparateZ: kwargs.force_separate_z ?? null,
      },
    );
}

/**
 * Tiles a tfjs forward can take at once within `budgetMB`: tfjs keeps every intermediate of a
 * tidy until it ends, so the estimate sums all activations (encoder: conv/norm/act per block;
 * decoder: upsampled + concat (3F) and conv/norm/act per block) per stage, float32. At least 1.
 */
export function tileBatchForBudget(
  arch: UNetArch,
  patch: readonly number[],
  budgetMB = 512,
): number {
  let vox = patch.reduce((a, b) => a * b, 1);
  let bytes = 4 * vox * (arch.inputChannels + 2 * arch.numClasses);
  const n = arch.nStages;
  for (let s = 0; s < n; s++) {
    vox /= arch.strides[s].reduce((a, b) => a * b, 1);
    const decoder = s < n - 1 ? 3 + 3 * arch.nConvPerStageDecoder[n - 2 - s] : 0;
    bytes += 4 * vox * arch.features[s] * (3 * arch.nConvPerStage[s] + decoder);
  }
  return Math.max(1, Math.floor((budgetMB * 2 ** 20) / bytes));
}

/** Tile predictor over a tfjs PlainConvUNet (its channels-first forward, PlainConvUNet.predictLogits). */
export function tfjsTilePredictor(model: PlainConvUNet, patch: readonly number[]): PredictTiles {
  return (batch, n) => model.predictLogits(batch, n, patch);
}

export interface PredictOptions {
  /** Mirroring test-time augmentation over `mirrorAxes` (default axes: the configuration's, §7.6). */
  tta?: boolean;
  mirrorAxes?: readonly number[];
  /** Sliding-window step as a fraction of the patch (default 0.5). */
  stepSize?: number;
  useGaussian?: boolean;
  /** Tiles per predictTiles call (default 1; see tileBatchForBudget). */
  tileBatch?: number;
  /** Keep the blended logits (preprocessed frame) in the result. */
  returnLogits?: boolean;
  /**
   * nnU-Net's own numerics (imported nnU-Net models): tile logits blended into fp16 buffers, the
   * folds' logits summed and divided in fp16, the resampled logits stored as fp16 (nnU-Net's
   * resampler keeps the input dtype), softmax in float32. Default false (fp32 throughout).
   */
  fp16Logits?: boolean;
  /** Also return the softmax probabilities in the input's grid, as nnU-Net's save_probabilities. */
  returnProbabilities?: boolean;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface PredictionContext {
  plans: PredictorPlans;
  configuration: string;
  datasetJson: PredictorDatasetJson;
}

export interface PredictionResult {
  /** uint8 (uint16 if a label ≥ 255) label map with the input's dims, spacing, affine and header. */
  segmentation: Volume;
  /** (K, Z, Y, X) logits at the configuration spacing (only with returnLogits). */
  logits?: Tensor4;
  /** (K, z, y, x) float32 probabilities in the input's numpy order (only with returnProbabilities). */
  probabilities?: Tensor4;
  /** Shape (C, Z, Y, X) of the preprocessed image. */
  preprocessedShape: [number, number, number, number];
  timingsMs: { preprocess: number; predict: number; export: number };
}

/** The resolved configuration's patch size and mirror axes. */
export function configurationInfo(
  plans: PredictorPlans,
  configuration: string,
): {
  config: PredictorConfiguration & { spacing: number[] };
  patch: number[];
  mirrorAxes: number[];
} {
  const config = resolveConfiguration(plans, configuration) as PredictorConfiguration & {
    spacing: number[];
  };
  const patch = config.patch_size;
  if (!patch || (patch.length !== 2 && patch.length !== 3))
    throw new Error(`configuration '${configuration}' has no 2-D/3-D patch_size`);
  return { config, patch: [...patch], mirrorAxes: configureAugmentationGeometry(patch).mirrorAxes };
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

const half = (v: number): number => fromHalfBits(toHalfBits(v));

/**
 * Predicts one case. `images`: one Volume per input channel (or one multi-channel Volume), all on
 * the same grid; the first carries the geometry written to the output. `predictTiles`: one tile
 * predictor, or one per fold: each fold's sliding-window logits are computed in turn and averaged
 * (nnUNetPredictor.predict_logits_from_preprocessed_data: sum, then divide by the fold count).
 */
export async function predictCase(
  images: Volume | Volume[],
  ctx: PredictionContext,
  predictTiles: PredictTiles | readonly PredictTiles[],
  opts: PredictOptions = {},
): Promise<PredictionResult> {
  const members = typeof predictTiles === 'function' ? [predictTiles] : [...predictTiles];
  if (members.length === 0) throw new Error('predictCase: no tile predictor (no fold)');
  const fp16 = opts.fp16Logits ?? false;
  const list = Array.isArray(images) ? images : [images];
  if (list.length === 0) throw new Error('predictCase: no image');
  const first = list[0];
  const image = list.length === 1 ? first : stackForPrediction(list);
  const labels = labelInfo(ctx.datasetJson);
  const nIn = numInputChannels(ctx.datasetJson);
  if (image.channels !== nIn)
    throw new Error(`the model expects ${nIn} input channel(s), got ${image.channels}`);
  const { config, patch, mirrorAxes } = configurationInfo(ctx.plans, ctx.configuration);

  let t0 = now();
  const pre = runCase(image, null, ctx.plans, ctx.configuration, ctx.datasetJson, {
    classLocations: false,
  });
  const tPre = now() - t0;

  t0 = now();
  let logits: Tensor4 | null = null;
  for (let f = 0; f < members.length; f++) {
    const one = await slidingWindowPredict(
      { data: pre.data, shape: pre.shape },
      patch,
      labels.numSegmentationHeads,
      members[f],
      {
        tileBatch: opts.tileBatch ?? 1,
        stepSize: opts.stepSize,
        useGaussian: opts.useGaussian,
        mirrorAxes: opts.tta ? (opts.mirrorAxes ?? mirrorAxes) : [],
        fp16Accumulation: fp16,
        // progress over all folds: fold f's tiles come after the earlier folds'
        onProgress: opts.onProgress && ((d, t) => opts.onProgress!(f * t + d, members.length * t)),
        signal: opts.signal,
      },
    );
    if (!logits) {
      logits = one;
      continue;
    }
    const a = logits.data;
    const b = one.data;
    // fp16 += fp16 in torch rounds the float32 sum to fp16 (half() goes through float32 too)
    if (fp16) for (let i = 0; i < a.length; i++) a[i] = half(a[i] + b[i]);
    else for (let i = 0; i < a.length; i++) a[i] += b[i];
  }
  if (members.length > 1) {
    const a = logits!.data;
    const n = members.length;
    if (fp16) for (let i = 0; i < a.length; i++) a[i] = half(a[i] / n);
    else for (let i = 0; i < a.length; i++) a[i] /= n;
  }
  logits = logits!;
  const tPred = now() - t0;

  t0 = now();
  const seg = logitsToSegmentation(logits.data, logits.shape, pre.properties, {
    configSpacing: config.spacing,
    transposeForward: ctx.plans.transpose_forward,
    transposeBackward: ctx.plans.transpose_backward,
    resample: nnunetResampleLogits(config.resampling_fn_probabilities_kwargs),
    regionsClassOrder: labels.regionsClassOrder,
    fp16Resampled: fp16,
    returnProbabilities: opts.returnProbabilities,
  });
  const [nz, ny, nx] = seg.shape;
  if (nx !== first.dims[0] || ny !== first.dims[1] || nz !== first.dims[2]) {
    throw new Error(`prediction shape ${[nx, ny, nz]} differs from the input's ${first.dims}`);
  }
  // (Z, Y, X) C-order is NIfTI's x-fastest voxel order: the buffer is the Volume's as is.
  const segmentation: Volume = {
    data: seg.data,
    dims: [...first.dims],
    channels: 1,
    spacing: [...first.spacing],
    affine: [...first.affine],
    datatype: seg.data instanceof Uint8Array ? 'uint8' : 'uint16',
    source: first.source,
  };
  const tExp = now() - t0;
  return {
    segmentation,
    logits: opts.returnLogits ? logits : undefined,
    probabilities: seg.probabilities,
    preprocessedShape: pre.shape,
    timingsMs: { preprocess: tPre, predict: tPred, export: tExp },
  };
}

function stackForPrediction(images: Volume[]): Volume {
  const first = images[0];
  const n = first.dims[0] * first.dims[1] * first.dims[2];
  for (const v of images) {
    if (v.channels !== 1 || v.dims.some((d, i) => d !== first.dims[i])) {
      throw new Error(
        `every input channel must be one 3-D image of dims ${first.dims} (got ${v.dims}×${v.channels})`,
      );
    }
  }
  const data = new Float32Array(n * images.length);
  images.forEach((v, c) => data.set(v.data, c * n));
  return { ...first, data, channels: images.length, datatype: 'float32' };
}
