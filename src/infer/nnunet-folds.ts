// The one reader of nnU-Net v2 trained models, for the browser's Predict tab (infer worker) and the
// CLI (`predict --model`, `import-nnunet`, `--init-model`) alike. Its input is a FileSource, so it
// is the same code over every platform's adapter: a results folder on disk (node/fs-source.ts) or
// picked/dropped in a page (io/file-source.ts), or the zip nnUNetv2_export_model_to_zip writes
// (io/zip-source.ts: on disk by range, or a Blob), read entry by entry.
//
// One fold at a time: a fold's checkpoint is read, parsed by the safe .pth reader (it executes
// nothing), matched to the plans' network by name and shape, handed to the caller, and dropped
// before the next fold is read, so a 5-fold model never has more than one checkpoint (and its
// tensors, which are views of it) in memory.
import type { FileSource } from '../io/file-source.ts';
import { readNnUNetCheckpoint, type NnUNetCheckpoint } from '../io/torch-checkpoint.ts';
import type { ModelArchitecture, ModelFolder, ModelPlans } from '../model/model-folder.ts';
import { errorMessage } from '../util/errors.ts';
import {
  matchNetworkWeights,
  nnunetArch,
  NnUNetImportError,
  type NnUNetModel,
} from './nnunet-model.ts';
import type { PredictorPlans } from './predictor.ts';

export const NNUNET_CHECKPOINT_NAMES = ['checkpoint_final.pth', 'checkpoint_best.pth'] as const;

/** One nnU-Net results folder found in a source. */
export interface FoundNnUNetModel {
  /** Its folder inside the source ('' = the root), e.g. `Dataset801_X/nnUNetTrainer__nnUNetPlans__3d_fullres`. */
  dir: string;
  /** The folder name: `<Trainer>__<Plans>__<configuration>` in nnU-Net's layout. */
  name: string;
  /** Folds (sorted) and their checkpoints (checkpoint_final.pth first), with sizes where known. */
  folds: Array<{ fold: number; checkpoints: Array<{ name: string; bytes: number }> }>;
}

const CHECKPOINT_RE = /^(?:(.*)\/)?fold_(\d+)\/([\w.-]+\.pth)$/;
const rank = (n: string) => {
  const i = (NNUNET_CHECKPOINT_NAMES as readonly string[]).indexOf(n);
  return i < 0 ? NNUNET_CHECKPOINT_NAMES.length : i;
};

/**
 * The nnU-Net results folders in `src`: folders holding plans.json, dataset.json and at least one
 * fold_K/*.pth. Throws, saying what is missing, when there is none.
 */
