// The IndexedDB database `fednnunet`: schema, upgrades, opening, and the sweep of crashed imports.
//
// Schema (version 5). Every store but `datasets`, `imports`, `identity`, `hostedFederations` and
// `egressLog`
// is keyed by an array whose first element is the dataset id, so "everything of a dataset" is
// one key range (`datasetRange`).
//
//   datasets      key id. One record per *visible* dataset (DatasetRecord): name (unique, index
//                 `byName`), dataset.json content, channel names, labels, numCases, bytes,
//                 createdAt, status 'complete'. A dataset exists for readers iff this record does.
//   imports       key importId. Journal of imports in progress (ImportJournal). Written before an
//                 import stages any data, deleted in the same transaction that makes the dataset
//                 visible; a leftover entry means a crashed import whose staged records are swept.
//   cases         key [datasetId, caseId]. Per-case headers (dims, spacing, affine, datatype,
//                 source header) of each channel and the label, plus validation problems.
//   volumes       key [datasetId, caseId, role], role 'image:0', 'image:1', … or 'label'. The voxel
//                 bytes (ArrayBuffer, or Blob) with their dtype; kept apart from `cases` so that
//                 listing cases never loads voxels.
//   fingerprints  key [datasetId, caseId]. Per-case fingerprints; caseId '' is the dataset
//                 fingerprint (nnU-Net's dataset_fingerprint.json), or the FFE-pooled one.
//   plans         key [datasetId, plansName]. nnU-Net plans (local, or federated from FFE).
//   preprocessed  key [datasetId, plansName, configuration, caseId]. Preprocessed case arrays
//                 (data, seg, properties) for one plans configuration.
//   checkpoints   key [datasetId, runId, tag]. Model weights + optimizer state of a training run
//                 ('latest', 'best', 'final', or a round number as tag).
//   fedState      key [datasetId, federationId]. Site state of a federation (round, relay, role),
//                 so a closed tab can rejoin.
//   identity      key id. This browser profile's site key (site-key.ts): one record 'site' holding
//                 a non-extractable ECDSA P-256 CryptoKeyPair and its fingerprint.
//   hostedFederations key code. The coordinator state of a workshop federation this tab hosts
//                 (fed/hosted-state.ts, kept by hosted-federation.ts): the relay's state.json as data plus the global weights
//                 as bytes, rewritten after every phase change and round, so a reloaded host tab
//                 resumes it.
//   egressLog     key seq (auto-increment). The privacy audit "What leaves this browser": one record
//                 per message this profile sent to a relay or host (egress-log.ts), so the audit
//                 survives reloads; bounded (the oldest go first).
//
// Dataset ids are generated per import (the import id), never reused: re-importing a name stages
// under a fresh id and swaps the `datasets` record at the end, so records of an import in progress
// never collide with the dataset it replaces.
//
// Keys hold strings and numbers only: `datasetRange` relies on arrays sorting above both.

import {
  openDB,
  wrap,
  type DBSchema,
  type IDBPDatabase,
  type IDBPTransaction,
  type StoreNames,
} from 'idb';
import type { DataTypeName, Volume } from '../io/volume.ts';
import { defaultEnv, type StoreEnv } from './env.ts';

export const DB_NAME = 'fednnunet';
export const DB_VERSION = 5;

/** Label map as in nnU-Net's dataset.json: name → value, or name → values (regions). */
export type LabelMap = Record<string, number | number[]>;

export interface DatasetRecord {
  id: string;
  name: string;
  /** The dataset.json content as imported (nnU-Net's schema; kept verbatim). */
  datasetJson: unknown;
  /** Channel names in channel order (dataset.json's channel_names '0', '1', …). */
  channelNames: string[];
  labels: LabelMap;
  numCases: number;
  /** Cases with at least one validation problem. */
  casesWithProblems: number;
  /** Voxel bytes stored in `volumes` for this dataset. */
  bytes: number;
  createdAt: number;
  status: 'complete';
}

/** A Volume without its voxels: what `cases` keeps per channel and label. */
export type VolumeHeader = Omit<Volume, 'data'> & { byteLength: number };

export interface CaseRecord {
  datasetId: string;
  caseId: string;
  images: VolumeHeader[];
  label?: VolumeHeader;
  problems: string[];
  bytes: number;
}

export type VolumeRole = `image:${number}` | 'label';

export interface VolumeRecord {
  datasetId: string;
  caseId: string;
  role: VolumeRole;
  dtype: DataTypeName;
  data: ArrayBuffer | Blob;
  byteLength: number;
}

export interface ImportJournal {
  importId: string;
  name: string;
  startedAt: number;
  /** Last write; lets a browser without Web Locks tell a crashed import from a live one. */
  touchedAt: number;
}

/** Later-stage records: owned by their stages; the store only knows they belong to a dataset. */
export interface DatasetOwned {
  datasetId: string;
  [k: string]: unknown;
}

