// Fingerprints in the `fingerprints` store, key [datasetId, caseId]: one record per case (the
// CaseFingerprint summaries, so a later extraction can skip cases already done) and the dataset
// fingerprint (nnU-Net's dataset_fingerprint.json) under DATASET_FINGERPRINT_KEY; FFE-pooled
// fingerprints under ffeFingerprintKey(federationId). Writes fail for a dataset that does not exist.
import type { CaseFingerprint } from '../fingerprint/case.ts';
import type { DatasetFingerprint } from '../fingerprint/types.ts';
import { datasetRange, type StoreDB } from './db.ts';
import { requireDataset } from './require-dataset.ts';

/** caseId of the local dataset fingerprint ('' sorts before every case id). */
export const DATASET_FINGERPRINT_KEY = '';
/** caseId of the fingerprint a federation pooled (FFE); NUL never occurs in a file-derived case id. */
export const ffeFingerprintKey = (federationId: string): string => `\u0000ffe:${federationId}`;
const isCaseKey = (k: string) => k !== DATASET_FINGERPRINT_KEY && !k.startsWith('\u0000');

// Type aliases, not interfaces: records must fit the store's indexable DatasetOwned.
type CaseFingerprintRecord = {
  datasetId: string;
  caseId: string;
  kind: 'case';
  fingerprint: CaseFingerprint;
  savedAt: number;
};

type DatasetFingerprintRecord = {
  datasetId: string;
  caseId: string;
  kind: 'dataset';
  fingerprint: DatasetFingerprint;
  savedAt: number;
};

export async function saveCaseFingerprint(
  db: StoreDB,
  datasetId: string,
  caseId: string,
  fp: CaseFingerprint,
): Promise<void> {
  if (!isCaseKey(caseId)) throw new Error(`store: '${caseId}' is not a valid case id`);
  const tx = db.transaction(['datasets', 'fingerprints'], 'readwrite');
  await requireDataset(tx, datasetId);
  const rec: CaseFingerprintRecord = {
    datasetId,
    caseId,
    kind: 'case',
    fingerprint: fp,
    savedAt: Date.now(),
  };
  await Promise.all([tx.objectStore('fingerprints').put(rec), tx.done]);
}

export async function loadCaseFingerprint(
  db: StoreDB,
  datasetId: string,
  caseId: string,
): Promise<CaseFingerprint | undefined> {
  const rec = (await db.get('fingerprints', [datasetId, caseId])) as
    CaseFingerprintRecord | DatasetFingerprintRecord | undefined;
  return rec?.kind === 'case' ? rec.fingerprint : undefined;
}

/** Per-case fingerprints of a dataset, by case id. */
export async function loadCaseFingerprints(
  db: StoreDB,
  datasetId: string,
): Promise<Map<string, CaseFingerprint>> {
  const all = (await db.getAll('fingerprints', datasetRange(datasetId))) as unknown as (
    CaseFingerprintRecord | DatasetFingerprintRecord
  )[];
  return new Map(
    all
      .filter((r): r is CaseFingerprintRecord => r.kind === 'case')
      .map((r) => [r.caseId, r.fingerprint]),
  );
}

/** Saves the dataset fingerprint (local by default, or the FFE one of `federationId`). */
export async function saveDatasetFingerprint(
  db: StoreDB,
  datasetId: string,
  fp: DatasetFingerprint,
  federationId?: string,
): Promise<void> {
  const tx = db.transaction(['datasets', 'fingerprints'], 'readwrite');
  await requireDataset(tx, datasetId);
  const caseId =
    federationId === undefined ? DATASET_FINGERPRINT_KEY : ffeFingerprintKey(federationId);
  const rec: DatasetFingerprintRecord = {
    datasetId,
    caseId,
    kind: 'dataset',
    fingerprint: fp,
    savedAt: Date.now(),
  };
  await Promise.all([tx.objectStore('fingerprints').put(rec), tx.done]);
}

export async function loadDatasetFingerprint(
  db: StoreDB,
  datasetId: string,
  federationId?: string,
): Promise<DatasetFingerprint | undefined> {
  const caseId =
    federationId === undefined ? DATASET_FINGERPRINT_KEY : ffeFingerprintKey(federationId);
  const rec = (await db.get('fingerprints', [datasetId, caseId])) as
    DatasetFingerprintRecord | undefined;
  return rec?.kind === 'dataset' ? rec.fingerprint : undefined;
}
