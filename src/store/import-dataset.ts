// Importing a dataset, all or nothing from the user's view.
//
// IndexedDB transactions end at the first await on anything but IDB (parsing the next case), so one
// transaction cannot hold a whole import. Instead: a journal entry names the import, each case is
// written in its own transaction under the import's fresh id (invisible: no `datasets` record has
// it), and one small final transaction adds the `datasets` record, removes the journal entry and
// deletes the dataset of the same name it replaces, if any. Failure or cancel deletes the staged
// records; a crash leaves the journal entry, and the next `openStore` sweeps them.

import type { Volume } from '../io/volume.ts';
import {
  PER_DATASET_STORES,
  deleteDatasetRecords,
  dropStaging,
  importLockName,
  type CaseRecord,
  type DatasetRecord,
  type ImportJournal,
  type LabelMap,
  type StoreDB,
  type VolumeRecord,
  type VolumeRole,
} from './db.ts';
import { defaultEnv, estimateStorage, holdLock, requestPersistence, type StoreEnv } from './env.ts';
import { StoreQuotaError, isQuotaError } from './errors.ts';
import { splitVolume } from './volume-record.ts';

export interface DatasetMeta {
  /** The dataset's name (e.g. nnU-Net's 'Dataset004_Hippocampus'); importing a name again replaces it. */
  name: string;
  datasetJson?: unknown;
  channelNames: string[];
  labels: LabelMap;
}

export interface CaseInput {
  caseId: string;
  /** One volume per channel, in channelNames order. */
  images: Volume[];
  label?: Volume;
  /** Validation problems found while reading the case (kept with it; not fatal). */
  problems: string[];
}

/**
 * Progress of an import. `staging`: after each case is stored (casesDone counts stored cases);
 * `committing`: all cases stored, making the dataset visible; `done`: visible; `rolling-back`:
 * failed or cancelled, deleting what was staged (the promise then rejects).
 */
export interface ImportProgress {
  phase: 'staging' | 'committing' | 'done' | 'rolling-back';
  casesDone: number;
  casesTotal?: number;
  bytesWritten: number;
}

export interface ImportOptions {
  onProgress?: (p: ImportProgress) => void;
  signal?: AbortSignal;
  /** Number of cases expected (for progress), e.g. dataset.json's numTraining. */
  casesTotal?: number;
  /** Voxel bytes expected (for the quota message), when the reader can tell. */
  bytesExpected?: number;
  env?: StoreEnv;
}

export interface ImportResult {
  dataset: DatasetRecord;
  /** Id of the dataset of the same name this import replaced. */
  replacedId?: string;
  /** Persistent storage granted (true/false), or undefined where the API is missing (workers). */
  persisted: boolean | undefined;
}

export async function importDataset(
  db: StoreDB,
  meta: DatasetMeta,
  cases: AsyncIterable<CaseInput>,
  opts: ImportOptions = {},
): Promise<ImportResult> {
  const { signal, onProgress, casesTotal } = opts;
  const env = opts.env ?? defaultEnv();
  const now = env.now ?? Date.now;
  if (!meta.name) throw new TypeError('importDataset: meta.name is empty');
  if (meta.channelNames.length < 1) throw new TypeError('importDataset: no channel names');
  signal?.throwIfAborted();

  const importId = newDatasetId(now());
  const release = await holdLock(env, importLockName(importId));
  const journal: ImportJournal = { importId, name: meta.name, startedAt: now(), touchedAt: now() };
  let casesDone = 0;
  let casesWithProblems = 0;
  let bytesWritten = 0;
  let pendingBytes = 0;
  const progress = (phase: ImportProgress['phase']) =>
    onProgress?.({ phase, casesDone, casesTotal, bytesWritten });
  let dataset: DatasetRecord;
  let replacedId: string | undefined;
  try {
    await db.put('imports', journal);
    try {
      const seen = new Set<string>();
      const it = cases[Symbol.asyncIterator]();
      for (;;) {
        const r = await raceAbort(it.next(), signal);
        if (r.done) break;
        try {
          const c = r.value;
          checkCase(c, meta.channelNames.length, seen);
          const staged = stageCase(importId, c);
          pendingBytes = staged.bytes;
          journal.touchedAt = now();
          await writeCase(db, staged, journal);
          bytesWritten += pendingBytes;
          pendingBytes = 0;
          casesDone++;
          if (c.problems.length) casesWithProblems++;
          progress('staging');
          signal?.throwIfAborted();
        } catch (e) {
          // Stop a generator we are leaving early (it may hold files open); its own errors are moot.
          Promise.resolve(it.return?.()).catch(() => {});
          throw e;
        }
      }
      signal?.throwIfAborted();
      progress('committing');
      dataset = {
        id: importId,
        name: meta.name,
        datasetJson: meta.datasetJson ?? null,
        channelNames: [...meta.channelNames],
        labels: meta.labels,
        numCases: casesDone,
        casesWithProblems,
        bytes: bytesWritten,
        createdAt: now(),
        status: 'complete',
      };
      replacedId = await commit(db, dataset);
    } catch (e) {
      try {
        progress('rolling-back');
      } catch {
        /* a failing observer must not stop the rollback */
      }
      // If this fails too (database closed), the journal entry stays and the next open sweeps.
      await dropStaging(db, importId).catch(() => {});
      if (isQuotaError(e)) {
        throw new StoreQuotaError(
          bytesWritten + pendingBytes,
          opts.bytesExpected,
          await estimateStorage(env),
          { cause: e },
        );
      }
      throw e;
    }
  } finally {
    release();
  }
  // Committed: from here on nothing undoes the import.
  const persisted = await requestPersistence(env);
  progress('done');
  return { dataset, replacedId, persisted };
}