export interface FednnunetDB extends DBSchema {
  datasets: { key: string; value: DatasetRecord; indexes: { byName: string } };
  imports: { key: string; value: ImportJournal };
  cases: { key: [string, string]; value: CaseRecord };
  volumes: { key: [string, string, string]; value: VolumeRecord };
  fingerprints: { key: [string, string]; value: DatasetOwned };
  plans: { key: [string, string]; value: DatasetOwned };
  preprocessed: { key: [string, string, string, string]; value: DatasetOwned };
  checkpoints: { key: [string, string, string | number]; value: DatasetOwned };
  fedState: { key: [string, string]; value: DatasetOwned };
  identity: { key: string; value: { id: string; [k: string]: unknown } };
  hostedFederations: { key: string; value: { code: string; [k: string]: unknown } };
  egressLog: { key: number; value: { seq?: number; [k: string]: unknown } };
}

export type StoreDB = IDBPDatabase<FednnunetDB>;
export type StoreName = StoreNames<FednnunetDB>;

/** Stores whose keys start with the dataset id. */
export const PER_DATASET_STORES = [
  'cases',
  'volumes',
  'fingerprints',
  'plans',
  'preprocessed',
  'checkpoints',
  'fedState',
] as const;

type UpgradeTx = IDBPTransaction<FednnunetDB, StoreName[], 'versionchange'>;
// Typed loosely: a migration sees the database as it was at its version, not the current schema.
type Migration = {
  version: number;
  up: (
    db: IDBPDatabase<unknown>,
    tx: IDBPTransaction<unknown, string[], 'versionchange'>,
  ) => void | Promise<void>;
};

// Applied in order, each once: a database at version v runs every migration with version > v.
// Only ever append; never edit a released migration.
export const MIGRATIONS: readonly Migration[] = [
  {
    // v1: the first layout; datasets, cases and voxels.
    version: 1,
    up(db) {
      db.createObjectStore('datasets', { keyPath: 'id' });
      db.createObjectStore('cases', { keyPath: ['datasetId', 'caseId'] });
      db.createObjectStore('volumes', { keyPath: ['datasetId', 'caseId', 'role'] });
    },
  },
  {
    // v2: import journal (atomic imports), unique names, status, and the later-stage stores.
    version: 2,
    async up(db, tx) {
      db.createObjectStore('imports', { keyPath: 'importId' });
      db.createObjectStore('fingerprints', { keyPath: ['datasetId', 'caseId'] });
      db.createObjectStore('plans', { keyPath: ['datasetId', 'plansName'] });
      db.createObjectStore('preprocessed', {
        keyPath: ['datasetId', 'plansName', 'configuration', 'caseId'],
      });
      db.createObjectStore('checkpoints', { keyPath: ['datasetId', 'runId', 'tag'] });
      db.createObjectStore('fedState', { keyPath: ['datasetId', 'federationId'] });
      const datasets = tx.objectStore('datasets');
      // v1 had no staging, so every v1 dataset is complete; v1 records lack status and bytes.
      // v1 allowed two datasets of one name; v2 names are unique, so later ones get ' (2)', ….
      const names = new Set<string>();
      for (let c = await datasets.openCursor(); c; c = await c.continue()) {
        const rec = c.value as Record<string, unknown>;
        let name = String(rec.name);
        for (let n = 2; names.has(name); n++) name = `${rec.name} (${n})`;
        names.add(name);
        let bytes = 0;
        let casesWithProblems = 0;
        const range = IDBKeyRange.bound([rec.id], [rec.id, []]);
        for (let k = await tx.objectStore('cases').openCursor(range); k; k = await k.continue()) {
          const cr = k.value as {
            images?: { byteLength?: number }[];
            label?: { byteLength?: number };
            problems?: unknown[];
          };
          bytes +=
            (cr.images ?? []).reduce((s, h) => s + (h.byteLength ?? 0), 0) +
            (cr.label?.byteLength ?? 0);
          if (cr.problems?.length) casesWithProblems++;
        }
        await c.update({ ...rec, name, status: 'complete', bytes, casesWithProblems });
      }
      datasets.createIndex('byName', 'name', { unique: true });
    },
  },
  {
    // v3: the site key of this browser profile (federation identity, issue 10).
    version: 3,
    up(db) {
      db.createObjectStore('identity', { keyPath: 'id' });
    },
  },
  {
    // v4: the coordinator state of a workshop federation hosted in this browser (host tab reload).
    version: 4,
    up(db) {
      db.createObjectStore('hostedFederations', { keyPath: 'code' });
    },
  },
  {
    // v5: the privacy audit ("What leaves this browser"), kept across reloads (issue 19).
    version: 5,
    up(db) {
      db.createObjectStore('egressLog', { keyPath: 'seq', autoIncrement: true });
    },
  },
];

