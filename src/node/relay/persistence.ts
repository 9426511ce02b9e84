// Relay state on disk: state.json (everything but tensor bytes) and global.bin (the global
// weights payload). Written atomically (temp file + rename) after every phase change and
// every closed round, so a relay killed with SIGKILL restarts from the last completed round.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CoordinatorSnapshot } from '../../fed/coordinator.ts';

function atomicWrite(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

export function saveSnapshot(dir: string, s: CoordinatorSnapshot): void {
  mkdirSync(dir, { recursive: true });
  const { global, ...rest } = s;
  // Weights first: state.json names the entries, so it must never point at a missing payload.
  if (global) atomicWrite(join(dir, 'global.bin'), global.payload);
  atomicWrite(join(dir, 'state.json'), JSON.stringify({ ...rest, globalEntries: global?.entries ?? null }, null, 1));
}

export function loadSnapshot(dir: string): CoordinatorSnapshot | undefined {
  const statePath = join(dir, 'state.json');
  if (!existsSync(statePath)) return undefined;
  const raw = JSON.parse(readFileSync(statePath, 'utf8')) as Omit<CoordinatorSnapshot, 'global'> & { globalEntries: CoordinatorSnapshot['global'] extends infer G ? G extends { entries: infer E } ? E | null : never : never };
  const { globalEntries, ...rest } = raw;
  if (!globalEntries) return rest;
  const payload = new Uint8Array(readFileSync(join(dir, 'global.bin')));
  return { ...rest, global: { entries: globalEntries, payload } };
}
