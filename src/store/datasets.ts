// Reading and deleting datasets. Only datasets with a `datasets` record exist for readers: records
// staged by an import in progress are never returned.

import type { Volume } from '../io/volume.ts';
import {
  PER_DATASET_STORES,
  datasetRange,
  deleteDatasetRecords,
  type CaseRecord,
  type DatasetRecord,
  type StoreDB,
  type VolumeRole,
} from './db.ts';
import { defaultEnv, estimateStorage, type StorageEstimateInfo, type StoreEnv } from './env.ts';
import { joinVolume } from './volume-record.ts';

export {
  importDataset,
  type CaseInput,
  type DatasetMeta,
  type ImportOptions,
  type ImportProgress,
  type ImportResult,
} from './import-dataset.ts';

/** Visible datasets, by name. */
export async function listDatasets(db: StoreDB): Promise<DatasetRecord[]> {
  const all = await db.getAll('datasets');
  return all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function getDataset(db: StoreDB, id: string): Promise<DatasetRecord | undefined> {
  return db.get('datasets', id);
}

export function findDatasetByName(db: StoreDB, name: string): Promise<DatasetRecord | undefined> {
  return db.getFromIndex('datasets', 'byName', name);
}

/** Case headers of a dataset (no voxels), in caseId order. */
export async function listCases(db: StoreDB, datasetId: string): Promise<CaseRecord[]> {
  const tx = db.transaction(['datasets', 'cases']);
  if (!(await tx.objectStore('datasets').get(datasetId))) return [];
  return tx.objectStore('cases').getAll(datasetRange(datasetId));
}

export async function getCase(
  db: StoreDB,
  datasetId: string,
  caseId: string,
): Promise<CaseRecord | undefined> {
  const tx = db.transaction(['datasets', 'cases']);
  if (!(await tx.objectStore('datasets').get(datasetId))) return undefined;
  return tx.objectStore('cases').get([datasetId, caseId]);
}

export interface CaseVolumes {
  images: Volume[];
  label?: Volume;
  problems: string[];
}

/** A case's volumes as imported: same typed array class, dims, spacing, affine, datatype, bytes. */
export async function loadCaseVolumes(
  db: StoreDB,
  datasetId: string,
  caseId: string,
): Promise<CaseVolumes | undefined> {
  const tx = db.transaction(['datasets', 'cases', 'volumes']);
  if (!(await tx.objectStore('datasets').get(datasetId))) return undefined;
  const rec = await tx.objectStore('cases').get([datasetId, caseId]);
  if (!rec) return undefined;
  const volumes = tx.objectStore('volumes');
  const roles: VolumeRole[] = rec.images.map((_, i) => `image:${i}` as const);
  if (rec.label) roles.push('label');
  const stored = await Promise.all(roles.map((r) => volumes.get([datasetId, caseId, r])));
  // Decoding may await Blob reads, so it happens after the transaction's requests are issued.
  const out = await Promise.all(
    stored.map((s, i) => {
      if (!s)
        throw new Error(`store: case '${caseId}' of ${datasetId} lacks its ${roles[i]} voxels`);
      return joinVolume(roles[i] === 'label' ? rec.label! : rec.images[i], s.dtype, s.data);
    }),
  );
  return {
    images: rec.label ? out.slice(0, -1) : out,
    label: rec.label ? out[out.length - 1] : undefined,
    problems: rec.problems,
  };
}

/**
 * The cases of a dataset one at a time, in caseId order: each case's volumes are read only when
 * the consumer asks for it (e.g. extractFingerprintFromCases), so one case is in memory at a time.
 */
export async function* iterateCaseVolumes(
  db: StoreDB,
  datasetId: string,
): AsyncGenerator<CaseVolumes & { id: string; image: Volume[] }> {
  const ids = (await listCases(db, datasetId)).map((c) => c.caseId);
  for (const id of ids) {
    const v = await loadCaseVolumes(db, datasetId, id);
    if (!v) throw new Error(`store: case '${id}' of ${datasetId} disappeared (dataset deleted?)`);
    yield { ...v, id, image: v.images };
  }
}

/** Deletes a dataset and every record keyed by it (cases, voxels, fingerprints, plans, …). */
export async function deleteDataset(db: StoreDB, datasetId: string): Promise<boolean> {
  const tx = db.transaction(['datasets', ...PER_DATASET_STORES], 'readwrite');
  const [key] = await Promise.all([
    tx.objectStore('datasets').getKey(datasetId),
    deleteDatasetRecords(tx, datasetId),
    tx.objectStore('datasets').delete(datasetId),
    tx.done,
  ]);
  return key !== undefined;
}

export interface StorageUsage {
  datasets: { id: string; name: string; numCases: number; bytes: number }[];
  /** Voxel bytes of all datasets. */
  totalBytes: number;
  /** The browser's figures for this whole site (all stores, caches, overhead), when available. */
  estimate?: StorageEstimateInfo;
}

/** Voxel bytes per dataset (as imported) and the browser's estimate for the site. */
export async function storageUsage(
  db: StoreDB,
  env: StoreEnv = defaultEnv(),
): Promise<StorageUsage> {
  const datasets = (await listDatasets(db)).map((d) => ({
    id: d.id,
    name: d.name,
    numCases: d.numCases,
    bytes: d.bytes,
  }));
  return {
    datasets,
    totalBytes: datasets.reduce((s, d) => s + d.bytes, 0),
    estimate: await estimateStorage(env),
  };
}
