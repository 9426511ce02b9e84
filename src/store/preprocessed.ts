// Preprocessed cases (DefaultPreprocessor.run_case output) in the `preprocessed` store, key
// [datasetId, plansName, configuration, caseId]: data (float32 C,Z,Y,X), seg (int8 or int16
// 1,Z,Y,X) and the case properties with class_locations. The round trip is bit-exact and keeps the
// typed array classes. Writes fail for a dataset that does not exist; deleting the dataset (or its
// plans) deletes these records.
import type { CaseProperties, PreprocessedCase } from '../preprocess/preprocess.ts';
import type { StoreDB } from './db.ts';
import { requireDataset } from './require-dataset.ts';

// A type alias, not an interface: it must fit the store's indexable DatasetOwned.
type PreprocessedRecord = {
  datasetId: string;
  plansName: string;
  configuration: string;
  caseId: string;
  shape: [number, number, number, number];
  data: Float32Array;
  seg: Int8Array | Int16Array;
  properties: CaseProperties;
  savedAt: number;
};

/** A typed array that owns exactly its bytes (structured clone would copy a view's whole buffer). */
function compact<T extends Float32Array | Int8Array | Int16Array | Int32Array>(a: T): T {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : (a.slice() as T);
}

function range(datasetId: string, plansName: string, configuration: string): IDBKeyRange {
  return IDBKeyRange.bound(
    [datasetId, plansName, configuration],
    [datasetId, plansName, configuration, []],
  );
}

export async function savePreprocessed(
  db: StoreDB,
  datasetId: string,
  plansName: string,
  configuration: string,
  caseId: string,
  pc: PreprocessedCase,
): Promise<void> {
  const n = pc.shape.reduce((a, b) => a * b, 1);
  if (pc.data.length !== n || pc.seg.length !== n / pc.shape[0])
    throw new RangeError(`store: preprocessed arrays do not match shape ${pc.shape.join('x')}`);
  const props: CaseProperties = { ...pc.properties };
  if (props.class_locations)
    props.class_locations = Object.fromEntries(
      Object.entries(props.class_locations).map(([k, v]) => [k, compact(v)]),
    );
  const rec: PreprocessedRecord = {
    datasetId,
    plansName,
    configuration,
    caseId,
    shape: [...pc.shape],
    data: compact(pc.data),
    seg: compact(pc.seg),
    properties: props,
    savedAt: Date.now(),
  };
  const tx = db.transaction(['datasets', 'preprocessed'], 'readwrite');
  await requireDataset(tx, datasetId);
  await Promise.all([tx.objectStore('preprocessed').put(rec), tx.done]);
}

export async function loadPreprocessed(
  db: StoreDB,
  datasetId: string,
  plansName: string,
  configuration: string,
  caseId: string,
): Promise<PreprocessedCase | undefined> {
  const rec = (await db.get('preprocessed', [datasetId, plansName, configuration, caseId])) as
    PreprocessedRecord | undefined;
  if (!rec) return undefined;
  return { data: rec.data, seg: rec.seg, shape: rec.shape, properties: rec.properties };
}

/** Case ids preprocessed for one plans configuration, sorted (keys only; no arrays are read). */
export async function listPreprocessed(
  db: StoreDB,
  datasetId: string,
  plansName: string,
  configuration: string,
): Promise<string[]> {
  const keys = await db.getAllKeys('preprocessed', range(datasetId, plansName, configuration));
  return keys.map((k) => k[3]);
}

/** Deletes the preprocessed cases of one plans configuration. */
export async function deletePreprocessed(
  db: StoreDB,
  datasetId: string,
  plansName: string,
  configuration: string,
): Promise<void> {
  const tx = db.transaction('preprocessed', 'readwrite');
  await Promise.all([tx.store.delete(range(datasetId, plansName, configuration)), tx.done]);
}
