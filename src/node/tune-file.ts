// The kernel autotune cache in Node: one JSON file of { key: TuneRecord }, by default under the
// OS cache directory ($XDG_CACHE_HOME or ~/.cache, fednnunet/kernel-tune.json; %LOCALAPPDATA%
// on Windows), or FEDNNUNET_KERNEL_TUNE_CACHE. A missing or unreadable file is an empty cache
// (the autotune runs again and rewrites it); writes go through a temporary file and rename.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TuneRecord, TuneStore } from '../gpu/tune-store.ts';

export function defaultTuneFile(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FEDNNUNET_KERNEL_TUNE_CACHE) return env.FEDNNUNET_KERNEL_TUNE_CACHE;
  const base =
    process.platform === 'win32'
      ? (env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'))
      : (env.XDG_CACHE_HOME ?? join(homedir(), '.cache'));
  return join(base, 'fednnunet', 'kernel-tune.json');
}

async function readAll(path: string): Promise<Record<string, TuneRecord>> {
  try {
    const v: unknown = JSON.parse(await readFile(path, 'utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, TuneRecord>) : {};
  } catch {
    return {};
  }
}

export function fileTuneStore(path = defaultTuneFile()): TuneStore {
  return {
    where: path,
    async get(key) {
      return (await readAll(path))[key];
    },
    async put(key, record) {
      const all = await readAll(path);
      all[key] = record;
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(all, null, 2));
      await rename(tmp, path);
    },
  };
}
