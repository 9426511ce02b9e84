// Later-stage records (fingerprints, plans, preprocessed arrays) may only be written for a visible
// dataset: otherwise a write racing a delete would leave records nothing owns.

/** The part of a readwrite transaction over `datasets` (and others) that the check needs. */
interface TxWithDatasets {
  objectStore(name: 'datasets'): { getKey(key: string): Promise<unknown> };
  abort(): void;
  done: Promise<void>;
}

export class DatasetNotFoundError extends Error {
  override name = 'DatasetNotFoundError';
  constructor(readonly datasetId: string) {
    super(`store: no dataset with id '${datasetId}' (deleted, or never imported)`);
  }
}

/** Throws (aborting `tx`) unless the dataset exists; `tx` must cover the `datasets` store. */
export async function requireDataset(tx: TxWithDatasets, datasetId: string): Promise<void> {
  if ((await tx.objectStore('datasets').getKey(datasetId)) === undefined) {
    tx.abort();
    await tx.done.catch(() => {});
    throw new DatasetNotFoundError(datasetId);
  }
}
