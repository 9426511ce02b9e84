// Imports a model trained by nnU-Net itself: its results folder (plans.json, dataset.json,
// fold_K/checkpoint_final.pth). The network is built from the plans' `architecture` as nnU-Net's
// get_network_from_plans does (only PlainConvUNet so far; ResidualEncoderUNet is refused until
// its blocks exist here), and `network_weights` are matched by name and shape.
import {
  archFromPlan,
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
import type { PredictorDatasetJson, PredictorPlans } from './predictor.ts';

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
  if (!cls.endsWith('.PlainConvUNet') && cls !== 'PlainConvUNet') {
    throw new NnUNetImportError(
      `network class ${cls} is not supported (only PlainConvUNet can be imported so far)`,
    );
  }
  return archFromPlan(
    { architecture: arch },
    numInputChannels(datasetJson),
    labelInfo(datasetJson).numSegmentationHeads,
  );
}

/** The name of the unique parameter an nnU-Net state_dict alias refers to (null: not an alias). */
function aliasTarget(name: string): string | null {
  // decoder.encoder is the same module object as encoder; all_modules lists conv, norm, nonlin
  // (no dropout: archFromPlan refuses it) of each ConvDropoutNormReLU.
  let t = name.startsWith('decoder.encoder.') ? name.slice('decoder.'.length) : name;
  const m = /^(.*\.convs\.\d+)\.all_modules\.([01])\.(weight|bias)$/.exec(t);
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
 * Fold ensemble as nnU-Net v2 does it: the folds' logits are averaged (nnUNetPredictor sums each
 * fold's sliding-window logits and divides by the fold count; softmax comes after). Sliding-window
 * blending and mirroring are linear in the tile logits, so averaging per tile is the same thing.
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