function checkCase(c: CaseInput, channels: number, seen: Set<string>): void {
  if (!c.caseId) throw new TypeError('importDataset: a case has an empty caseId');
  if (seen.has(c.caseId)) throw new Error(`importDataset: case '${c.caseId}' appears twice`);
  seen.add(c.caseId);
  if (c.images.length !== channels)
    throw new Error(
      `importDataset: case '${c.caseId}' has ${c.images.length} images, the dataset has ${channels} channels`,
    );
}

type StagedCase = { record: CaseRecord; volumes: VolumeRecord[]; bytes: number };

/** Splits a case into its `cases` record and `volumes` records. */
function stageCase(datasetId: string, c: CaseInput): StagedCase {
  const split = (v: Volume, role: VolumeRole) => {
    const s = splitVolume(v);
    return {
      header: s.header,
      volume: {
        datasetId,
        caseId: c.caseId,
        role,
        dtype: s.dtype,
        data: s.bytes,
        byteLength: s.bytes.byteLength,
      },
    };
  };
  const images = c.images.map((v, i) => split(v, `image:${i}`));
  const label = c.label ? split(c.label, 'label') : undefined;
  const volumes = [...images, ...(label ? [label] : [])].map((p) => p.volume);
  const bytes = volumes.reduce((s, v) => s + v.byteLength, 0);
  const record: CaseRecord = {
    datasetId,
    caseId: c.caseId,
    images: images.map((p) => p.header),
    label: label?.header,
    problems: [...c.problems],
    bytes,
  };
  return { record, volumes, bytes };
}

/** Writes one case (header + voxels) and touches the journal, in one transaction. */
async function writeCase(db: StoreDB, staged: StagedCase, journal: ImportJournal): Promise<void> {
  const tx = db.transaction(['cases', 'volumes', 'imports'], 'readwrite');
  await runTx(tx, async (ops) => {
    // Staged records exist only while their journal entry does: a sweep removes both at once.
    if (!(await tx.objectStore('imports').get(journal.importId)))
      throw sweptError(journal.importId);
    ops.push(tx.objectStore('cases').put(staged.record));
    for (const v of staged.volumes) ops.push(tx.objectStore('volumes').put(v));
    ops.push(tx.objectStore('imports').put(journal));
  });
}

/** Adds the dataset record, drops the journal entry and the same-named dataset, atomically. */
async function commit(db: StoreDB, dataset: DatasetRecord): Promise<string | undefined> {
  const tx = db.transaction(['datasets', 'imports', ...PER_DATASET_STORES], 'readwrite');
  let replaced: string | undefined;
  await runTx(tx, async (ops) => {
    const imports = tx.objectStore('imports');
    // A sweep (another tab deciding this import was dead) must not be undone into a dataset.
    if (!(await imports.get(dataset.id))) throw sweptError(dataset.id);
    const datasets = tx.objectStore('datasets');
    const old = await datasets.index('byName').get(dataset.name);
    if (old) {
      replaced = old.id;
      ops.push(deleteDatasetRecords(tx, old.id), datasets.delete(old.id));
    }
    ops.push(datasets.add(dataset), imports.delete(dataset.id));
  });
  return replaced;
}

function sweptError(importId: string): Error {
  return new Error(
    `importDataset: import ${importId} was swept (taken for crashed) before it completed`,
  );
}

type Tx = { abort(): void; done: Promise<void>; error: DOMException | null };

/**
 * Runs `issue`, which issues requests on `tx` and collects their promises, and waits until `tx`
 * commits. Every request promise gets a handler even when issuing throws halfway, so a failed
 * transaction leaves no unhandled rejections behind.
 */
async function runTx(
  tx: Tx,
  issue: (ops: Promise<unknown>[]) => void | Promise<void>,
): Promise<void> {
  const ops: Promise<unknown>[] = [tx.done];
  try {
    await issue(ops);
    await Promise.all(ops);
  } catch (e) {
    for (const p of ops) p.catch(() => {});
    throw await settleFailed(tx, e);
  }
}

/**
 * Aborts a failed transaction if still running and waits for it to end. Returns the error to throw:
 * the transaction's own error when it is a quota error (browsers often report quota at commit, as
 * an abort whose requests fail with a bare AbortError), else the original one.
 */
async function settleFailed(tx: Tx, e: unknown): Promise<unknown> {
  try {
    tx.abort();
  } catch {
    /* already aborted or finished */
  }
  await tx.done.catch(() => {});
  return isQuotaError(tx.error) && !isQuotaError(e) ? tx.error : e;
}

/** Resolves as `p`, or rejects with the signal's reason as soon as it aborts. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** A fresh dataset id; crypto.getRandomValues works outside secure contexts too (randomUUID does not). */
function newDatasetId(now: number): string {
  const r = crypto.getRandomValues(new Uint32Array(2));
  return `ds-${now.toString(36)}-${r[0].toString(36)}${r[1].toString(36)}`;
}
