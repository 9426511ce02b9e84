// Imports a model trained by nnU-Net itself: its results folder (plans.json, dataset.json,
// fold_K/checkpoint_final.pth). The network is built from the plans' `architecture` as nnU-Net's
// get_network_from_plans does (PlainConvUNet or ResidualEncoderUNet; any other class is refused by
// name), and `network_weights` are matched by name and shape.
import {
  archFromPlan,
  networkKind,
  paramSpecs,
  type PlanConfigurationLike,
  type UNetArch,
} from '../model/arch.ts';
import type { NamedWeights } from '../model/named-weights.ts';
import {
  readNnUNetCheckpoint,
  tensorToFloat32,
  type NnUNetCheckpoint,
  type TorchTensor,
} from '../io/torch-checkpoint.ts';
import type { FileSource } from '../io/file-source.ts';
import type { PredictTiles } from './sliding-window.ts';
import { labelInfo, numInputChannels } from '../model/labels.ts';
import {
  predictCase,
  type PredictionResult,
  type PredictorDatasetJson,
  type PredictorPlans,
} from './predictor.ts';
import type { Volume } from '../io/volume.ts';

export class NnUNetImportError extends Error {
  override name = 'NnUNetImportError';
}

export const NNUNET_CHECKPOINT = 'checkpoint_final.pth';

/** The network topology for one configuration of nnU-Net plans; refuses classes not built here. */
export function nnunetArch(
  plans: PredictorPlans,
  configuration: string,
  datasetJson: PredictorDatasetJson,
): UNetArch {
  const cfg = (
    plans as unknown as {
      configurations: Record<string, Partial<PlanConfigurationLike> & { inherits_from?: string }>;
    }
  ).configurations?.[configuration];
  let arch = cfg?.architecture;
  // configurations may inherit (e.g. 3d_cascade_fullres from 3d_fullres)
  let parent = cfg?.inherits_from;
  for (let i = 0; !arch && parent && i < 8; i++) {
    const p = (
      plans as unknown as {
        configurations: Record<string, Partial<PlanConfigurationLike> & { inherits_from?: string }>;
      }
    ).configurations[parent];
    arch = p?.architecture;
    parent = p?.inherits_from;
  }
  if (!arch)
    throw new NnUNetImportError(`plans have no architecture for configuration '${configuration}'`);
  const cls = arch.network_class_name ?? '(none)';
  if (!arch.network_class_name || !networkKind(cls)) {
    throw new NnUNetImportError(
      `network class ${cls} is not supported (PlainConvUNet and ResidualEncoderUNet can be imported)`,
    );
  }
  try {
    return archFromPlan(
      { architecture: arch },
      numInputChannels(datasetJson),
      labelInfo(datasetJson).numSegmentationHeads,
    );
  } catch (e) {
    throw new NnUNetImportError(`${cls}: ${(e as Error).message}`);
  }
}