export interface OpenOptions {
  /** IndexedDB factory; defaults to the global `indexedDB` (tests pass a fresh fake one). */
  factory?: IDBFactory;
  name?: string;
  env?: StoreEnv;
  /** Without Web Locks, an import journal untouched this long counts as crashed. */
  staleAfterMs?: number;
  /** Open without sweeping crashed imports (tests; tools inspecting a database). */
  skipSweep?: boolean;
}

export const DEFAULT_STALE_AFTER_MS = 10 * 60_000;

/** Opens (creating or upgrading) the database, then sweeps records left by crashed imports. */
export async function openStore(opts: OpenOptions = {}): Promise<StoreDB> {
  const name = opts.name ?? DB_NAME;
  const upgrade = (db: StoreDB, oldVersion: number, newVersion: number | null, tx: UpgradeTx) => {
    const pending = MIGRATIONS.filter(
      (m) => m.version > oldVersion && m.version <= (newVersion ?? DB_VERSION),
    );
    const run = async () => {
      // Awaiting only IDB requests (and resolved promises) keeps the upgrade transaction alive.
      for (const m of pending)
        await m.up(
          db as unknown as IDBPDatabase<unknown>,
          tx as unknown as IDBPTransaction<unknown, string[], 'versionchange'>,
        );
    };
    // A failing migration aborts the upgrade: the database stays at its old version, intact.
    run().catch((e) => {
      console.error('fednnunet store: migration failed', e);
      try {
        tx.abort();
      } catch {
        /* already finished */
      }
    });
  };
  let db: StoreDB;
  if (opts.factory) {
    // idb's openDB always uses the global indexedDB; open through the given factory and wrap.
    const request = opts.factory.open(name, DB_VERSION);
    request.addEventListener('upgradeneeded', (ev) => {
      upgrade(
        wrap(request.result) as unknown as StoreDB,
        ev.oldVersion,
        ev.newVersion,
        wrap(request.transaction!) as unknown as UpgradeTx,
      );
    });
    db = (await wrap(request)) as unknown as StoreDB;
  } else {
    db = await openDB<FednnunetDB>(name, DB_VERSION, { upgrade });
  }
  // Another tab upgrading the schema must not be blocked by this connection.
  db.addEventListener('versionchange', () => db.close());
  if (!opts.skipSweep)
    await sweepCrashedImports(
      db,
      opts.env ?? defaultEnv(),
      opts.staleAfterMs ?? DEFAULT_STALE_AFTER_MS,
    );
  return db;
}

/** Key range of every record of a dataset in a per-dataset store. */
export function datasetRange(datasetId: string): IDBKeyRange {
  return IDBKeyRange.bound([datasetId], [datasetId, []]);
}

/** Deletes every per-dataset record of `datasetId` inside `tx` (which must cover all those stores). */
export async function deleteDatasetRecords(
  tx: IDBPTransaction<FednnunetDB, StoreName[], 'readwrite'>,
  datasetId: string,
): Promise<void> {
  const range = datasetRange(datasetId);
  await Promise.all(PER_DATASET_STORES.map((s) => tx.objectStore(s).delete(range)));
}

/** Lock name an import holds while it runs, so other tabs do not sweep it. */
export function importLockName(importId: string): string {
  return `fednnunet:import:${importId}`;
}

/**
 * Deletes the staged records of imports that died (tab closed, crash) and their journal entries.
 * With Web Locks an import is dead iff nobody holds its lock; without, iff its journal entry has
 * not been touched for `staleAfterMs`. Returns the swept import ids.
 */
export async function sweepCrashedImports(
  db: StoreDB,
  env: StoreEnv,
  staleAfterMs = DEFAULT_STALE_AFTER_MS,
): Promise<string[]> {
  const entries = await db.getAll('imports');
  const swept: string[] = [];
  const now = (env.now ?? Date.now)();
  for (const e of entries) {
    const sweep = async () => {
      if (await dropStaging(db, e.importId)) swept.push(e.importId);
    };
    if (env.locks) {
      await env.locks.request(importLockName(e.importId), { ifAvailable: true }, async (lock) => {
        if (lock) await sweep();
      });
    } else if (now - e.touchedAt >= staleAfterMs) {
      await sweep();
    }
  }
  return swept;
}

/** Removes an import's staged records and journal entry in one transaction; false if already gone. */
export async function dropStaging(db: StoreDB, importId: string): Promise<boolean> {
  const tx = db.transaction(['imports', 'datasets', ...PER_DATASET_STORES], 'readwrite');
  const done = tx.done.catch((e: unknown) => e);
  const journal = await tx.objectStore('imports').get(importId);
  // A committed import has no journal entry; its id is a visible dataset, never to be swept.
  if (!journal || (await tx.objectStore('datasets').get(importId))) {
    await done;
    return false;
  }
  await deleteDatasetRecords(tx, importId);
  await tx.objectStore('imports').delete(importId);
  const err = await done;
  if (err) throw err;
  return true;
}
