// Model packages in this browser: the files of a model folder (src/model/model-folder.ts: model.json,
// plans.json, dataset.json, weights.json, weights.bin, optional model.onnx) as opaque bytes, plus
// a name and where the model came from. Checking and decoding the files is the caller's
// (src/infer/stored-models.ts). Kept in the existing `checkpoints` store (no schema change), under the
// empty dataset id, so deleting a dataset never deletes a model trained on it:
//
//   ['', 'models', id]       ModelRecord: metadata only (listing never loads weights)
//   ['', 'model-files', id]  ModelFilesRecord: the folder's files as ArrayBuffers
//
// No dataset has the id '' (ids are generated per import), so these keys never collide.
import type { StoreDB } from './db.ts';

export type ModelSource = 'imported' | 'federation-global' | 'personalised' | 'local';
export const MODEL_SOURCES: readonly ModelSource[] = [
  'imported',
  'federation-global',
  'personalised',
  'local',
];

const NO_DATASET = '';
const META_RUN = 'models';
const FILES_RUN = 'model-files';

/** What describes a package (its record but the keys and the time it was stored). */
export interface ModelDescription {
  name: string;
  source: ModelSource;
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
  /** model.json's provenance, as stored (opaque here; src/infer/model-provenance.ts reads it). */
  provenance?: Record<string, unknown>;
}

export interface ModelRecord extends ModelDescription {
  datasetId: typeof NO_DATASET;
  runId: typeof META_RUN;
  tag: string;
  id: string;
  createdAt: number;
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
  return c?.randomUUID
    ? c.randomUUID()
    : `m${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
}

const copy = (b: Uint8Array): ArrayBuffer => b.slice().buffer as ArrayBuffer;

/** Stores a package's files and record (a new id, or replaces `id`'s). The files are kept as given. */
export async function putModel(
  db: StoreDB,
  files: Record<string, Uint8Array>,
  desc: ModelDescription,
  id = newId(),
): Promise<ModelRecord> {
  if (!MODEL_SOURCES.includes(desc.source))
    throw new Error(`unknown model source '${desc.source}'`);
  const keep: Record<string, ArrayBuffer> = {};
  for (const [f, b] of Object.entries(files)) keep[f] = copy(b);
  const rec: ModelRecord = {
    ...desc,
    datasetId: NO_DATASET,
    runId: META_RUN,
    tag: id,
    id,
    createdAt: Date.now(),
  };
  const tx = db.transaction('checkpoints', 'readwrite');
  const store = tx.objectStore('checkpoints');
  const filesRec: ModelFilesRecord = {
    datasetId: NO_DATASET,
    runId: FILES_RUN,
    tag: id,
    files: keep,
  };
  await Promise.all([store.put(rec), store.put(filesRec), tx.done]);
  return rec;
}

/** Stored models, newest first (metadata only). */
export async function listModels(db: StoreDB): Promise<ModelRecord[]> {
  const all = (await db.getAll(
    'checkpoints',
    IDBKeyRange.bound([NO_DATASET, META_RUN], [NO_DATASET, META_RUN, []]),
  )) as unknown as ModelRecord[];
  return all.sort((a, b) => b.createdAt - a.createdAt);
}

export async function getModel(db: StoreDB, id: string): Promise<ModelRecord | undefined> {
  return (await db.get('checkpoints', metaKey(id))) as unknown as ModelRecord | undefined;
}

/** The package's files as bytes (what `exportModel` zips and `loadModel` decodes). */
export async function loadModelFiles(
  db: StoreDB,
  id: string,
): Promise<Record<string, Uint8Array> | undefined> {
  const rec = (await db.get('checkpoints', filesKey(id))) as unknown as
    ModelFilesRecord | undefined;
  if (!rec) return undefined;
  return Object.fromEntries(Object.entries(rec.files).map(([k, v]) => [k, new Uint8Array(v)]));
}

/** Adds (or replaces) one file of a stored package, e.g. model.onnx after an export. */
export async function putModelFile(
  db: StoreDB,
  id: string,
  name: string,
  bytes: Uint8Array,
  patch: Partial<Pick<ModelRecord, 'hasOnnx'>> = {},
): Promise<void> {
  const tx = db.transaction('checkpoints', 'readwrite');
  const store = tx.objectStore('checkpoints');
  const [rec, files] = (await Promise.all([
    store.get(metaKey(id)),
    store.get(filesKey(id)),
  ])) as unknown as [ModelRecord | undefined, ModelFilesRecord | undefined];
  if (!rec || !files) throw new Error(`no stored model ${id}`);
  const old = files.files[name]?.byteLength ?? 0;
  files.files[name] = copy(bytes);
  rec.bytes += bytes.byteLength - old;
  await Promise.all([store.put(files), store.put({ ...rec, ...patch }), tx.done]);
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
  const [key] = await Promise.all([
    store.getKey(metaKey(id)),
    store.delete(metaKey(id)),
    store.delete(filesKey(id)),
    tx.done,
  ]);
  return key !== undefined;
}
