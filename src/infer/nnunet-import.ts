// An nnU-Net v2 results folder (read by nnunet-folds.ts, the reader the CLI uses too) turned into
// this app's model package, so the Predict tab stores it like any other model. One fold at a time:
// the reader reads and checks a fold's .pth (progress by bytes), this module encodes it and hands
// the files to `onFold` before the next fold is read — memory holds one checkpoint at a time.
//
// Several folds make one ensemble package: the first fold is the folder's weights.json/.bin, the
// others `folds/<K>/weights.json` + `.bin`, and model.json's `nnunet.folds` lists them in order.
// Such a package is predicted as nnU-Net does, by predictNnUNetCase (nnunetPredictionModel).
import { encodeModelFolder, MODEL_FILES, type DecodedModelFolder } from '../model/model-folder.ts';
import {
  planNnUNetRead,
  readNnUNetFolds,
  type FoundNnUNetModel,
  type NnUNetReadProgress,
} from './nnunet-folds.ts';
import type { NnUNetPredictionModel } from './nnunet-model.ts';
import type { FileSource } from '../io/file-source.ts';
import type { Engine } from './engine-choice.ts';
import type { PredictTiles } from './sliding-window.ts';

export interface NnUNetImportOptions {
  /** Folds to import (default: every fold with the checkpoint). */
  folds?: readonly number[];
  /** Default checkpoint_final.pth. */
  checkpoint?: string;
  onProgress?: (p: NnUNetImportProgress) => void;
}

export interface NnUNetImportProgress extends Omit<NnUNetReadProgress, 'phase'> {
  phase: NnUNetReadProgress['phase'] | 'stored';
}

/** model.json's `nnunet` block: where an imported model came from. */
export interface NnUNetOrigin {
  folder: string;
  trainer: string;
  checkpoint: string;
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
  src: FileSource,
  found: FoundNnUNetModel,
  onFold: (files: Record<string, Uint8Array>, fold: number, first: boolean) => Promise<void>,
  opts: NnUNetImportOptions = {},
): Promise<{ configuration: string; folds: number[]; origin: NnUNetOrigin }> {
  const read = { found, folds: opts.folds, checkpoint: opts.checkpoint };
  const { checkpoint, folds, bytes } = await planNnUNetRead(src, read);
  const origin: NnUNetOrigin = { folder: found.name, trainer: '', checkpoint, folds };
  const bytesTotal = bytes.reduce((a, b) => a + b, 0);
  let configuration = '';
  let mirror: unknown;
  for await (const f of readNnUNetFolds(src, { ...read, onProgress: opts.onProgress })) {
    const first = !configuration;
    configuration = f.model.configuration;
    origin.trainer ||= f.checkpoint.trainerName;
    // The package's one model.json (the first fold's) carries the ensemble's mirroring axes.
    if (first) mirror = f.model.meta?.inference_allowed_mirroring_axes;
    const files = encodeModelFolder({
      ...f.model,
      meta: { ...(mirror ? { inference_allowed_mirroring_axes: mirror } : {}), nnunet: origin },
    });
    if (first) await onFold(files, f.fold, true);
    else {
      const e = ensembleFiles(f.fold);
      await onFold(
        { [e.index]: files[MODEL_FILES.index], [e.weights]: files[MODEL_FILES.weights] },
        f.fold,
        false,
      );
    }
    const index = folds.indexOf(f.fold) + 1;
    const bytesDone = bytes.slice(0, index).reduce((a, b) => a + b, 0);
    opts.onProgress?.({
      fold: f.fold,
      index,
      count: folds.length,
      phase: 'stored',
      bytesDone,
      bytesTotal,
    });
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

/**
 * A stored package as predictNnUNetCase takes it, when it is an imported nnU-Net model (model.json
 * has `nnunet`): its folds in order (`members`: the package's first fold, then `ensemble`) and the
 * checkpoint's mirroring axes. Undefined for models trained in this app (predicted in float32).
 */
export function nnunetPredictionModel(
  md: DecodedModelFolder,
  members: readonly unknown[],
): NnUNetPredictionModel | undefined {
  if (!md.meta.nnunet) return undefined;
  const axes = md.meta.inference_allowed_mirroring_axes;
  return {
    plans: md.plans as unknown as NnUNetPredictionModel['plans'],
    datasetJson: md.datasetJson as NnUNetPredictionModel['datasetJson'],
    configuration: md.configuration,
    mirrorAxes: Array.isArray(axes) ? axes : null,
    folds: members,
  };
}

/** One engine per fold of a package, as predictNnUNetCase (or predictCase) takes them. */
export interface FoldEngines extends Omit<Engine, 'predictTiles'> {
  predictors: PredictTiles[];
}

export function foldEngines(members: Engine[]): FoldEngines {
  return {
    predictors: members.map((m) => m.predictTiles),
    engine:
      members.length > 1
        ? `${members[0].engine}, ${members.length}-fold ensemble`
        : members[0].engine,
    reason: members[0].reason,
    // Every member runs the same batch: the smallest one fits them all.
    tileBatch: Math.min(...members.map((m) => m.tileBatch)),
    release: async () => {
      await Promise.all(members.map((m) => m.release()));
    },
  };
}
