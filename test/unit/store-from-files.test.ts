import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freshStore, dump as dumpStore } from './store-helpers.ts';
import {
  importDataset,
  listCases,
  listDatasets,
  loadCaseVolumes,
} from '../../src/store/datasets.ts';
import { ImportInputError, planImport } from '../../src/store/from-files.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { memorySource } from '../../src/io/file-source.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { REFERENCE, FIXTURES } from '../paths.ts';

const RAW803 = join(REFERENCE, 'raw', 'Dataset803_PhantomMR2ch');

describe('importing dropped files', () => {
  it('an nnU-Net raw dataset dropped as its parent folder: every case stored bit-exactly', async () => {
    const { db } = await freshStore();
    // Simulate dropping the folder that *contains* the dataset: paths carry its name.
    const inner = fsSource(RAW803);
    const src = {
      name: 'drop',
      list: async () => (await inner.list()).map((p) => `Dataset803_PhantomMR2ch/${p}`),
      read: (p: string) => inner.read(p.replace(/^Dataset803_PhantomMR2ch\//, '')),
    };
    const plan = await planImport(src);
    expect(plan.kind).toBe('raw-dataset');
    expect(plan.meta.name).toBe('Dataset803_PhantomMR2ch');
    expect(plan.meta.channelNames).toEqual(['T2', 'ADC']);
    const r = await importDataset(db, plan.meta, plan.cases, { casesTotal: plan.casesTotal });
    expect(r.dataset.numCases).toBe(3);
    const cases = await listCases(db, r.dataset.id);
    expect(cases.map((c) => c.caseId)).toEqual(['mp_000', 'mp_001', 'mp_002']);
    const v = (await loadCaseVolumes(db, r.dataset.id, 'mp_001'))!;
    const ref = readNifti(
      new Uint8Array(readFileSync(join(RAW803, 'imagesTr', 'mp_001_0001.nii.gz'))),
    );
    expect(v.images[1].dims).toEqual(ref.dims);
    expect(v.images[1].affine).toEqual(ref.affine);
    expect(Buffer.from(v.images[1].data.buffer).equals(Buffer.from(ref.data.buffer))).toBe(true);
    expect(v.label).toBeDefined();
  });

  it('a corrupt case fails a strict import (all problems listed); with allowProblems it is skipped and the others stored', async () => {
    const { db } = await freshStore();
    const files: Record<string, Uint8Array> = {};
    for (const p of await fsSource(RAW803).list())
      files[p] = new Uint8Array(readFileSync(join(RAW803, p)));
    files['imagesTr/mp_002_0000.nii.gz'] = files['imagesTr/mp_002_0000.nii.gz'].slice(0, 200); // truncated gzip
    const strict = await planImport(memorySource('Dataset803_PhantomMR2ch', files));
    await expect(importDataset(db, strict.meta, strict.cases)).rejects.toThrow(
      /^1 case\(s\) have problems \(mp_002\), nothing was imported\..*\nmp_002: .*mp_002_0000\.nii\.gz/,
    );
    expect(await listDatasets(db)).toEqual([]);
    const plan = await planImport(memorySource('Dataset803_PhantomMR2ch', files), {
      allowProblems: true,
    });
    const r = await importDataset(db, plan.meta, plan.cases);
    expect(r.dataset.numCases).toBe(2);
    expect(plan.skipped.map((s) => s.id)).toEqual(['mp_002']);
    expect(plan.skipped[0].reason).toMatch(/mp_002_0000\.nii\.gz/);
  });

  it('loose NIfTI files become unlabelled cases; a DICOM folder becomes one case per series', async () => {
    const { db } = await freshStore();
    // The two real scans of fixtures/nifti (the folder also holds small synthetic NIfTIs and their generator).
    const real = ['anatomical.nii', 'someones_anatomy.nii.gz'];
    const nii = await planImport(
      memorySource(
        'nifti',
        Object.fromEntries(
          real.map((f) => [f, new Uint8Array(readFileSync(join(FIXTURES, 'nifti', f)))]),
        ),
      ),
    );
    expect(nii.kind).toBe('nifti-files');
    const r1 = await importDataset(db, nii.meta, nii.cases);
    expect((await listCases(db, r1.dataset.id)).map((c) => c.caseId)).toEqual([
      'anatomical',
      'someones_anatomy',
    ]);
    const dcm = await planImport(fsSource(join(FIXTURES, 'dicom-ct-phantom')));
    expect(dcm.kind).toBe('dicom-series');
    const r2 = await importDataset(db, dcm.meta, dcm.cases);
    const v = (await loadCaseVolumes(db, r2.dataset.id, 'series_000'))!;
    expect(v.images[0].dims[2]).toBe(readdirSync(join(FIXTURES, 'dicom-ct-phantom')).length);
    expect((await listDatasets(db)).length).toBe(2);
  });

  it('bad input gives a clear error and leaves the store unchanged', async () => {
    const { db } = await freshStore();
    const before = await dumpStore(db);
    await expect(planImport(memorySource('empty', {}))).rejects.toThrow(/empty/);
    await expect(
      planImport(memorySource('junk', { 'a.txt': new TextEncoder().encode('hello') })),
    ).rejects.toThrow(ImportInputError);
    await expect(
      planImport(memorySource('broken', { 'dataset.json': new TextEncoder().encode('{not json') })),
    ).rejects.toThrow(/not a valid nnU-Net dataset/);
    expect(await dumpStore(db)).toEqual(before);
  });
});
