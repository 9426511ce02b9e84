// Storage management (issue 19): use/quota in words, when to ask for persistent storage before an
// import, and deleting everything (datasets, models, checkpoints, saved federations) but the site
// key, in one transaction, over fake-indexeddb.
import { describe, expect, it } from 'vitest';
import { importDataset } from '../../src/store/import-dataset.ts';
import { listModels, putModel } from '../../src/store/models.ts';
import { listDatasets, deleteDataset } from '../../src/store/datasets.ts';
import {
  deleteEverything,
  importAdvice,
  LARGE_IMPORT_BYTES,
  storageLine,
  storedTotals,
} from '../../src/store/storage-manage.ts';
import { caseStream, dump, freshStore, makeCase, meta, noEnv } from './store-helpers.ts';

const GiB = 1024 ** 3;
const desc = {
  source: 'imported' as const,
  configuration: '3d_fullres',
  numInputChannels: 1,
  labels: { background: 0, tumour: 1 },
  patchSize: [8, 8, 8],
  spacing: [1, 1, 1],
  bytes: 3,
  hasOnnx: false,
};

describe('storage management', () => {
  it('says use, quota and persistence in words', () => {
    expect(storageLine({ usage: 1.5 * GiB, quota: 10 * GiB }, true)).toBe(
      'This app uses 1.5 GiB of the 10.0 GiB this browser allows it (15 %); kept until you delete it (persistent storage granted).',
    );
    expect(storageLine({ usage: 2048, quota: 10 * GiB }, false)).toMatch(
      /^This app uses 2 KiB of the 10\.0 GiB .* \(<1 %\); the browser may delete it/,
    );
    expect(storageLine(undefined)).toBe('This browser does not report its storage quota.');
  });

  it('asks for persistence before a large import only, and warns when it cannot fit', () => {
    const est = { usage: 1 * GiB, quota: 2 * GiB };
    expect(importAdvice(1024, est, false)).toEqual({ askPersistence: false });
    expect(importAdvice(LARGE_IMPORT_BYTES, est, false).askPersistence).toBe(true);
    expect(importAdvice(LARGE_IMPORT_BYTES, est, true).askPersistence).toBe(false);
    // A folder handle: its size is unknown until read, so ask.
    expect(importAdvice(undefined, est, undefined)).toEqual({ askPersistence: true });
    expect(importAdvice(1.5 * GiB, est, true).warning).toMatch(
      /^This import \(1\.5 GiB\) is larger than the 1\.0 GiB this browser still allows/,
    );
  });

  it('deletes a dataset, a model, or everything but the site key', async () => {
    const { db } = await freshStore();
    const files = { 'model.json': new Uint8Array([1, 2, 3]) };
    await importDataset(db, meta('D1'), caseStream([makeCase(0)]), { env: noEnv });
    const d2 = await importDataset(db, meta('D2'), caseStream([makeCase(1), makeCase(2)]), {
      env: noEnv,
    });
    await putModel(db, files, { ...desc, name: 'M1' });
    await putModel(db, files, { ...desc, name: 'M2' });
    await db.put('identity', { id: 'site-key', fingerprint: 'abc' });
    await db.put('hostedFederations', { code: 'demo' });
    const totals = await storedTotals(db);
    expect(totals).toMatchObject({ datasets: 2, models: 2, modelBytes: 6 });
    expect(totals.datasetBytes).toBeGreaterThan(0);

    await deleteDataset(db, d2.dataset.id);
    expect((await listDatasets(db)).map((d) => d.name)).toEqual(['D1']);

    const gone = await deleteEverything(db);
    expect(gone).toMatchObject({ datasets: 1, models: 2 });
    expect(await listDatasets(db)).toEqual([]);
    expect(await listModels(db)).toEqual([]);
    const left = await dump(db);
    const nonEmpty = Object.entries(left).filter(([, rows]) => rows.length > 0);
    expect(nonEmpty.map(([name]) => name)).toEqual(['identity']);
  });
});
