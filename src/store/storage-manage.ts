// What this browser keeps for the app, and how a user gets rid of it: the browser's use/quota
// figures in words, when to ask for persistent storage, and deleting everything at once (a
// dataset and a model each have their own delete: datasets.ts, models.ts). Pure (no DOM): runs in
// the data worker and in Node tests over fake-indexeddb.
import type { StoreDB, StoreName } from './db.ts';
import type { StorageEstimateInfo } from './env.ts';
import { listDatasets } from './datasets.ts';
import { listModels } from './models.ts';

/** Imports at least this large ask for persistent storage first (a demo case is far smaller). */
export const LARGE_IMPORT_BYTES = 64 * 1024 * 1024;

const MiB = 1024 * 1024;
export function sizeText(bytes: number): string {
  if (bytes >= 1024 * MiB) return `${(bytes / (1024 * MiB)).toFixed(1)} GiB`;
  if (bytes >= 10 * MiB) return `${Math.round(bytes / MiB)} MiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  return `${Math.max(0, Math.round(bytes / 1024))} KiB`;
}

/** One line for the use and quota the browser reports, and whether the data may be evicted. */
export function storageLine(est: StorageEstimateInfo | undefined, persisted?: boolean): string {
  const keep =
    persisted === true
      ? 'kept until you delete it (persistent storage granted)'
      : persisted === false
        ? 'the browser may delete it when the disk runs low (persistent storage not granted)'
        : '';
  if (!est?.quota)
    return `This browser does not report its storage quota${keep ? `; ${keep}` : ''}.`;
  const used = est.usage ?? 0;
  const pct = Math.min(100, (100 * used) / est.quota);
  return `This app uses ${sizeText(used)} of the ${sizeText(est.quota)} this browser allows it (${pct < 1 && used > 0 ? '<1' : Math.round(pct)} %)${keep ? `; ${keep}` : ''}.`;
}

export interface ImportAdvice {
  /** Ask navigator.storage.persist() before the import starts. */
  askPersistence: boolean;
  /** A warning in words when the import will probably not fit. */
  warning?: string;
}

/**
 * Before an import of `bytes` (unknown: a folder handle whose size is not known yet): ask for
 * persistence when the data is large and not yet persistent; warn when it will not fit the quota
 * (voxels are stored about as large as the files, or larger for compressed NIfTI).
 */
export function importAdvice(
  bytes: number | undefined,
  est: StorageEstimateInfo | undefined,
  persisted: boolean | undefined,
): ImportAdvice {
  const large = bytes === undefined || bytes >= LARGE_IMPORT_BYTES;
  const advice: ImportAdvice = { askPersistence: large && persisted !== true };
  if (bytes !== undefined && est?.quota !== undefined) {
    const free = est.quota - (est.usage ?? 0);
    if (bytes > free)
      advice.warning = `This import (${sizeText(bytes)}) is larger than the ${sizeText(Math.max(0, free))} this browser still allows the app; it will probably fail. Delete datasets or models you no longer need first.`;
  }
  return advice;
}

export interface StoredTotals {
  datasets: number;
  datasetBytes: number;
  models: number;
  modelBytes: number;
}

export async function storedTotals(db: StoreDB): Promise<StoredTotals> {
  const [ds, ms] = await Promise.all([listDatasets(db), listModels(db)]);
  return {
    datasets: ds.length,
    datasetBytes: ds.reduce((s, d) => s + d.bytes, 0),
    models: ms.length,
    modelBytes: ms.reduce((s, m) => s + m.bytes, 0),
  };
}

/** Every store but the site key: deleting the data must not make this browser a new site. */
const DATA_STORES: StoreName[] = [
  'datasets',
  'imports',
  'cases',
  'volumes',
  'fingerprints',
  'plans',
  'preprocessed',
  'checkpoints',
  'fedState',
  'hostedFederations',
];

/**
 * Deletes every dataset, model, checkpoint, plan and saved federation state in one transaction
 * (all or nothing); the site key stays. Returns what was there.
 */
export async function deleteEverything(db: StoreDB): Promise<StoredTotals> {
  const before = await storedTotals(db);
  const tx = db.transaction(DATA_STORES, 'readwrite');
  await Promise.all([...DATA_STORES.map((s) => tx.objectStore(s).clear()), tx.done]);
  return before;
}
