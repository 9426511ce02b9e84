// An nnU-Net v2 results folder (src/infer/nnunet-source.ts finds it in a folder or zip) turned into
// this app's model folder (src/model/model-folder.ts), so the Predict tab stores and runs it like
// any other model. One fold at a time: read the .pth (progress by bytes), decode it with the safe
// reader, match its network_weights to the plans' network (src/infer/nnunet-model.ts), encode, and
// hand the files to `onFold` before the next fold is read — memory holds one checkpoint at a time.
//
// Several folds make one ensemble package: the first fold is the folder's weights.json/.bin, the
// others `folds/<K>/weights.json` + `.bin`, and model.json's `nnunet.folds` lists them in order.
// nnU-Net averages the folds' logits; `ensembleEngine` does the same over per-fold engines.
import { encodeModelFolder, MODEL_FILES, type ModelFolder } from '../model/model-folder.ts';
import type { NamedWeights } from '../model/named-weights.ts';
import { readNnUNetCheckpoint } from '../io/torch-checkpoint.ts';
import { errorMessage } from '../util/errors.ts';
import {
  ensembleTilePredictor,
  matchNetworkWeights,
  nnunetArch,
  NnUNetImportError,
} from './nnunet-model.ts';
import type { PredictorDatasetJson, PredictorPlans } from './predictor.ts';
import {
  NNUNET_CHECKPOINTS,
  type FoundNnUNetModel,
  type NnUNetCheckpointName,
  type SizedSource,
} from './nnunet-source.ts';
import type { Engine } from './engine-choice.ts';

export interface NnUNetImportOptions {
  /** Folds to import (default: every fold with the checkpoint). */
  folds?: readonly number[];
  checkpoint?: NnUNetCheckpointName;
  onProgress?: (p: NnUNetImportProgress) => void;
}

export interface NnUNetImportProgress {
  fold: number;
  /** 1-based position of this fold among those imported, and their count. */
  index: number;
  count: number;
  phase: 'reading' | 'decoding' | 'stored';
  /** Bytes of checkpoints read so far (all folds) and in all. */
  bytesDone: number;
  bytesTotal: number;
}

/** model.json's `nnunet` block: where an imported model came from. */
export interface NnUNetOrigin {
  folder: string;
  trainer: string;
  checkpoint: NnUNetCheckpointName;
  /** Every fold in the package, in order; the first is weights.json/.bin. */
  folds: number[];
}

export const ensembleFiles = (fold: number) => ({
  index: `folds/${fold}/weights.json`,
  weights: `folds/${fold}/weights.bin`,
});

/** Paths of a package that belong to it besides MODEL_FILES (the extra folds' weights). */
export const isEnsembleFile = (path: string): boolean =>
  /^folds\/\d+\/weights\.(json|bin)$/.test(path);

/** The folds an import takes: those asked for, else every fold with the checkpoint. */
export function chosenFolds(found: FoundNnUNetModel, opts: NnUNetImportOptions = {}): number[] {
  const checkpoint = opts.checkpoint ?? 'checkpoint_final.pth';
  return opts.folds
    ? [...opts.folds]
    : found.folds
        .filter((f) => f.checkpoints.some((c) => c.name === checkpoint))
        .map((f) => f.fold);
}

/** A name for the stored package: `Dataset/Trainer__Plans__cfg, folds 0 1 (checkpoint_best)`. */
export function nnunetModelName(found: FoundNnUNetModel, opts: NnUNetImportOptions = {}): string {
  const ds = found.dir.split('/').slice(-2, -1)[0];
  const folds = chosenFolds(found, opts);
  const ck = opts.checkpoint && opts.checkpoint !== 'checkpoint_final.pth' ? ' (best)' : '';
  return `${ds ? `${ds}/` : ''}${found.name}, fold${folds.length > 1 ? 's' : ''} ${folds.join(' ')}${ck}`;
}

/**
 * Imports the folds of `found` (in `src`): the first call of `onFold` gets the whole model folder
 * (first fold's weights), the next ones only their `folds/<K>/…` files.
 */
