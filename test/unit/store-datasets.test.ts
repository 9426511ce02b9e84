import { afterEach, describe, expect, it, vi } from 'vitest';
import { IDBObjectStore, IDBTransaction } from 'fake-indexeddb';
import type { Volume } from '../../src/io/volume.ts';
import {
  deleteDataset,
  findDatasetByName,
  getCase,
  getDataset,
  importDataset,
  listCases,
  listDatasets,
  loadCaseVolumes,
  storageUsage,
  type ImportProgress,
} from '../../src/store/datasets.ts';
import { StoreQuotaError } from '../../src/store/errors.ts';
import {
  caseBytes,
  caseStream,
  dump,
  freshStore,
  makeCase,
  makeVolume,
  meta,
  noEnv,
  recordCount,
} from './store-helpers.ts';

afterEach(() => vi.restoreAllMocks());

function expectSameVolume(got: Volume, want: Volume) {
  expect(got.data.constructor).toBe(want.data.constructor);
  expect(
    Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength).equals(
      Buffer.from(want.data.buffer, want.data.byteOffset, want.data.byteLength),
    ),
  ).toBe(true);
  const { data: _g, ...g } = got;
  const { data: _w, ...w } = want;
  expect(g).toEqual(w);
}

describe('store: import and read back', () => {
  it('imports cases, lists them and loads volumes back bit-exact with the same array class', async () => {
    const { db } = await freshStore();
    const cases = [makeCase(0, 2), makeCase(1, 2), makeCase(2, 2, false)];
    // A view into a larger buffer (as a parser slicing a file would give) and a source header.
    const big = new Int16Array(1000);
    const view = new Int16Array(big.buffer, 200, 60);
    view.set(cases[1].images[1].data as Int16Array);
    cases[1].images[1] = {
      ...cases[1].images[1],
      data: view,
      source: { format: 'nifti1', header: new Uint8Array([1, 2, 3, 4]).buffer },
    };
    const progress: ImportProgress[] = [];
    const res = await importDataset(db, meta('Dataset001_Test', 2), caseStream(cases), {
      onProgress: (p) => progress.push(p),
      casesTotal: 3,
      env: noEnv,
    });

    const total = cases.reduce((s, c) => s + caseBytes(c), 0);
    expect(res.dataset).toMatchObject({
      name: 'Dataset001_Test',
      numCases: 3,
      casesWithProblems: 1,
      bytes: total,
      status: 'complete',
      channelNames: ['ch0', 'ch1'],
    });
    expect(res.replacedId).toBeUndefined();
    expect(res.persisted).toBeUndefined();
    expect(await listDatasets(db)).toEqual([res.dataset]);
    expect(await getDataset(db, res.dataset.id)).toEqual(res.dataset);
    expect(await findDatasetByName(db, 'Dataset001_Test')).toEqual(res.dataset);

    expect(progress.map((p) => p.phase)).toEqual([
      'staging',
      'staging',
      'staging',
      'committing',
      'done',
    ]);
    expect(progress.map((p) => p.casesDone)).toEqual([1, 2, 3, 3, 3]);
    expect(progress[0].bytesWritten).toBe(caseBytes(cases[0]));
    expect(progress.at(-1)).toEqual({
      phase: 'done',
      casesDone: 3,
      casesTotal: 3,
      bytesWritten: total,
    });

    expect((await listCases(db, res.dataset.id)).map((c) => c.caseId)).toEqual([
      'case_000',
      'case_001',
      'case_002',
    ]);
    const c1 = await getCase(db, res.dataset.id, 'case_001');
    expect(c1?.problems).toEqual(cases[1].problems);
    expect(c1?.images[0].dims).toEqual([5, 4, 3]);

    for (const c of cases) {
      const got = await loadCaseVolumes(db, res.dataset.id, c.caseId);
      expect(got).toBeDefined();
      expect(got!.images).toHaveLength(2);
      got!.images.forEach((v, i) => expectSameVolume(v, c.images[i]));
      if (c.label) expectSameVolume(got!.label!, c.label);
      else expect(got!.label).toBeUndefined();
      expect(got!.problems).toEqual(c.problems);
    }
    // Only the view's 120 bytes were stored, not its 2000-byte buffer.
    const loaded = await loadCaseVolumes(db, res.dataset.id, 'case_001');
    expect(loaded!.images[1].data.buffer.byteLength).toBe(120);
    expect(new Uint8Array(loaded!.images[1].source!.header!)).toEqual(new Uint8Array([1, 2, 3, 4]));
    expect(await loadCaseVolumes(db, res.dataset.id, 'nope')).toBeUndefined();

    const usage = await storageUsage(db, {
      storage: { estimate: async () => ({ usage: 5, quota: 10 }) },
    });
    expect(usage).toEqual({
      datasets: [{ id: res.dataset.id, name: 'Dataset001_Test', numCases: 3, bytes: total }],
      totalBytes: total,
      estimate: { usage: 5, quota: 10 },
    });
  });

  it('keeps every dtype and asks for persistent storage, reporting the answer', async () => {
    const { db } = await freshStore();
    const dtypes = [
      'uint8',
      'int8',
      'int16',
      'uint16',
      'int32',
      'uint32',
      'float32',
      'float64',
    ] as const;
    const cases = dtypes.map((t, i) => ({
      caseId: `c${i}`,
      images: [makeVolume(i, t)],
      label: makeVolume(50 + i, 'uint8'),
      problems: [],
    }));
    const persist = vi.fn(async () => false);
    const res = await importDataset(db, meta('D'), caseStream(cases), {
      env: { storage: { persist, persisted: async () => false } },
    });
    expect(persist).toHaveBeenCalledOnce();
    expect(res.persisted).toBe(false);
    for (const c of cases)
      expectSameVolume(
        (await loadCaseVolumes(db, res.dataset.id, c.caseId))!.images[0],
        c.images[0],
      );
  });

  it('rejects inconsistent input and leaves the store unchanged', async () => {
    const { db } = await freshStore();
    const before = await dump(db);
    await expect(
      importDataset(db, meta('D', 2), caseStream([makeCase(0, 1)]), { env: noEnv }),
    ).rejects.toThrow(/1 images, the dataset has 2 channels/);
    await expect(
      importDataset(db, meta('D'), caseStream([makeCase(0), makeCase(1), makeCase(0)]), {
        env: noEnv,
      }),
    ).rejects.toThrow(/appears twice/);
    const wrongType = { ...makeVolume(1, 'int16'), datatype: 'float32' as const };
    await expect(
      importDataset(
        db,
        meta('D'),
        caseStream([{ caseId: 'x', images: [wrongType], problems: [] }]),
        { env: noEnv },
      ),
    ).rejects.toThrow(/says float32 but holds int16/);
    expect(await dump(db)).toEqual(before);
  });

  it('reads voxels stored as a Blob', async () => {
    const { db } = await freshStore();
    const res = await importDataset(db, meta('D'), caseStream([makeCase(0)]), { env: noEnv });
    const key: [string, string, string] = [res.dataset.id, 'case_000', 'image:0'];
    const rec = (await db.get('volumes', key))!;
    const bytes = rec.data as ArrayBuffer;
    await db.put('volumes', { ...rec, data: new Blob([bytes]) });
    expect((await db.get('volumes', key))!.data).toBeInstanceOf(Blob);
    expectSameVolume(
      (await loadCaseVolumes(db, res.dataset.id, 'case_000'))!.images[0],
      makeCase(0).images[0],
    );
  });
});

