// Shared fixtures for the store tests: fresh fake IndexedDB per test, synthetic volumes, a dump of
// every object store to compare whole-database states.
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { VOXEL_ARRAY, type DataTypeName, type Volume } from '../../src/io/volume.ts';
import { openStore, type OpenOptions, type StoreDB } from '../../src/store/db.ts';
import type { CaseInput } from '../../src/store/datasets.ts';
import type { StoreEnv } from '../../src/store/env.ts';
import { mulberry32 } from '../../src/util/rng.ts';

export const noEnv: StoreEnv = {};

export async function freshStore(
  opts: OpenOptions = {},
): Promise<{ db: StoreDB; factory: IDBFactory }> {
  const factory = opts.factory ?? new IDBFactory();
  const db = await openStore({ env: noEnv, ...opts, factory });
  return { db, factory };
}

const ARRAYS = VOXEL_ARRAY;

export function makeVolume(
  seed: number,
  dtype: DataTypeName = 'float32',
  dims: [number, number, number] = [5, 4, 3],
): Volume {
  const n = dims[0] * dims[1] * dims[2];
  const data = new ARRAYS[dtype](n);
  const r = mulberry32(seed);
  const float = dtype.startsWith('float');
  for (let i = 0; i < n; i++)
    data[i] = float
      ? (r() - 0.5) * 2000
      : Math.floor(r() * 200) - (dtype.startsWith('u') ? 0 : 100);
  return {
    data,
    dims,
    channels: 1,
    spacing: [0.5 + seed, 0.75, 2.5],
    affine: [0.5 + seed, 0, 0, -10, 0, 0.75, 0, 20, 0, 0, 2.5, -30 - seed, 0, 0, 0, 1],
    datatype: dtype,
  };
}

export function makeCase(i: number, channels = 1, withLabel = true): CaseInput {
  return {
    caseId: `case_${String(i).padStart(3, '0')}`,
    images: Array.from({ length: channels }, (_, c) =>
      makeVolume(100 * i + c, c === 0 ? 'float32' : 'int16'),
    ),
    label: withLabel ? makeVolume(100 * i + 99, 'uint8') : undefined,
    problems: i % 2 ? [`case ${i}: spacing differs between image and label`] : [],
  };
}

export function caseBytes(c: CaseInput): number {
  return [...c.images, ...(c.label ? [c.label] : [])].reduce((s, v) => s + v.data.byteLength, 0);
}

/** Yields cases; `hooks` run before yielding case i (0-based) and may throw or wait. */
export async function* caseStream(
  cases: CaseInput[],
  hooks: Record<number, () => void | Promise<void>> = {},
): AsyncGenerator<CaseInput> {
  for (let i = 0; i < cases.length; i++) {
    await hooks[i]?.();
    yield cases[i];
  }
}

export const meta = (name: string, channels = 1) => ({
  name,
  datasetJson: {
    name,
    channel_names: Object.fromEntries(
      Array.from({ length: channels }, (_, i) => [String(i), `ch${i}`]),
    ),
    labels: { background: 0, fg: 1 },
  },
  channelNames: Array.from({ length: channels }, (_, i) => `ch${i}`),
  labels: { background: 0, fg: 1 },
});

function plain(v: unknown): unknown {
  if (v instanceof ArrayBuffer) return `bytes:${Buffer.from(v).toString('base64')}`;
  if (ArrayBuffer.isView(v))
    return `${v.constructor.name}:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')}`;
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** Every key and value of every object store, with bytes as base64, for whole-state comparison. */
export async function dump(db: StoreDB): Promise<Record<string, [unknown, unknown][]>> {
  const out: Record<string, [unknown, unknown][]> = {};
  const names = [...db.objectStoreNames];
  const tx = db.transaction(names);
  for (const name of names) {
    const store = tx.objectStore(name);
    const [keys, values] = await Promise.all([store.getAllKeys(), store.getAll()]);
    out[name] = keys.map((k, i) => [k, plain(values[i])]);
  }
  return out;
}

export function recordCount(d: Record<string, unknown[]>): number {
  return Object.values(d).reduce((s, v) => s + v.length, 0);
}
