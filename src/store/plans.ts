// nnU-Net plans in the `plans` store, key [datasetId, plansName]: the local plans ('nnUNetPlans')
// and plans made from an FFE aggregate (saved under a name of the caller's choosing). Writes fail
// for a dataset that does not exist.
import type { Plans } from '../plan/types.ts';
import { datasetRange, type StoreDB } from './db.ts';
import { requireDataset } from './require-dataset.ts';

// A type alias, not an interface: it must fit the store's indexable DatasetOwned.
type PlansRecord = {
  datasetId: string;
  plansName: string;
  plans: Plans;
  savedAt: number;
};

/** Saves plans under `plansName` (default: the plans' own plans_name). */
export async function savePlans(
  db: StoreDB,
  datasetId: string,
  plans: Plans,
  plansName = plans.plans_name,
): Promise<void> {
  const tx = db.transaction(['datasets', 'plans'], 'readwrite');
  await requireDataset(tx, datasetId);
  const rec: PlansRecord = { datasetId, plansName, plans, savedAt: Date.now() };
  await Promise.all([tx.objectStore('plans').put(rec), tx.done]);
}

export async function loadPlans(
  db: StoreDB,
  datasetId: string,
  plansName: string,
): Promise<Plans | undefined> {
  const rec = (await db.get('plans', [datasetId, plansName])) as PlansRecord | undefined;
  return rec?.plans;
}

/** Names of the plans saved for a dataset, sorted. */
export async function listPlans(db: StoreDB, datasetId: string): Promise<string[]> {
  const keys = await db.getAllKeys('plans', datasetRange(datasetId));
  return keys.map((k) => k[1]);
}

/** Deletes one plans record; its preprocessed arrays are stale then, so they go too. */
export async function deletePlans(
  db: StoreDB,
  datasetId: string,
  plansName: string,
): Promise<void> {
  const tx = db.transaction(['plans', 'preprocessed'], 'readwrite');
  await Promise.all([
    tx.objectStore('plans').delete([datasetId, plansName]),
    tx
      .objectStore('preprocessed')
      .delete(IDBKeyRange.bound([datasetId, plansName], [datasetId, plansName, []])),
    tx.done,
  ]);
}
