// Fingerprints, plans and preprocessed cases in the IndexedDB store (fake-indexeddb), fed from a
// dataset imported into the store, as the browser worker does.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { extractFingerprint, extractFingerprintFromCases } from '../../src/fingerprint/extract.ts';
import { readNpy } from '../../src/io/npy.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import type { Plans } from '../../src/plan/types.ts';
import { runCase, type PreprocessedCase } from '../../src/preprocess/preprocess.ts';
import {
  deleteDataset,
  importDataset,
  iterateCaseVolumes,
  loadCaseVolumes,
} from '../../src/store/datasets.ts';
import {
  loadCaseFingerprint,
  loadCaseFingerprints,
  loadDatasetFingerprint,
  saveCaseFingerprint,
  saveDatasetFingerprint,
} from '../../src/store/fingerprints.ts';
import { deletePlans, listPlans, loadPlans, savePlans } from '../../src/store/plans.ts';
import {
  deletePreprocessed,
  listPreprocessed,
  loadPreprocessed,
  savePreprocessed,
} from '../../src/store/preprocessed.ts';
import { DatasetNotFoundError } from '../../src/store/require-dataset.ts';
import type { StoreDB } from '../../src/store/db.ts';
import { expectMatchesReference } from './helpers/fingerprint-ref.ts';
import { loadNifti } from './helpers/load-nifti.ts';
import { caseStream, dump, freshStore, noEnv } from './store-helpers.ts';
import { REFERENCE } from '../paths.ts';

const DS = 'Dataset801_PhantomMR';
const DIR = `${REFERENCE}/raw/${DS}`;
const IDS = ['mrA_000', 'mrA_001', 'mrA_002', 'mrA_003', 'mrA_004'];
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));
const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

async function import801(db: StoreDB): Promise<string> {
  const cases = IDS.map((id) => ({
    caseId: id,
    images: [loadNifti(`${DIR}/imagesTr/${id}_0000.nii.gz`)],
    label: loadNifti(`${DIR}/labelsTr/${id}.nii.gz`),
    problems: [],
  }));
  const dj = json(`${DIR}/dataset.json`);
  const res = await importDataset(
    db,
    { name: DS, datasetJson: dj, channelNames: ['T1'], labels: dj.labels },
    caseStream(cases),
    { env: noEnv },
  );
  return res.dataset.id;
}

function expectSameCase(got: PreprocessedCase, want: PreprocessedCase) {
  expect(got.shape).toEqual(want.shape);
  for (const k of ['data', 'seg'] as const) {
    expect(got[k].constructor).toBe(want[k].constructor);
    expect(bytes(got[k]).equals(bytes(want[k]))).toBe(true);
  }
  const { class_locations: gl, ...gp } = got.properties;
  const { class_locations: wl, ...wp } = want.properties;
  expect(gp).toEqual(wp);
  expect(Object.keys(gl!)).toEqual(Object.keys(wl!));
  for (const k of Object.keys(wl!)) {
    expect(gl![k]).toBeInstanceOf(Int32Array);
    expect(bytes(gl![k]).equals(bytes(wl![k]))).toBe(true);
  }
}

