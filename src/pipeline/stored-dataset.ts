// One site's data pipeline over a dataset in the browser store (IndexedDB): fingerprint →
// plan → preprocess, each stage saved so that a reload continues instead of recomputing.
// Platform-free (it only needs an IndexedDB): runs in the data worker and in Node tests.
import type { StoreDB } from '../store/db.ts';
import { getDataset, iterateCaseVolumes, listCases, loadCaseVolumes } from '../store/datasets.ts';
import { saveCaseFingerprint, saveDatasetFingerprint } from '../store/fingerprints.ts';
import { savePlans } from '../store/plans.ts';
import { savePreprocessed } from '../store/preprocessed.ts';
import { extractFingerprintFromCases, type ExtractProgress } from '../fingerprint/extract.ts';
import type { DatasetFingerprint } from '../fingerprint/types.ts';
import { planExperiment } from '../plan/planner.ts';
import type { DatasetJson, Plans } from '../plan/types.ts';
import { runCase } from '../preprocess/preprocess.ts';
import { stackChannels } from '../io/raw-dataset.ts';

export interface StageOptions {
  signal?: AbortSignal;
  onProgress?: (p: { done: number; total: number; caseId: string }) => void;
}

async function datasetOrThrow(db: StoreDB, datasetId: string) {
  const ds = await getDataset(db, datasetId);
  if (!ds) throw new Error(`dataset ${datasetId} is not in this browser (deleted?)`);
  return ds;
}

/** nnU-Net's dataset fingerprint of a stored dataset; per-case and dataset fingerprints are saved. */
export async function fingerprintStoredDataset(db: StoreDB, datasetId: string, o: StageOptions = {}): Promise<DatasetFingerprint> {
  const ds = await datasetOrThrow(db, datasetId);
  const r = await extractFingerprintFromCases(iterateCaseVolumes(db, datasetId), {
    total: ds.numCases,
    signal: o.signal,
    onCase: (caseId, fp) => saveCaseFingerprint(db, datasetId, caseId, fp),
    onProgress: (p: ExtractProgress) => o.onProgress?.({ done: p.done, total: ds.numCases, caseId: p.caseId }),
  });
  await saveDatasetFingerprint(db, datasetId, r.fingerprint);
  return r.fingerprint;
}

export interface PlanStoredOptions {
  /** Plans from a pooled (FFE) fingerprint instead of the local one. */
  fingerprint?: DatasetFingerprint;
  memoryBudgetMB?: number;
  plansName?: string;
}

/** Plans a stored dataset (nnU-Net's ExperimentPlanner) and saves them. */
export async function planStoredDataset(db: StoreDB, datasetId: string, fingerprint: DatasetFingerprint, o: Omit<PlanStoredOptions, 'fingerprint'> = {}): Promise<Plans> {
  const ds = await datasetOrThrow(db, datasetId);
  const dj = ds.datasetJson as DatasetJson | undefined;
  if (!dj) throw new Error(`${ds.name} has no dataset.json (imported as loose scans): it can be segmented, not trained on`);
  const plans = planExperiment(fingerprint, { ...dj, numTraining: ds.numCases }, {
    datasetName: ds.name,
    plansName: o.plansName,
    memoryBudgetMB: o.memoryBudgetMB,
  });
  await savePlans(db, datasetId, plans, plans.plans_name);
  return plans;
}

/** Runs nnU-Net's DefaultPreprocessor on every case for one configuration; saves each case. */
export async function preprocessStoredDataset(db: StoreDB, datasetId: string, plans: Plans, configuration: string, o: StageOptions = {}): Promise<number> {
  const ds = await datasetOrThrow(db, datasetId);
  const dj = ds.datasetJson as DatasetJson;
  const ids = (await listCases(db, datasetId)).map((c) => c.caseId);
  for (const [i, caseId] of ids.entries()) {
    if (o.signal?.aborted) throw new DOMException(`preprocessing cancelled after ${i} of ${ids.length} case(s)`, 'AbortError');
    const v = await loadCaseVolumes(db, datasetId, caseId);
    if (!v) throw new Error(`case ${caseId} disappeared from ${ds.name}`);
    const image = v.images.length === 1 ? v.images[0] : stackChannels(v.images);
    const pc = runCase(image, v.label ?? null, plans, configuration, dj, { seed: i });
    await savePreprocessed(db, datasetId, plans.plans_name, configuration, caseId, pc);
    o.onProgress?.({ done: i + 1, total: ids.length, caseId });
    // Let a cancel message reach the worker between cases.
    await new Promise((r) => setTimeout(r, 0));
  }
  return ids.length;
}
