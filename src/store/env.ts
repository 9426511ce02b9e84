// The browser services the store uses besides IndexedDB, injectable for tests. Each is optional:
// navigator.storage and navigator.locks are missing outside secure contexts (a workshop served over
// plain http on a LAN), and StorageManager.persist() exists only in windows, not in workers.

export interface StorageLike {
  estimate?: () => Promise<{ usage?: number; quota?: number }>;
  persist?: () => Promise<boolean>;
  persisted?: () => Promise<boolean>;
}

export interface LocksLike {
  request<T>(
    name: string,
    options: { ifAvailable?: boolean },
    cb: (lock: unknown) => Promise<T> | T,
  ): Promise<T>;
}

export interface StoreEnv {
  storage?: StorageLike;
  locks?: LocksLike;
  now?: () => number;
}

export function defaultEnv(): StoreEnv {
  const nav = (globalThis as { navigator?: { storage?: StorageLike; locks?: LocksLike } })
    .navigator;
  return { storage: nav?.storage, locks: nav?.locks };
}

export interface StorageEstimateInfo {
  usage?: number;
  quota?: number;
}

/** navigator.storage.estimate(), or undefined where unavailable or failing. */
export async function estimateStorage(env: StoreEnv): Promise<StorageEstimateInfo | undefined> {
  try {
    const e = await env.storage?.estimate?.();
    return e ? { usage: e.usage, quota: e.quota } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Asks for persistent storage so the browser does not evict a site's scans under pressure.
 * true/false: granted or not; undefined: the API is not available here (e.g. in a worker).
 */
export async function requestPersistence(env: StoreEnv): Promise<boolean | undefined> {
  const s = env.storage;
  try {
    if (s?.persisted && (await s.persisted())) return true;
    if (!s?.persist) return undefined;
    return await s.persist();
  } catch {
    return undefined;
  }
}

/** Takes a Web Lock and keeps it until the returned release is called; no-op without locks. */
export async function holdLock(env: StoreEnv, name: string): Promise<() => void> {
  const locks = env.locks;
  if (!locks) return () => {};
  return new Promise((acquired, reject) => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    locks
      .request(name, {}, () => {
        acquired(release);
        return held;
      })
      .catch(reject);
  });
}

/**
 * Takes a Web Lock only if nobody holds it, and keeps it until the returned release is called;
 * undefined when another tab (or this one) holds it. Without Web Locks: a no-op release.
 */
export async function tryHoldLock(env: StoreEnv, name: string): Promise<(() => void) | undefined> {
  const locks = env.locks;
  if (!locks) return () => {};
  return new Promise((answer, reject) => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    locks
      .request(name, { ifAvailable: true }, (lock) => {
        if (!lock) {
          answer(undefined);
          return undefined;
        }
        answer(release);
        return held;
      })
      .catch(reject);
  });
}
