// Model packages kept in this browser (store/models.ts keeps their files as opaque bytes): this
// module checks a model folder's files before they are stored, describes them for the listing,
// and decodes a stored package.
import { decodeModelFolder, MODEL_FILES, type DecodedModelFolder } from '../model/model-folder.ts';
import { labelInfo } from '../model/labels.ts';
import { memorySource, type FileSource } from '../io/file-source.ts';
import type { StoreDB } from '../store/db.ts';
import {
  deleteModel,
  getModel,
  loadModelFiles,
  MODEL_SOURCES,
  putModel,
  putModelFile as putStoredModelFile,
  type ModelRecord,
  type ModelSource,
} from '../store/models.ts';
import {
  extraFolds,
  foldFiles,
  importNnUNetModel,
  isEnsembleFile,
  nnunetModelName,
  type NnUNetImportOptions,
} from './nnunet-import.ts';
import type { FoundNnUNetModel } from './nnunet-folds.ts';

/** Checks a model folder's files (decodes them fully) and returns the decoded model. */
export async function checkModelFiles(
  files: Record<string, Uint8Array>,
  name = 'model',
): Promise<DecodedModelFolder> {
  return decodeModelFolder(memorySource(name, files));
}

export interface SaveModelOptions {
  name: string;
  source: ModelSource;
  origin?: string;
  /** Replace this id's package (e.g. adding model.onnx); default: a new id. */
  id?: string;
}

/** Stores a model folder's files (validated first). Only the model-folder files are kept. */
export async function saveModel(
  db: StoreDB,
  files: Record<string, Uint8Array>,
  opts: SaveModelOptions,
): Promise<ModelRecord> {
  if (!MODEL_SOURCES.includes(opts.source))
    throw new Error(`unknown model source '${opts.source}'`);
  const md = await checkModelFiles(files, opts.name);
  const keep: Record<string, Uint8Array> = {};
  let bytes = 0;
  for (const f of [...Object.values(MODEL_FILES), ...Object.keys(files).filter(isEnsembleFile)]) {
    const b = files[f];
    if (!b) continue;
    keep[f] = b;
    bytes += b.byteLength;
  }
  const cfg = md.plans.configurations[md.configuration] as {
    patch_size?: number[];
    spacing?: number[];
  };
  labelInfo(md.datasetJson); // throws on an inconsistent label definition
  return putModel(
    db,
    keep,
    {
      name: opts.name,
      source: opts.source,
      configuration: md.configuration,
      numInputChannels: md.meta.num_input_channels,
      labels: md.datasetJson.labels,
      patchSize: cfg.patch_size ?? [],
      spacing: cfg.spacing ?? [],
      bytes,
      hasOnnx: !!keep[MODEL_FILES.onnx],
      origin: opts.origin,
      // Kept in the listing record so the Predict tab shows it without loading weights.
      ...(md.meta.provenance ? { provenance: md.meta.provenance } : {}),
    },
    opts.id,
  );
}

/** A stored model decoded; `ensemble` holds the further folds of an imported nnU-Net ensemble. */
export type StoredModel = DecodedModelFolder & {
  record: ModelRecord;
  ensemble: DecodedModelFolder[];
};

/** The decoded model folder of a stored model. */
export async function loadModel(db: StoreDB, id: string): Promise<StoredModel | undefined> {
  const [record, files] = await Promise.all([getModel(db, id), loadModelFiles(db, id)]);
  if (!record || !files) return undefined;
  const md = await checkModelFiles(files, record.name);
  const ensemble: DecodedModelFolder[] = [];
  for (const fold of extraFolds(md.meta))
    ensemble.push(await checkModelFiles(foldFiles(files, fold), `${record.name} fold ${fold}`));
  return { ...md, record, ensemble };
}

/**
 * Imports an nnU-Net results folder (found in `src`) as one stored package, one fold at a time
 * (the first fold's model folder is checked and stored, then each further fold's weights are
 * added); a failure part-way deletes what was stored.
 */
export async function saveNnUNetModel(
  db: StoreDB,
  src: FileSource,
  found: FoundNnUNetModel,
  opts: NnUNetImportOptions & { name?: string } = {},
): Promise<ModelRecord> {
  let rec: ModelRecord | undefined;
  try {
    await importNnUNetModel(
      src,
      found,
      async (files, fold, first) => {
        if (first) {
          rec = await saveModel(db, files, {
            name: opts.name || nnunetModelName(found, opts),
            source: 'imported',
            origin: `nnU-Net ${found.name}`,
          });
          return;
        }
        for (const [name, bytes] of Object.entries(files)) {
          if (!isEnsembleFile(name)) throw new Error(`unexpected package file ${name}`);
          await putStoredModelFile(db, rec!.id, name, bytes);
        }
        // Decode the fold back now, so a broken one fails the import, not a later prediction.
        const all = await loadModelFiles(db, rec!.id);
        await checkModelFiles(foldFiles(all!, fold), `fold ${fold}`);
      },
      opts,
    );
    return (await getModel(db, rec!.id))!;
  } catch (e) {
    if (rec) await deleteModel(db, rec.id);
    throw e;
  }
}

/** Adds (or replaces) one file of a stored package, e.g. model.onnx after an export. */
export async function putModelFile(
  db: StoreDB,
  id: string,
  name: string,
  bytes: Uint8Array,
): Promise<void> {
  await putStoredModelFile(db, id, name, bytes, name === MODEL_FILES.onnx ? { hasOnnx: true } : {});
}
