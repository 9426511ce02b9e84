// Relay state on disk: state.json (everything but tensor bytes) and global.bin (the global
// weights payload). Written atomically (temp file + rename) after every phase change and
// every closed round, so a relay killed with SIGKILL restarts from the last completed round.
// The files are the operator's alone (mode 0600: they hold the sites' keys and the model), and
// a restored state is checked field by field, every error naming the file it came from.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CoordinatorSnapshot, Phase } from '../../fed/coordinator.ts';
import { decodeWeights, type TensorEntry } from '../../model/weights-codec.ts';
import { isFederationConfig } from '../../fed/protocol.ts';
import { errorMessage } from '../../util/errors.ts';

function atomicWrite(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode: 0o600 });
  chmodSync(tmp, 0o600); // a leftover temp file keeps its old mode through writeFileSync
  renameSync(tmp, path);
}

export function saveSnapshot(dir: string, s: CoordinatorSnapshot): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { global, ...rest } = s;
  // Weights first: state.json names the entries, so it must never point at a missing payload.
  if (global) atomicWrite(join(dir, 'global.bin'), global.payload);
  atomicWrite(
    join(dir, 'state.json'),
    JSON.stringify({ ...rest, globalEntries: global?.entries ?? null }, null, 1),
  );
}

/** A state file that cannot be restored; the message names the file and what is wrong. */
export class StateFileError extends Error {}

const PHASES: readonly Phase[] = ['join', 'fingerprint', 'spec', 'init', 'rounds', 'done'];
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export function loadSnapshot(dir: string): CoordinatorSnapshot | undefined {
  const statePath = join(dir, 'state.json');
  if (!existsSync(statePath)) return undefined;
  const bad = (what: string) =>
    new StateFileError(
      `${statePath}: ${what}; the relay cannot continue this federation from it (restore a backup, or start a new federation with another --data-dir)`,
    );
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(statePath, 'utf8'));
  } catch (e) {
    throw bad(`not readable as JSON (${errorMessage(e)})`);
  }
  if (!isObj(raw)) throw bad('not a JSON object');
  const config = raw.config;
  const expected = isObj(config) ? config.expectedSites : undefined;
  if (!isFederationConfig(config) || !isCount(expected) || expected < 1)
    throw bad('invalid federation config');
  if (!PHASES.includes(raw.phase as Phase)) throw bad(`unknown phase ${JSON.stringify(raw.phase)}`);
  if (!isCount(raw.round) || raw.round > config.rounds)
    throw bad(`round ${JSON.stringify(raw.round)} is not in 0..${config.rounds}`);
  if (!Array.isArray(raw.sites)) throw bad('no site list');
  const ids = new Set<string>();
  for (const [i, site] of raw.sites.entries()) {
    if (
      !isObj(site) ||
      typeof site.siteId !== 'string' ||
      typeof site.siteName !== 'string' ||
      !isCount(site.numCases)
    )
      throw bad(`site ${i} is not a valid site record`);
    if (ids.has(site.siteId)) throw bad(`site id ${site.siteId} appears twice`);
    ids.add(site.siteId);
    if (
      site.key !== undefined &&
      (!isObj(site.key) ||
        typeof site.key.fingerprint !== 'string' ||
        typeof site.key.spki !== 'string')
    )
      throw bad(`site ${site.siteId} has an invalid key binding`);
  }
  if (raw.phase !== 'join' && raw.sites.length === 0)
    throw bad(`phase ${raw.phase as string} with no sites`);
  if (!Array.isArray(raw.history)) throw bad('no round history');
  const { globalEntries, ...rest } = raw as Omit<CoordinatorSnapshot, 'global'> & {
    globalEntries?: unknown;
  };
  if (globalEntries === null || globalEntries === undefined) return rest;
  if (!Array.isArray(globalEntries)) throw bad('invalid global weight entries');
  const binPath = join(dir, 'global.bin');
  let payload: Uint8Array;
  try {
    payload = new Uint8Array(readFileSync(binPath));
  } catch (e) {
    throw new StateFileError(
      `${binPath}: ${statePath} names global weights, but they cannot be read (${errorMessage(e)})`,
    );
  }
  try {
    decodeWeights(globalEntries as TensorEntry[], payload);
  } catch (e) {
    throw new StateFileError(
      `${binPath}: does not hold the global weights ${statePath} describes (${errorMessage(e)})`,
    );
  }
  return { ...rest, global: { entries: globalEntries as TensorEntry[], payload } };
}

/**
 * The settings in which `given` (this start's options) differs from the federation stored in the
 * data dir, as "name: stored X, given Y" lines. Every setting counts: a relay that silently ran the
 * stored plain config under a secure-aggregation banner would mislead everyone who joined.
 */
export function configDifferences(
  stored: CoordinatorSnapshot['config'],
  given: CoordinatorSnapshot['config'],
): string[] {
  // JSON form: a restored config went through JSON, so an `undefined` field equals an absent one.
  const a = JSON.parse(JSON.stringify(stored)) as Record<string, unknown>;
  const b = JSON.parse(JSON.stringify(given)) as Record<string, unknown>;
  const show = (v: unknown) => (v === undefined ? 'none' : JSON.stringify(v));
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k]))
      out.push(`${k}: stored ${show(a[k])}, given ${show(b[k])}`);
  }
  return out;
}
