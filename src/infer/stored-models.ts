// Model packages kept in this browser (store/models.ts keeps their files as opaque bytes): this
// module checks a model folder's files before they are stored, describes them for the listing,
// and decodes a stored package.
import { decodeModelFolder, MODEL_FILES, type DecodedModelFolder } from '../model/model-folder.ts';
import { labelInfo } from '../model/labels.ts';
import { memorySource } from '../io/file-source.ts';
import type { StoreDB } from '../store/db.ts';
import {
  getModel,
  loadModelFiles,
  MODEL_SOURCES,
  putModel,
  putModelFile as putStoredModelFile,
  type ModelRecord,
  type ModelSource,
} from '../store/models.ts';

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
  for (const f of Object.values(MODEL_FILES)) {
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

/** The decoded model folder of a stored model. */
export async function loadModel(
  db: StoreDB,
  id: string,
): Promise<(DecodedModelFolder & { record: ModelRecord }) | undefined> {
  const [record, files] = await Promise.all([getModel(db, id), loadModelFiles(db, id)]);
  if (!record || !files) return undefined;
  return { ...(await checkModelFiles(files, record.name)), record };
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