export async function importNnUNetModel(
  src: SizedSource,
  found: FoundNnUNetModel,
  onFold: (files: Record<string, Uint8Array>, fold: number, first: boolean) => Promise<void>,
  opts: NnUNetImportOptions = {},
): Promise<{ configuration: string; folds: number[]; origin: NnUNetOrigin }> {
  const checkpoint = opts.checkpoint ?? 'checkpoint_final.pth';
  if (!NNUNET_CHECKPOINTS.includes(checkpoint))
    throw new NnUNetImportError(
      `checkpoint must be one of ${NNUNET_CHECKPOINTS.join(', ')}, not '${checkpoint}'`,
    );
  const withCk = found.folds.filter((f) => f.checkpoints.some((c) => c.name === checkpoint));
  const folds = chosenFolds(found, opts);
  if (folds.length === 0) throw new NnUNetImportError(`${found.name}: no fold has a ${checkpoint}`);
  if (new Set(folds).size !== folds.length) throw new NnUNetImportError('a fold is listed twice');
  const at = (p: string) => (found.dir ? `${found.dir}/${p}` : p);
  const sizes = folds.map((fold) => {
    const f = withCk.find((x) => x.fold === fold);
    if (!f)
      throw new NnUNetImportError(
        `fold ${fold} has no ${checkpoint} (folds with one: ${withCk.map((x) => x.fold).join(', ') || 'none'})`,
      );
    return f.checkpoints.find((c) => c.name === checkpoint)!.bytes;
  });
  const bytesTotal = sizes.reduce((a, b) => a + b, 0);
  const json = async (name: string) => {
    try {
      return JSON.parse(new TextDecoder().decode(await src.read(at(name))));
    } catch (e) {
      throw new NnUNetImportError(`${name}: ${errorMessage(e)}`);
    }
  };
  const plans = (await json('plans.json')) as PredictorPlans;
  const datasetJson = (await json('dataset.json')) as PredictorDatasetJson &
    ModelFolder['datasetJson'];
  const origin: NnUNetOrigin = {
    folder: found.name,
    trainer: '',
    checkpoint,
    folds,
  };
  let configuration = '';
  let bytesDone = 0;
  let mirror: number[] | null = null;
  for (const [i, fold] of folds.entries()) {
    const name = `fold_${fold}/${checkpoint}`;
    const progress = (phase: NnUNetImportProgress['phase']) =>
      opts.onProgress?.({
        fold,
        index: i + 1,
        count: folds.length,
        phase,
        bytesDone,
        bytesTotal,
      });
    progress('reading');
    const bytes = await src.read(at(name));
    bytesDone += sizes[i];
    progress('decoding');
    let weights: NamedWeights;
    try {
      const ck = readNnUNetCheckpoint(bytes);
      const cfg = ck.initArgs.get('configuration');
      if (typeof cfg !== 'string') throw new NnUNetImportError('init_args has no configuration');
      if (configuration && cfg !== configuration)
        throw new NnUNetImportError(
          `folds were trained with different configurations (${configuration}, ${cfg})`,
        );
      configuration = cfg;
      origin.trainer ||= ck.trainerName;
      if (i === 0) mirror = ck.inferenceAllowedMirroringAxes;
      weights = matchNetworkWeights(nnunetArch(plans, cfg, datasetJson), ck.networkWeights);
    } catch (e) {
      throw new NnUNetImportError(`${name}: ${errorMessage(e)}`);
    }
    const files = encodeModelFolder({
      plans,
      datasetJson,
      configuration,
      weights,
      provenance: {
        trained_by: `nnU-Net v2 (${origin.trainer || 'unknown trainer'}), imported`,
        method: 'local',
      },
      meta: {
        ...(mirror ? { inference_allowed_mirroring_axes: mirror } : {}),
        nnunet: origin,
      },
    });
    if (i === 0) await onFold(files, fold, true);
    else {
      const e = ensembleFiles(fold);
      await onFold(
        { [e.index]: files[MODEL_FILES.index], [e.weights]: files[MODEL_FILES.weights] },
        fold,
        false,
      );
    }
    progress('stored');
  }
  return { configuration, folds, origin };
}

/** The folds of a package after the first (from model.json's `nnunet.folds`). */
export function extraFolds(meta: Record<string, unknown>): number[] {
  const n = meta.nnunet as Partial<NnUNetOrigin> | undefined;
  const f = n?.folds;
  if (!Array.isArray(f) || f.length < 2) return [];
  if (!f.every((x) => Number.isInteger(x) && x >= 0))
    throw new Error('model.json: nnunet.folds is not a list of fold numbers');
  return f.slice(1);
}

/** A package's files with fold K's weights in place of the first fold's (to decode that member). */
export function foldFiles(
  files: Record<string, Uint8Array>,
  fold: number,
): Record<string, Uint8Array> {
  const e = ensembleFiles(fold);
  const index = files[e.index];
  const weights = files[e.weights];
  if (!index || !weights) throw new Error(`the package lacks fold ${fold}'s weights (${e.index})`);
  const out: Record<string, Uint8Array> = {
    ...files,
    [MODEL_FILES.index]: index,
    [MODEL_FILES.weights]: weights,
  };
  // model.onnx (if any) was built from the first fold: never reuse it for another.
  delete out[MODEL_FILES.onnx];
  return out;
}

/** Engines of an ensemble's members as one: logits averaged per tile, as nnU-Net does. */
export function ensembleEngine(members: Engine[]): Engine {
  if (members.length === 1) return members[0];
  return {
    predictTiles: ensembleTilePredictor(members.map((m) => m.predictTiles)),
    engine: `${members[0].engine}, ${members.length}-fold ensemble`,
    reason: members[0].reason,
    // Every member runs the same batch: the smallest one fits them all.
    tileBatch: Math.min(...members.map((m) => m.tileBatch)),
    release: async () => {
      await Promise.all(members.map((m) => m.release()));
    },
  };
}