/** The name of the unique parameter an nnU-Net state_dict alias refers to (null: not an alias). */
function aliasTarget(name: string): string | null {
  // decoder.encoder is the same module object as encoder; all_modules lists conv, norm, nonlin
  // (no dropout: archFromPlan refuses it) of each ConvDropoutNormReLU (convs.N of a stack, or a
  // residual block's conv1, conv2 and skip projection).
  let t = name.startsWith('decoder.encoder.') ? name.slice('decoder.'.length) : name;
  const m = /^(.*)\.all_modules\.([01])\.(weight|bias)$/.exec(t);
  if (m) t = `${m[1]}.${m[2] === '0' ? 'conv' : 'norm'}.${m[3]}`;
  return t === name ? null : t;
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Matches a checkpoint's network_weights to the architecture: every parameter present with its
 * shape, every extra key an alias of one (same shape and values), nothing else. Returns the unique
 * weights in PyTorch layout, as PlainConvUNet.loadNamedWeights takes them.
 */
export function matchNetworkWeights(
  arch: UNetArch,
  networkWeights: Map<string, TorchTensor>,
): NamedWeights {
  const specs = paramSpecs(arch);
  const out: NamedWeights = new Map();
  for (const s of specs) {
    const t = networkWeights.get(s.name);
    if (!t)
      throw new NnUNetImportError(`checkpoint lacks parameter '${s.name}' (shape [${s.shape}])`);
    if (!sameShape(t.shape, s.shape))
      throw new NnUNetImportError(
        `parameter '${s.name}' has shape [${t.shape}], the plans' network needs [${s.shape}]`,
      );
    out.set(s.name, { shape: [...s.shape], data: tensorToFloat32(t) });
  }
  for (const [name, t] of networkWeights) {
    if (out.has(name)) continue;
    const target = aliasTarget(name);
    const u = target ? out.get(target) : undefined;
    if (!u)
      throw new NnUNetImportError(
        `checkpoint has parameter '${name}' that the plans' network does not have`,
      );
    const d = tensorToFloat32(t);
    if (!sameShape(t.shape, u.shape) || d.some((v, i) => !Object.is(v, u.data[i]))) {
      throw new NnUNetImportError(`'${name}' should alias '${target}' but differs from it`);
    }
  }
  return out;
}

export interface NnUNetFold {
  fold: number;
  checkpoint: NnUNetCheckpoint;
  weights: NamedWeights;
}

export interface NnUNetModel {
  plans: PredictorPlans;
  datasetJson: PredictorDatasetJson & Record<string, unknown>;
  configuration: string;
  arch: UNetArch;
  folds: NnUNetFold[];
  /** Mirroring axes the trainer allowed (checkpoint's inference_allowed_mirroring_axes). */
  mirrorAxes: number[] | null;
}

/** True if the folder looks like an nnU-Net results folder (plans.json, dataset.json, fold_K/). */
export async function isNnUNetModelDir(src: FileSource): Promise<boolean> {
  let files: string[];
  try {
    files = await src.list();
  } catch {
    return false; // not a readable folder: the caller's own reader reports it
  }
  return (
    files.includes('plans.json') &&
    files.includes('dataset.json') &&
    files.some((f) => /^fold_\d+\/checkpoint_final\.pth$/.test(f))
  );
}

/** Reads an nnU-Net results folder; `folds` defaults to every fold_K with a checkpoint_final.pth. */
export async function readNnUNetModel(
  src: FileSource,
  folds?: readonly number[],
): Promise<NnUNetModel> {
  const files = await src.list();
  const json = async (name: string) => {
    if (!files.includes(name))
      throw new NnUNetImportError(`the nnU-Net model folder has no ${name}`);
    return JSON.parse(new TextDecoder().decode(await src.read(name)));
  };
  const plans = (await json('plans.json')) as PredictorPlans;
  const datasetJson = await json('dataset.json');
  const available = files
    .map((f) => /^fold_(\d+)\/checkpoint_final\.pth$/.exec(f))
    .filter((m) => m)
    .map((m) => Number(m![1]))
    .sort((a, b) => a - b);
  const use = folds ? [...folds] : available;
  if (use.length === 0)
    throw new NnUNetImportError('the nnU-Net model folder has no fold_K/checkpoint_final.pth');
  let configuration: string | null = null;
  let arch: UNetArch | null = null;
  let mirrorAxes: number[] | null = null;
  const out: NnUNetFold[] = [];
  for (const fold of use) {
    const name = `fold_${fold}/${NNUNET_CHECKPOINT}`;
    if (!files.includes(name))
      throw new NnUNetImportError(
        `fold ${fold} has no ${NNUNET_CHECKPOINT} (available: ${available.join(', ') || 'none'})`,
      );
    const checkpoint = readNnUNetCheckpoint(await src.read(name));
    const cfg = checkpoint.initArgs.get('configuration');
    if (typeof cfg !== 'string')
      throw new NnUNetImportError(`${name}: init_args has no configuration`);
    if (configuration !== null && cfg !== configuration)
      throw new NnUNetImportError(
        `folds were trained with different configurations (${configuration}, ${cfg})`,
      );
    configuration = cfg;
    arch ??= nnunetArch(plans, cfg, datasetJson);
    mirrorAxes ??= checkpoint.inferenceAllowedMirroringAxes;
    let weights: NamedWeights;
    try {
      weights = matchNetworkWeights(arch, checkpoint.networkWeights);
    } catch (e) {
      throw new NnUNetImportError(`${name}: ${(e as Error).message}`);
    }
    out.push({ fold, checkpoint, weights });
  }
  return { plans, datasetJson, configuration: configuration!, arch: arch!, folds: out, mirrorAxes };
}

/**
 * Per-tile fold average. Not nnU-Net's numerics: nnU-Net blends each fold's whole sliding window in
 * fp16 and then averages the folds' fp16 logits (predictNnUNetCase does that, through predictCase
 * with one tile predictor per fold); averaging tiles in float32 differs by fp16 rounding.
 */
export function ensembleTilePredictor(members: readonly PredictTiles[]): PredictTiles {
  if (members.length === 0) throw new NnUNetImportError('an ensemble needs at least one fold');
  if (members.length === 1) return members[0];
  return async (batch, n) => {
    const sum = Float32Array.from(await members[0](batch, n));
    for (let m = 1; m < members.length; m++) {
      const y = await members[m](batch, n);
      if (y.length !== sum.length) throw new NnUNetImportError('fold predictions differ in size');
      for (let i = 0; i < sum.length; i++) sum[i] += y[i];
    }
    for (let i = 0; i < sum.length; i++) sum[i] /= members.length;
    return sum;
  };
}

/** What a fold's network must offer for prediction (PlainConvUNet, ResidualEncoderUNet, an ORT session). */
export interface TileNetwork {
  /** (n, C, ...spatial) → (n, K, ...spatial) logits, channels-first (PlainConvUNet.predictLogits). */
  predictLogits(data: Float32Array, n: number, spatial: readonly number[]): Promise<Float32Array>;
  dispose(): void;
}

export interface NnUNetPredictOptions {
  /** Mirroring TTA over the checkpoint's inference_allowed_mirroring_axes (nnU-Net's default on). */
  tta?: boolean;
  stepSize?: number;
  tileBatch?: number;
  returnProbabilities?: boolean;
  returnLogits?: boolean;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/**
 * Predicts one case with an imported nnU-Net model exactly as nnUNetPredictor does: one tile
 * predictor per fold (in model.folds order), fp16 blending buffers, folds averaged on fp16 logits,
 * fp16 resampled logits, softmax in float32; mirroring over the checkpoint's axes (none when the
 * checkpoint names none, as nnU-Net).
 */
export async function predictNnUNetCase(
  images: Volume | Volume[],
  model: NnUNetModel,
  foldPredictors: readonly PredictTiles[],
  opts: NnUNetPredictOptions = {},
): Promise<PredictionResult> {
  if (foldPredictors.length !== model.folds.length)
    throw new NnUNetImportError(
      `${foldPredictors.length} tile predictors for ${model.folds.length} folds`,
    );
  return predictCase(
    images,
    { plans: model.plans, configuration: model.configuration, datasetJson: model.datasetJson },
    foldPredictors,
    {
      tta: opts.tta ?? false,
      mirrorAxes: model.mirrorAxes ?? [],
      stepSize: opts.stepSize,
      tileBatch: opts.tileBatch,
      fp16Logits: true,
      returnProbabilities: opts.returnProbabilities,
      returnLogits: opts.returnLogits,
      onProgress: opts.onProgress,
      signal: opts.signal,
    },
  );
}
