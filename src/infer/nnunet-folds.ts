// nnU-Net v2 trained models (a results folder, or the zip nnUNetv2_export_model_to_zip writes) as
// this project's model folders, one fold at a time: a fold's checkpoint is read, matched to the
// network by name and shape, handed to the caller, and dropped before the next fold is read, so a
// 5-fold model never has more than one checkpoint (and its tensors, which are views of it) in
// memory. The zip itself is read entry by entry through its directory (zipSource).
import type { FileSource } from '../io/file-source.ts';
import { readNnUNetCheckpoint } from '../io/torch-checkpoint.ts';
import { openZip, type ReadAt } from '../io/zip-archive.ts';
import type { ModelArchitecture, ModelFolder, ModelPlans } from '../model/model-folder.ts';
import type { NamedWeights } from '../model/named-weights.ts';
import { errorMessage } from '../util/errors.ts';
import {
  matchNetworkWeights,
  nnunetArch,
  NnUNetImportError,
  type NnUNetModel,
} from './nnunet-model.ts';
import type { NnUNetCheckpoint } from '../io/torch-checkpoint.ts';
import type { PredictorPlans } from './predictor.ts';

export const NNUNET_CHECKPOINT_NAMES = ['checkpoint_final.pth', 'checkpoint_best.pth'] as const;

/** A zip as a FileSource: entries are read (and inflated) one at a time, on demand. */
export function zipSource(name: string, size: number, readAt: ReadAt): FileSource {
  const zip = openZip(size, readAt, name);
  const byPath = new Map(
    zip.entries.filter((e) => !e.name.endsWith('/')).map((e) => [e.name.replace(/^\/+/, ''), e]),
  );
  return {
    name,
    list: async () => [...byPath.keys()].sort(),
    read: async (p) => {
      const e = byPath.get(p);
      if (!e) throw new NnUNetImportError(`${name}: no file ${p}`);
      return zip.read(e);
    },
  };
}

/** Where the results folder (plans.json, dataset.json, fold_K/) sits in a source: '' or a path. */
export async function findNnUNetResultsDir(src: FileSource, checkpoint: string): Promise<string> {
  const files = await src.list();
  const set = new Set(files);
  const dirs = new Set<string>();
  for (const f of files) {
    const m = /^(?:(.*)\/)?fold_(?:\d+|all)\/([^/]+)$/.exec(f);
    if (!m || m[2] !== checkpoint) continue;
    const d = m[1] ?? '';
    const at = (n: string) => (d ? `${d}/${n}` : n);
    if (set.has(at('plans.json')) && set.has(at('dataset.json'))) dirs.add(d);
  }
  if (dirs.size === 1) return [...dirs][0];
  if (dirs.size > 1)
    throw new NnUNetImportError(
      `${src.name} holds several nnU-Net models (${[...dirs].join(', ')}): choose one folder`,
    );
  const hasPlans = files.some((f) => f.split('/').pop() === 'plans.json');
  throw new NnUNetImportError(
    `${src.name} is not an nnU-Net v2 results folder: ${
      hasPlans
        ? `no fold_K/${checkpoint} beside plans.json and dataset.json`
        : 'no plans.json (choose the <Trainer>__<Plans>__<configuration> folder or the zip nnUNetv2_export_model_to_zip writes)'
    }`,
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

export interface ReadFoldsOptions {
  /** Default: every fold_K that has the checkpoint. */
  folds?: readonly number[];
  /** Default checkpoint_final.pth. */
  checkpoint?: string;
}

/** The folds available in a results folder (fold numbers, sorted), for `checkpoint`. */
export async function nnunetFolds(
  src: FileSource,
  dir: string,
  checkpoint: string,
): Promise<number[]> {
  const pre = dir ? `${dir}/` : '';
  return (await src.list())
    .map((f) => (f.startsWith(pre) ? /^fold_(\d+)\/([^/]+)$/.exec(f.slice(pre.length)) : null))
    .filter((m): m is RegExpExecArray => !!m && m[2] === checkpoint)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
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
  const checkpoint = checkpointName(opts.checkpoint);
  const dir = await findNnUNetResultsDir(src, checkpoint);
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
  const available = await nnunetFolds(src, dir, checkpoint);
  const folds = opts.folds ? [...opts.folds] : available;
  for (const f of folds)
    if (!available.includes(f))
      throw new NnUNetImportError(
        `fold ${f} has no ${checkpoint} (available: ${available.join(', ') || 'none'})`,
      );
  let configuration: string | undefined;
  for (const fold of folds) {
    const name = at(`fold_${fold}/${checkpoint}`);
    let weights: NamedWeights;
    let bytes: number;
    let ck;
    try {
      const file = await src.read(name);
      bytes = file.byteLength;
      ck = readNnUNetCheckpoint(file);
      const cfg = ck.initArgs.get('configuration');
      if (typeof cfg !== 'string') throw new NnUNetImportError('init_args has no configuration');
      if (configuration !== undefined && cfg !== configuration)
        throw new NnUNetImportError(
          `folds were trained with different configurations (${configuration}, ${cfg})`,
        );
      configuration = cfg;
      const arch = nnunetArch(plans as unknown as PredictorPlans, cfg, datasetJson);
      weights = matchNetworkWeights(arch, ck.networkWeights);
    } catch (e) {
      throw new NnUNetImportError(`${src.name}: ${name}: ${errorMessage(e)}`);
    }
    const cfgPlan = (plans.configurations as Record<string, { architecture?: ModelArchitecture }>)[
      configuration
    ];
    yield {
      fold,
      checkpointBytes: bytes,
      checkpoint: ck,
      model: {
        plans,
        datasetJson,
        configuration,
        weights,
        ...(cfgPlan?.architecture ? { architecture: cfgPlan.architecture } : {}),
        provenance: {
          trained_by: `nnU-Net (${ck.trainerName}), imported`,
          nnunet_fold: fold,
          nnunet_checkpoint: checkpoint,
          epochs: ck.currentEpoch,
        },
        meta: ck.inferenceAllowedMirroringAxes
          ? { inference_allowed_mirroring_axes: ck.inferenceAllowedMirroringAxes }
          : {},
      },
    };
  }
}

/** All the requested folds at once, as the predictor ensembles them (folder or export zip). */
export async function readNnUNetModelFrom(
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
