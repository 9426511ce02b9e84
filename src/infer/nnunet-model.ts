// A model trained by nnU-Net itself (read by nnunet-folds.ts): the network is built from the plans'
// `architecture` as nnU-Net's get_network_from_plans does (PlainConvUNet or ResidualEncoderUNet;
// any other class is refused by name), `network_weights` are matched by name and shape, and a case
// is predicted with nnUNetPredictor's numerics (predictNnUNetCase; the CLI and the browser alike).
import {
  archFromPlan,
  networkKind,
  paramSpecs,
  type PlanConfigurationLike,
  type UNetArch,
} from '../model/arch.ts';
import type { NamedWeights } from '../model/named-weights.ts';
import {
  tensorToFloat32,
  type NnUNetCheckpoint,
  type TorchTensor,
} from '../io/torch-checkpoint.ts';
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

/** What predictNnUNetCase needs of a model: read here (NnUNetModel) or stored in a browser. */
export type NnUNetPredictionModel = Pick<
  NnUNetModel,
  'plans' | 'datasetJson' | 'configuration' | 'mirrorAxes'
> & { folds: readonly unknown[] };

/**
 * Predicts one case with an imported nnU-Net model exactly as nnUNetPredictor does: one tile
 * predictor per fold (in model.folds order), fp16 blending buffers, folds averaged on fp16 logits,
 * fp16 resampled logits, softmax in float32; mirroring over the checkpoint's axes (none when the
 * checkpoint names none, as nnU-Net).
 */
export async function predictNnUNetCase(
  images: Volume | Volume[],
  model: NnUNetPredictionModel,
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