describe('store: fingerprints, plans, preprocessed', () => {
  it('fingerprint from stored cases = fingerprint from the folder = nnU-Net; saved and loaded back', async () => {
    const { db } = await freshStore();
    const id = await import801(db);
    const r = await extractFingerprintFromCases(iterateCaseVolumes(db, id), {
      total: IDS.length,
      onCase: (caseId, fp) => saveCaseFingerprint(db, id, caseId, fp),
    });
    const folder = await extractFingerprint(fsSource(DIR));
    expect(r.fingerprint).toEqual(folder.fingerprint);
    expectMatchesReference(
      r.fingerprint,
      json(`${REFERENCE}/fingerprints/${DS}/dataset_fingerprint.json`),
    );
    await saveDatasetFingerprint(db, id, r.fingerprint);
    await saveDatasetFingerprint(
      db,
      id,
      { ...r.fingerprint, median_relative_size_after_cropping: 0.5 },
      'fed-1',
    );
    expect(await loadDatasetFingerprint(db, id)).toEqual(r.fingerprint);
    expect(
      (await loadDatasetFingerprint(db, id, 'fed-1'))!.median_relative_size_after_cropping,
    ).toBe(0.5);
    const cases = await loadCaseFingerprints(db, id);
    expect([...cases.keys()]).toEqual(IDS); // dataset-level records are not listed as cases
    expect(cases.get('mrA_002')).toEqual(r.cases[2].fingerprint);
    expect(await loadCaseFingerprint(db, id, '')).toBeUndefined();
    db.close();
  });

  it('plans and preprocessed cases round-trip bit-exact; deleting plans or the dataset removes them', async () => {
    const { db } = await freshStore();
    const id = await import801(db);
    const plans = json(`${REFERENCE}/plans/${DS}/nnUNetPlans.json`) as Plans;
    await savePlans(db, id, plans);
    await savePlans(db, id, { ...plans, plans_name: 'fed' }, 'fedPlans');
    expect(await listPlans(db, id)).toEqual(['fedPlans', 'nnUNetPlans']);
    expect(await loadPlans(db, id, 'nnUNetPlans')).toEqual(plans);

    const v = (await loadCaseVolumes(db, id, 'mrA_000'))!;
    const pc = runCase(v.images[0], v.label!, plans, '3d_fullres', json(`${DIR}/dataset.json`));
    // Against nnU-Net's run_case output for this case.
    const ref = `${REFERENCE}/preprocessed/${DS}/3d_fullres/mrA_000`;
    expect(bytes(pc.seg).equals(bytes(readNpy(readFileSync(`${ref}_seg.npy.gz`)).data))).toBe(true);
    await savePreprocessed(db, id, 'nnUNetPlans', '3d_fullres', 'mrA_000', pc);
    // A view into a larger buffer is stored as just its bytes.
    const big = new Float32Array(pc.data.length + 8);
    big.set(pc.data, 8);
    await savePreprocessed(db, id, 'fedPlans', '3d_fullres', 'mrA_001', {
      ...pc,
      data: big.subarray(8),
    });
    await savePreprocessed(db, id, 'nnUNetPlans', '2d', 'mrA_000', pc);
    expectSameCase((await loadPreprocessed(db, id, 'nnUNetPlans', '3d_fullres', 'mrA_000'))!, pc);
    const fromView = (await loadPreprocessed(db, id, 'fedPlans', '3d_fullres', 'mrA_001'))!;
    expect(fromView.data.buffer.byteLength).toBe(pc.data.byteLength);
    expectSameCase(fromView, pc);
    expect(await listPreprocessed(db, id, 'nnUNetPlans', '3d_fullres')).toEqual(['mrA_000']);
    expect(await loadPreprocessed(db, id, 'nnUNetPlans', '3d_fullres', 'mrA_001')).toBeUndefined();

    await deletePreprocessed(db, id, 'nnUNetPlans', '2d');
    expect(await listPreprocessed(db, id, 'nnUNetPlans', '2d')).toEqual([]);
    await deletePlans(db, id, 'fedPlans');
    expect(await listPlans(db, id)).toEqual(['nnUNetPlans']);
    expect(await listPreprocessed(db, id, 'fedPlans', '3d_fullres')).toEqual([]);
    expect(await listPreprocessed(db, id, 'nnUNetPlans', '3d_fullres')).toEqual(['mrA_000']);

    await saveDatasetFingerprint(db, id, (await extractFingerprint(fsSource(DIR))).fingerprint);
    expect(await deleteDataset(db, id)).toBe(true);
    const d = await dump(db);
    for (const s of ['datasets', 'cases', 'volumes', 'fingerprints', 'plans', 'preprocessed'])
      expect(d[s]).toEqual([]);
    db.close();
  });

  it('refuses to write records for a dataset that does not exist, and leaves nothing behind', async () => {
    const { db } = await freshStore();
    const plans = json(`${REFERENCE}/plans/${DS}/nnUNetPlans.json`) as Plans;
    await expect(savePlans(db, 'nope', plans)).rejects.toBeInstanceOf(DatasetNotFoundError);
    await expect(
      saveDatasetFingerprint(
        db,
        'nope',
        json(`${REFERENCE}/fingerprints/${DS}/dataset_fingerprint.json`),
      ),
    ).rejects.toThrow(/no dataset with id 'nope'/);
    const pc: PreprocessedCase = {
      data: new Float32Array(8),
      seg: new Int8Array(8),
      shape: [1, 2, 2, 2],
      properties: {
        spacing: [1, 1, 1],
        shape_before_cropping: [2, 2, 2],
        bbox_used_for_cropping: [
          [0, 2],
          [0, 2],
          [0, 2],
        ],
        shape_after_cropping_and_before_resampling: [2, 2, 2],
      },
    };
    await expect(savePreprocessed(db, 'nope', 'p', '3d_fullres', 'c', pc)).rejects.toBeInstanceOf(
      DatasetNotFoundError,
    );
    await expect(
      savePreprocessed(db, 'nope', 'p', '3d_fullres', 'c', { ...pc, shape: [1, 2, 2, 3] }),
    ).rejects.toThrow(/do not match shape/);
    const d = await dump(db);
    expect(Object.values(d).every((rows) => rows.length === 0)).toBe(true);
    db.close();
  });
});
