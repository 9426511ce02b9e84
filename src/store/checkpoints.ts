// Training checkpoints in the `checkpoints` store, key [datasetId, runId, tag]. A run id names one
// training run of a dataset (e.g. 'local:3d_fullres' or 'fed:<federation>'); tag 'latest' is
// rewritten after every epoch so a reloaded tab resumes from the last completed epoch.
import type { StoreDB } from './db.ts';
import { requireDataset } from './require-dataset.ts';

export interface CheckpointInfo {
  datasetId: string;
  runId: string;
  tag: string;
  epoch: number;
  epochs: number;
  configuration: string;
  bytes: number;
  savedAt: number;
}

type CheckpointRecord = CheckpointInfo & { data: Uint8Array };

export async function saveCheckpoint(
  db: StoreDB,
  info: Omit<CheckpointInfo, 'bytes' | 'savedAt'>,
  data: Uint8Array,
): Promise<void> {
  const rec: CheckpointRecord = {
    ...info,
    bytes: data.byteLength,
    savedAt: Date.now(),
    data: data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice(),
  };
  const tx = db.transaction(['datasets', 'checkpoints'], 'readwrite');
  await requireDataset(tx, info.datasetId);
  await Promise.all([tx.objectStore('checkpoints').put(rec as never), tx.done]);
}

export async function loadCheckpoint(
  db: StoreDB,
  datasetId: string,
  runId: string,
  tag = 'latest',
): Promise<{ info: CheckpointInfo; data: Uint8Array } | undefined> {
  const rec = (await db.get('checkpoints', [datasetId, runId, tag])) as unknown as
    CheckpointRecord | undefined;
  if (!rec) return undefined;
  const { data, ...info } = rec;
  return { info, data };
}

export async function deleteCheckpoint(
  db: StoreDB,
  datasetId: string,
  runId: string,
  tag: string,
): Promise<void> {
  await db.delete('checkpoints', [datasetId, runId, tag]);
}