describe('store: imports are all or nothing', () => {
  async function storeWithOneDataset() {
    const s = await freshStore();
    const first = await importDataset(
      s.db,
      meta('Existing'),
      caseStream([makeCase(7), makeCase(8)]),
      { env: noEnv },
    );
    return { ...s, first: first.dataset };
  }

  it('cancelling mid-import (AbortSignal) leaves the store exactly as before', async () => {
    const { db } = await storeWithOneDataset();
    const before = await dump(db);
    const ac = new AbortController();
    const seen: ImportProgress[] = [];
    const p = importDataset(db, meta('New'), caseStream([0, 1, 2, 3, 4].map((i) => makeCase(i))), {
      signal: ac.signal,
      env: noEnv,
      onProgress: (e) => {
        seen.push(e);
        if (e.casesDone === 2) ac.abort();
      },
    });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen.map((e) => e.phase)).toEqual(['staging', 'staging', 'rolling-back']);
    expect(await dump(db)).toEqual(before);
  });

  it('cancelling while the reader is still parsing a case rejects at once and rolls back', async () => {
    const { db } = await storeWithOneDataset();
    const before = await dump(db);
    const ac = new AbortController();
    let returned = false;
    async function* hanging() {
      try {
        yield makeCase(0);
        yield makeCase(1);
        ac.abort(new Error('user cancelled'));
        await new Promise(() => {}); // a parse that never finishes
      } finally {
        returned = true;
      }
    }
    await expect(
      importDataset(db, meta('New'), hanging(), { signal: ac.signal, env: noEnv }),
    ).rejects.toThrow('user cancelled');
    expect(await dump(db)).toEqual(before);
    expect(returned).toBe(false); // a generator stuck in an await cannot be stopped; it is left to GC
  });

  it('a reader that throws on case 3 leaves the store unchanged and the error propagates', async () => {
    const { db } = await storeWithOneDataset();
    const before = await dump(db);
    const stream = caseStream(
      [0, 1, 2, 3].map((i) => makeCase(i)),
      {
        2: () => {
          throw new Error('bad NIfTI header in case 3');
        },
      },
    );
    await expect(importDataset(db, meta('New'), stream, { env: noEnv })).rejects.toThrow(
      'bad NIfTI header in case 3',
    );
    expect(await dump(db)).toEqual(before);
  });

  it('re-importing a name keeps the old dataset until the new import completes, then replaces it', async () => {
    const { db, first } = await storeWithOneDataset();
    const other = await importDataset(db, meta('Other'), caseStream([makeCase(20)]), {
      env: noEnv,
    });
    await db.put('fingerprints', { datasetId: first.id, caseId: '', spacings: [[1, 1, 1]] });
    await db.put('plans', { datasetId: other.dataset.id, plansName: 'nnUNetPlans' });
    const before = await dump(db);

    const failing = caseStream([makeCase(30), makeCase(31)], {
      1: () => {
        throw new Error('disk read failed');
      },
    });
    await expect(importDataset(db, meta('Existing'), failing, { env: noEnv })).rejects.toThrow(
      'disk read failed',
    );
    expect(await dump(db)).toEqual(before);

    const replacement = [makeCase(40), makeCase(41), makeCase(42)];
    const res = await importDataset(db, meta('Existing'), caseStream(replacement), { env: noEnv });
    expect(res.replacedId).toBe(first.id);
    expect(res.dataset.id).not.toBe(first.id);
    expect((await listDatasets(db)).map((d) => [d.name, d.id])).toEqual([
      ['Existing', res.dataset.id],
      ['Other', other.dataset.id],
    ]);
    expectSameVolume(
      (await loadCaseVolumes(db, res.dataset.id, 'case_041'))!.images[0],
      replacement[1].images[0],
    );
    // Nothing of the old dataset is left (its fingerprint described data that is gone)…
    const after = await dump(db);
    for (const [store, rows] of Object.entries(after)) {
      for (const [, v] of rows)
        expect(
          (v as { datasetId?: string; id?: string }).datasetId ?? (v as { id?: string }).id,
          store,
        ).not.toBe(first.id);
    }
    // …and the other dataset is untouched.
    for (const store of ['cases', 'volumes', 'plans']) {
      const keep = (d: typeof before) =>
        d[store].filter(([k]) => (k as string[])[0] === other.dataset.id);
      expect(keep(after), store).toEqual(keep(before));
    }
  });

  it('a quota failure reported by aborting the transaction becomes StoreQuotaError, store unchanged', async () => {
    const { db } = await storeWithOneDataset();
    const before = await dump(db);
    const cases = [0, 1, 2, 3].map((i) => makeCase(i));
    // Chrome's way: the transaction aborts with error QuotaExceededError while requests are still
    // pending, and they fail with a bare AbortError. Here the third case's transaction does.
    let puts = 0;
    const put = IDBObjectStore.prototype.put;
    vi.spyOn(IDBObjectStore.prototype, 'put').mockImplementation(function (
      this: IDBObjectStore,
      ...args: Parameters<IDBObjectStore['put']>
    ) {
      const req = put.apply(this, args);
      const tx = this.transaction as unknown as { _abort(n: string): void };
      if (this.name === 'volumes' && ++puts === 5)
        req.addEventListener('success', () => tx._abort('QuotaExceededError'));
      return req;
    });
    const estimate = { usage: 900, quota: 1000 };
    const err = await importDataset(db, meta('New'), caseStream(cases), {
      env: { storage: { estimate: async () => estimate } },
      bytesExpected: 1e9,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreQuotaError);
    const q = err as StoreQuotaError;
    expect(q.bytesNeeded).toBe(caseBytes(cases[0]) + caseBytes(cases[1]) + caseBytes(cases[2]));
    expect(q.bytesExpected).toBe(1e9);
    expect(q.estimate).toEqual(estimate);
    expect(q.message).toMatch(
      /Not enough browser storage.*of an expected 953\.7 MiB.*used of 0\.0 MiB/,
    );
    vi.restoreAllMocks();
    expect(await dump(db)).toEqual(before);
  });

  it('a quota failure on the request itself becomes StoreQuotaError too, store unchanged', async () => {
    const { db } = await storeWithOneDataset();
    const before = await dump(db);
    const put = IDBObjectStore.prototype.put;
    vi.spyOn(IDBObjectStore.prototype, 'put').mockImplementation(function (
      this: IDBObjectStore,
      ...args: Parameters<IDBObjectStore['put']>
    ) {
      if (this.name === 'volumes')
        throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      return put.apply(this, args);
    });
    const err = await importDataset(db, meta('New'), caseStream([makeCase(0)]), {
      env: noEnv,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreQuotaError);
    expect((err as StoreQuotaError).bytesNeeded).toBe(caseBytes(makeCase(0)));
    expect((err as StoreQuotaError).estimate).toBeUndefined();
    vi.restoreAllMocks();
    expect(await dump(db)).toEqual(before);
  });

  it('a transaction aborted for another reason is not reported as quota', async () => {
    const { db } = await freshStore();
    const put = IDBObjectStore.prototype.put;
    vi.spyOn(IDBObjectStore.prototype, 'put').mockImplementation(function (
      this: IDBObjectStore,
      ...args: Parameters<IDBObjectStore['put']>
    ) {
      const req = put.apply(this, args);
      const tx = this.transaction as unknown as IDBTransaction;
      if (this.name === 'volumes') req.addEventListener('success', () => tx.abort());
      return req;
    });
    const err = await importDataset(db, meta('New'), caseStream([makeCase(0)]), {
      env: noEnv,
    }).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(StoreQuotaError);
    expect((err as Error).name).toBe('AbortError');
    vi.restoreAllMocks();
    expect(recordCount(await dump(db))).toBe(0);
  });
});

describe('store: deleteDataset', () => {
  it('removes the dataset and all records keyed by it, and nothing else', async () => {
    const { db } = await freshStore();
    const a = (
      await importDataset(db, meta('A'), caseStream([makeCase(0), makeCase(1)]), { env: noEnv })
    ).dataset;
    const b = (await importDataset(db, meta('B'), caseStream([makeCase(2)]), { env: noEnv }))
      .dataset;
    for (const id of [a.id, b.id]) {
      await db.put('fingerprints', { datasetId: id, caseId: 'case_000', x: 1 });
      await db.put('plans', { datasetId: id, plansName: 'nnUNetPlans' });
      await db.put('preprocessed', {
        datasetId: id,
        plansName: 'nnUNetPlans',
        configuration: '3d_fullres',
        caseId: 'case_000',
      });
      await db.put('checkpoints', { datasetId: id, runId: 'r1', tag: 'latest' });
      await db.put('fedState', { datasetId: id, federationId: 'f1' });
    }
    const before = await dump(db);
    expect(await deleteDataset(db, a.id)).toBe(true);
    const after = await dump(db);
    const notA = (d: typeof before) =>
      Object.fromEntries(
        Object.entries(d).map(([s, rows]) => [
          s,
          rows.filter(([k]) => (Array.isArray(k) ? k[0] : k) !== a.id),
        ]),
      );
    expect(after).toEqual(notA(before));
    expect(recordCount(after)).toBeLessThan(recordCount(before) - 5);
    expect(recordCount(after)).toBeGreaterThan(6);
    expect(await listDatasets(db)).toEqual([b]);
    expect(await getCase(db, a.id, 'case_000')).toBeUndefined();
    expect(await deleteDataset(db, a.id)).toBe(false);
  });
});