export async function findNnUNetModels(src: FileSource): Promise<FoundNnUNetModel[]> {
  const files = await src.list();
  const set = new Set(files);
  const byDir = new Map<string, FoundNnUNetModel>();
  for (const f of files) {
    const m = CHECKPOINT_RE.exec(f);
    if (!m) continue;
    const dir = m[1] ?? '';
    const at = (n: string) => (dir ? `${dir}/${n}` : n);
    if (!set.has(at('plans.json')) || !set.has(at('dataset.json'))) continue;
    let found = byDir.get(dir);
    if (!found) {
      found = { dir, name: dir.split('/').pop() || src.name.replace(/\.zip$/i, ''), folds: [] };
      byDir.set(dir, found);
    }
    const fold = Number(m[2]);
    let entry = found.folds.find((x) => x.fold === fold);
    if (!entry) found.folds.push((entry = { fold, checkpoints: [] }));
    entry.checkpoints.push({ name: m[3], bytes: src.size?.(f) ?? 0 });
  }
  if (byDir.size === 0) {
    const hasPlans = files.some((f) => f.split('/').pop() === 'plans.json');
    const hasFold = files.some((f) => /(^|\/)fold_\d+\//.test(f));
    throw new NnUNetImportError(
      `${src.name} is not an nnU-Net v2 results folder: ${
        !hasPlans
          ? 'no plans.json'
          : !hasFold
            ? 'no fold_K/checkpoint_final.pth (no fold_K/ folder at all)'
            : 'no fold_K/checkpoint_final.pth (or another .pth) beside plans.json and dataset.json'
      }. Choose the <Trainer>__<Plans>__<configuration> folder (or its Dataset folder, or the zip nnUNetv2_export_model_to_zip writes)`,
    );
  }
  const out = [...byDir.values()].sort((a, b) => a.dir.localeCompare(b.dir));
  for (const m of out) {
    m.folds.sort((a, b) => a.fold - b.fold);
    for (const f of m.folds)
      f.checkpoints.sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
  }
  return out;
}

/** The folds of `found` that have `checkpoint`, sorted. */
export const foldsWith = (found: FoundNnUNetModel, checkpoint: string): number[] =>
  found.folds.filter((f) => f.checkpoints.some((c) => c.name === checkpoint)).map((f) => f.fold);

/** The one results folder in `src` with fold_K/`checkpoint` (several, or none: an error). */
export async function findNnUNetResultsDir(
  src: FileSource,
  checkpoint: string,
): Promise<FoundNnUNetModel> {
  const withCk = (await findNnUNetModels(src)).filter((m) => foldsWith(m, checkpoint).length);
  if (withCk.length === 1) return withCk[0];
  if (withCk.length > 1)
    throw new NnUNetImportError(
      `${src.name} holds several nnU-Net models (${withCk.map((m) => m.dir).join(', ')}): choose one folder`,
    );
  throw new NnUNetImportError(
    `${src.name} is not an nnU-Net v2 results folder: no fold_K/${checkpoint} beside plans.json and dataset.json`,
  );
}

/** The checkpoint file name to read in each fold_K/ (default checkpoint_final.pth), checked. */
export function checkpointName(name?: string): string {
  const c = name ?? NNUNET_CHECKPOINT_NAMES[0];
  if (!/^[\w.-]+\.pth$/.test(c))
    throw new NnUNetImportError(
      `--checkpoint names a file in fold_K/ (e.g. ${NNUNET_CHECKPOINT_NAMES.join(' or ')}), got '${c}'`,
    );
  return c;
}

export interface NnUNetFoldModel {
  fold: number;
  /** The fold as a model folder (weights are views of the checkpoint's bytes). */
  model: ModelFolder;
  checkpointBytes: number;
  /** The parsed checkpoint (its tensors are the weights' storage: no extra memory). */
  checkpoint: NnUNetCheckpoint;
}

export interface NnUNetReadProgress {
  fold: number;
  /** 1-based position of this fold among those read, and their count. */
  index: number;
  count: number;
  phase: 'reading' | 'decoding';
  /** Bytes of checkpoints read so far (all folds) and in all (0 where the source knows no sizes). */
  bytesDone: number;
  bytesTotal: number;
}

export interface ReadFoldsOptions {
  /** The results folder to read (a FoundNnUNetModel); default: the one in the source. */
  found?: FoundNnUNetModel;
  /** Default: every fold_K that has the checkpoint. */
  folds?: readonly number[];
  /** Default checkpoint_final.pth. */
  checkpoint?: string;
  onProgress?: (p: NnUNetReadProgress) => void;
}

/** What a read will take: the results folder, checkpoint, folds and their bytes (checked). */
export async function planNnUNetRead(
  src: FileSource,
  opts: ReadFoldsOptions = {},
): Promise<{ found: FoundNnUNetModel; checkpoint: string; folds: number[]; bytes: number[] }> {
  const checkpoint = checkpointName(opts.checkpoint);
  const found = opts.found ?? (await findNnUNetResultsDir(src, checkpoint));
  const available = foldsWith(found, checkpoint);
  const folds = opts.folds ? [...opts.folds] : available;
  if (folds.length === 0) throw new NnUNetImportError(`${found.name}: no fold has a ${checkpoint}`);
  if (new Set(folds).size !== folds.length) throw new NnUNetImportError('a fold is listed twice');
  for (const f of folds)
    if (!available.includes(f))
      throw new NnUNetImportError(
        `fold ${f} has no ${checkpoint} (available: ${available.join(', ') || 'none'})`,
      );
  const bytes = folds.map(
    (f) =>
      found.folds.find((x) => x.fold === f)!.checkpoints.find((c) => c.name === checkpoint)!.bytes,
  );
  return { found, checkpoint, folds, bytes };
}

/**
 * Reads the nnU-Net model in `src` (a results folder, or a source holding one, e.g. the export
 * zip) fold by fold. Each yielded fold is only referenced by the caller; the next is read when the
 * caller asks for it.
 */
export async function* readNnUNetFolds(
  src: FileSource,
  opts: ReadFoldsOptions = {},
): AsyncGenerator<NnUNetFoldModel> {
  const { found, checkpoint, folds, bytes: sizes } = await planNnUNetRead(src, opts);
  const dir = found.dir;
  const at = (n: string) => (dir ? `${dir}/${n}` : n);
  const json = async (n: string) => {
    try {
      return JSON.parse(new TextDecoder().decode(await src.read(at(n))));
    } catch (e) {
      throw new NnUNetImportError(
        `${src.name}: ${at(n)} is not readable JSON (${errorMessage(e)})`,
      );
    }
  };
  const plans = (await json('plans.json')) as ModelPlans;
  const datasetJson = await json('dataset.json');
  const bytesTotal = sizes.reduce((a, b) => a + b, 0);
  let bytesDone = 0;
  let configuration: string | undefined;
  for (const [i, fold] of folds.entries()) {
    const name = at(`fold_${fold}/${checkpoint}`);
    const progress = (phase: NnUNetReadProgress['phase']) =>
      opts.onProgress?.({ fold, index: i + 1, count: folds.length, phase, bytesDone, bytesTotal });
    let out: NnUNetFoldModel;
    try {
      progress('reading');
      const file = await src.read(name);
      bytesDone += sizes[i] || file.byteLength;
      progress('decoding');
      const ck = readNnUNetCheckpoint(file);
      const cfg = ck.initArgs.get('configuration');
      if (typeof cfg !== 'string') throw new NnUNetImportError('init_args has no configuration');
      if (configuration !== undefined && cfg !== configuration)
        throw new NnUNetImportError(
          `folds were trained with different configurations (${configuration}, ${cfg})`,
        );
      configuration = cfg;
      const arch = nnunetArch(plans as unknown as PredictorPlans, cfg, datasetJson);
      const weights = matchNetworkWeights(arch, ck.networkWeights);
      const cfgPlan = (
        plans.configurations as Record<string, { architecture?: ModelArchitecture }>
      )[cfg];
      out = {
        fold,
        checkpointBytes: file.byteLength,
        checkpoint: ck,
        model: {
          plans,
          datasetJson,
          configuration: cfg,
          weights,
          ...(cfgPlan?.architecture ? { architecture: cfgPlan.architecture } : {}),
          provenance: {
            trained_by: `nnU-Net v2 (${ck.trainerName || 'unknown trainer'}), imported`,
            method: 'local',
            nnunet_fold: fold,
            nnunet_checkpoint: checkpoint,
            epochs: ck.currentEpoch,
          },
          meta: ck.inferenceAllowedMirroringAxes
            ? { inference_allowed_mirroring_axes: ck.inferenceAllowedMirroringAxes }
            : {},
        },
      };
    } catch (e) {
      throw new NnUNetImportError(`${src.name}: ${name}: ${errorMessage(e)}`);
    }
    yield out;
  }
}

/** All the requested folds at once, as the predictor ensembles them (folder or export zip). */
export async function readNnUNetModel(
  src: FileSource,
  opts: ReadFoldsOptions = {},
): Promise<NnUNetModel> {
  const folds: NnUNetModel['folds'] = [];
  let first: ModelFolder | undefined;
  for await (const f of readNnUNetFolds(src, opts)) {
    first ??= f.model;
    folds.push({ fold: f.fold, checkpoint: f.checkpoint, weights: f.model.weights });
  }
  if (!first) throw new NnUNetImportError(`${src.name}: no fold to read`);
  return {
    plans: first.plans as unknown as PredictorPlans,
    datasetJson: first.datasetJson as NnUNetModel['datasetJson'],
    configuration: first.configuration,
    arch: nnunetArch(
      first.plans as unknown as PredictorPlans,
      first.configuration,
      first.datasetJson,
    ),
    folds,
    mirrorAxes: folds[0].checkpoint.inferenceAllowedMirroringAxes,
  };
}
