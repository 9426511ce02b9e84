// Model packages in this browser: the files of a model folder (src/model/model-folder.ts: model.json,
// plans.json, dataset.json, weights.json, weights.bin, optional model.onnx) plus a name and where
// the model came from. Kept in the existing `checkpoints` store (no schema change), under the
// empty dataset id, so deleting a dataset never deletes a model trained on it:
//
//   ['', 'models', id]       ModelRecord: metadata only (listing never loads weights)
//   ['', 'model-files', id]  ModelFilesRecord: the folder's files as ArrayBuffers
//
// No dataset has the id '' (ids are generated per import), so these keys never collide.
import { decodeModelFolder, MODEL_FILES, type DecodedModelFolder } from '../model/model-folder.ts';
import { memorySource } from '../io/file-source.ts';
import type { StoreDB } from './db.ts';

export type ModelSource = 'imported' | 'federation-global' | 'personalised' | 'local';
export const MODEL_SOURCES: readonly ModelSource[] = ['imported', 'federation-global', 'personalised', 'local'];

const NO_DATASET = '';
const META_RUN = 'models';
const FILES_RUN = 'model-files';

export interface ModelRecord {
  datasetId: typeof NO_DATASET;
  runId: typeof META_RUN;
  tag: string;
  id: string;
  name: string;
  source: ModelSource;
  createdAt: number;
  configuration: string;
  numInputChannels: number;
  /** dataset.json labels (name → value or region values). */
  labels: Record<string, number | number[]>;
  patchSize: number[];
  spacing: number[];
  /** Total bytes of the package's files. */
  bytes: number;
  hasOnnx: boolean;
  /** Free-form origin, e.g. the federation or dataset it was trained in. */
  origin?: string;
  [k: string]: unknown;
}

interface ModelFilesRecord {
  datasetId: typeof NO_DATASET;
  runId: typeof FILES_RUN;
  tag: string;
  files: Record<string, ArrayBuffer>;
  [k: string]: unknown;
}

const metaKey = (id: string): [string, string, string] => [NO_DATASET, META_RUN, id];
const filesKey = (id: string): [string, string, string] => [NO_DATASET, FILES_RUN, id];

function newId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID ? c.randomUUID() : `m${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
}

const copy = (b: Uint8Array): ArrayBuffer => b.slice().buffer as ArrayBuffer;

/** Checks a model folder's files (decodes them fully) and returns the decoded model. */
export async function checkModelFiles(files: Record<string, Uint8Array>, name = 'model'): Promise<DecodedModelFolder> {
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
export async function saveModel(db: StoreDB, files: Record<string, Uint8Array>, opts: SaveModelOptions): Promise<ModelRecord> {
  if (!MODEL_SOURCES.includes(opts.source)) throw new Error(`unknown model source '${opts.source}'`);
  const md = await checkModelFiles(files, opts.name);
  const keep: Record<string, ArrayBuffer> = {};
  let bytes = 0;
  for (const f of Object.values(MODEL_FILES)) {
    const b = files[f];
    if (!b) continue;
    keep[f] = copy(b);
    bytes += b.byteLength;
  }
  const cfg = md.plans.configurations[md.configuration] as { patch_size?: number[]; spacing?: number[] };
  const id = opts.id ?? newId();
  const rec: ModelRecord = {
    datasetId: NO_DATASET, runId: META_RUN, tag: id,
    id, name: opts.name, source: opts.source, createdAt: Date.now(),
    configuration: md.configuration,
    numInputChannels: md.meta.num_input_channels,
    labels: md.datasetJson.labels,
    patchSize: cfg.patch_size ?? [],
    spacing: cfg.spacing ?? [],
    bytes,
    hasOnnx: !!keep[MODEL_FILES.onnx],
    origin: opts.origin,
  };
  const tx = db.transaction('checkpoints', 'readwrite');
  const store = tx.objectStore('checkpoints');
  const filesRec: ModelFilesRecord = { datasetId: NO_DATASET, runId: FILES_RUN, tag: id, files: keep };
  await Promise.all([store.put(rec), store.put(filesRec), tx.done]);
  return rec;
}

/** Stored models, newest first (metadata only). */
export async function listModels(db: StoreDB): Promise<ModelRecord[]> {
  const all = (await db.getAll('checkpoints', IDBKeyRange.bound([NO_DATASET, META_RUN], [NO_DATASET, META_RUN, []]))) as unknown as ModelRecord[];
  return all.sort((a, b) => b.createdAt - a.createdAt);
}

export async function getModel(db: StoreDB, id: string): Promise<ModelRecord | undefined> {
  return (await db.get('checkpoints', metaKey(id))) as unknown as ModelRecord | undefined;
}

/** The package's files as bytes (what `exportModel` zips and `loadModel` decodes). */
export async function loadModelFiles(db: StoreDB, id: string): Promise<Record<string, Uint8Array> | undefined> {
  const rec = (await db.get('checkpoints', filesKey(id))) as unknown as ModelFilesRecord | undefined;
  if (!rec) return undefined;
  return Object.fromEntries(Object.entries(rec.files).map(([k, v]) => [k, new Uint8Array(v)]));
}

/** The decoded model folder of a stored model. */
export async function loadModel(db: StoreDB, id: string): Promise<(DecodedModelFolder & { record: ModelRecord }) | undefined> {
  const [record, files] = await Promise.all([getModel(db, id), loadModelFiles(db, id)]);
  if (!record || !files) return undefined;
  return { ...(await checkModelFiles(files, record.name)), record };
}

/** Adds (or replaces) one file of a stored package, e.g. model.onnx after an export. */
export async function putModelFile(db: StoreDB, id: string, name: string, bytes: Uint8Array): Promise<void> {
  const tx = db.transaction('checkpoints', 'readwrite');
  const store = tx.objectStore('checkpoints');
  const [rec, files] = await Promise.all([store.get(metaKey(id)), store.get(filesKey(id))]) as unknown as [ModelRecord | undefined, ModelFilesRecord | undefined];
  if (!rec || !files) throw new Error(`no stored model ${id}`);
  const old = files.files[name]?.byteLength ?? 0;
  files.files[name] = copy(bytes);
  rec.bytes += bytes.byteLength - old;
  if (name === MODEL_FILES.onnx) rec.hasOnnx = true;
  await Promise.all([store.put(files), store.put(rec), tx.done]);
}

export async function renameModel(db: StoreDB, id: string, name: string): Promise<void> {
  const tx = db.transaction('checkpoints', 'readwrite');
  const rec = (await tx.store.get(metaKey(id))) as unknown as ModelRecord | undefined;
  if (!rec) throw new Error(`no stored model ${id}`);
  await Promise.all([tx.store.put({ ...rec, name }), tx.done]);
}

export async function deleteModel(db: StoreDB, id: string): Promise<boolean> {
  const tx = db.transaction('checkpoints', 'readwrite');
  const store = tx.objectStore('checkpoints');
  const [key] = await Promise.all([store.getKey(metaKey(id)), store.delete(metaKey(id)), store.delete(filesKey(id)), tx.done]);
  return key !== undefined;
}
