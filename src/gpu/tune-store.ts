// Where the per-adapter kernel autotune result (src/model/kernels/autotune.ts) is kept between
// sessions: IndexedDB in a browser (its own small database, so the app's schema is untouched),
// a JSON file in Node (src/node/tune-file.ts registers it from installNodeWebGPU). The key names
// the adapter and the kernel version, so a driver or GPU change, or new kernels, tune again.
import { openDB } from 'idb';
import type { AdapterFacts } from './probe.ts';

export interface TuneRecord {
  /** Variant per pass, e.g. { forward: 'tiled', dx: 'regblock', dw: 'tiled' }. */
  choice: Record<string, string>;
  /** Median ms per pass and variant, summed over the tuning shapes. */
  ms: Record<string, Record<string, number>>;
  /** ISO time of the measurement. */
  at: string;
}

export interface TuneStore {
  get(key: string): Promise<TuneRecord | undefined>;
  put(key: string, record: TuneRecord): Promise<void>;
  /** Where it lives, for messages ("IndexedDB fednnunet-kernel-tune", a file path). */
  where: string;
}

/** Cache key: adapter vendor / architecture / device / description + kernel version. */
export function tuneKey(a: Partial<AdapterFacts>, kernelVersion: number): string {
  return [a.vendor, a.architecture, a.device, a.description]
    .map((s) => (s ?? '').trim())
    .concat(`kernels v${kernelVersion}`)
    .join(' | ');
}

const IDB_NAME = 'fednnunet-kernel-tune';
const IDB_STORE = 'tune';

/** The browser's store (IndexedDB). */
export function indexedDbTuneStore(): TuneStore {
  const open = () =>
    openDB(IDB_NAME, 1, {
      upgrade(db) {
        db.createObjectStore(IDB_STORE);
      },
    });
  return {
    where: `IndexedDB ${IDB_NAME}`,
    async get(key) {
      const db = await open();
      try {
        return (await db.get(IDB_STORE, key)) as TuneRecord | undefined;
      } finally {
        db.close();
      }
    },
    async put(key, record) {
      const db = await open();
      try {
        await db.put(IDB_STORE, record, key);
      } finally {
        db.close();
      }
    },
  };
}

/** An in-memory store (tests; environments with neither IndexedDB nor a file system). */
export function memoryTuneStore(): TuneStore {
  const m = new Map<string, TuneRecord>();
  return {
    where: 'memory',
    get: async (k) => m.get(k),
    put: async (k, r) => void m.set(k, r),
  };
}

let registered: TuneStore | undefined;

/** Node entry points register the file store here; browsers default to IndexedDB. */
export function setDefaultTuneStore(s: TuneStore | undefined): void {
  registered = s;
}

export function defaultTuneStore(): TuneStore {
  if (registered) return registered;
  if (typeof indexedDB !== 'undefined') return (registered = indexedDbTuneStore());
  return (registered = memoryTuneStore());
}
