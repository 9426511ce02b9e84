// The site pipeline over the browser store: import 801 → fingerprint → plan → preprocess, each
// result equal to nnU-Net's reference outputs and saved in IndexedDB (fake-indexeddb here).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { freshStore } from './store-helpers.ts';
import { importDataset } from '../../src/store/datasets.ts';
import { planImport } from '../../src/store/from-files.ts';
import { loadDatasetFingerprint } from '../../src/store/fingerprints.ts';
import { loadPlans } from '../../src/store/plans.ts';
import { listPreprocessed, loadPreprocessed } from '../../src/store/preprocessed.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { readNpy } from '../../src/io/npy.ts';
import { IdbSiteStore } from '../../src/pipeline/idb-site-store.ts';
import { SitePipeline } from '../../src/pipeline/site-pipeline.ts';
import type { StoreDB } from '../../src/store/db.ts';
import { REFERENCE } from '../paths.ts';

const ID = 'Dataset801_PhantomMR';
const json = (p: string) => JSON.parse(readFileSync(join(REFERENCE, p), 'utf8'));
const pipelineOf = async (db: StoreDB, id: string) =>
  new SitePipeline(await IdbSiteStore.open(db, id));

describe('site pipeline over IndexedDB', () => {
  it('fingerprint, plans and preprocessed arrays match nnU-Net and are stored', async () => {
    const { db } = await freshStore();
    const plan = await planImport(fsSource(join(REFERENCE, 'raw', ID)));
    const { dataset } = await importDataset(db, plan.meta, plan.cases);
    const seen: string[] = [];
    const pipeline = await pipelineOf(db, dataset.id);
    const fp = await pipeline.fingerprint({ onProgress: (p) => seen.push(`${p.done}/${p.total}`) });
    expect(seen).toEqual(['1/5', '2/5', '3/5', '4/5', '5/5']);
    const ref = json(`fingerprints/${ID}/dataset_fingerprint.json`);
    expect(fp.shapes_after_crop).toEqual(ref.shapes_after_crop);
    expect(fp.spacings).toEqual(ref.spacings);
    expect(fp.median_relative_size_after_cropping).toBe(ref.median_relative_size_after_cropping);
    expect(await loadDatasetFingerprint(db, dataset.id)).toEqual(fp);

    const plans = pipeline.makePlans(fp);
    await pipeline.savePlans(plans);
    const refPlans = json(`plans/${ID}/nnUNetPlans.json`);
    for (const c of ['2d', '3d_fullres'] as const) {
      const {
        patch_size,
        batch_size,
        spacing,
        architecture,
        normalization_schemes,
        use_mask_for_norm,
      } = refPlans.configurations[c];
      expect(plans.configurations[c]).toMatchObject({
        patch_size,
        batch_size,
        spacing,
        architecture,
        normalization_schemes,
        use_mask_for_norm,
      });
    }
    expect(await loadPlans(db, dataset.id, 'nnUNetPlans')).toEqual(plans);

    // Preprocess with the reference plans (their stored intensity stats), as nnU-Net did.
    const r = await pipeline.preprocess(refPlans, '3d_fullres');
    expect(r.computed + r.reused).toBe(5);
    expect(await listPreprocessed(db, dataset.id, 'nnUNetPlans', '3d_fullres')).toHaveLength(5);
    const pc = (await loadPreprocessed(db, dataset.id, 'nnUNetPlans', '3d_fullres', 'mrA_000'))!;
    const dir = join(REFERENCE, 'preprocessed', ID, '3d_fullres');
    const refData = readNpy(gunzipSync(readFileSync(join(dir, 'mrA_000_data.npy.gz'))));
    const refSeg = readNpy(gunzipSync(readFileSync(join(dir, 'mrA_000_seg.npy.gz'))));
    expect(pc.shape).toEqual(refData.shape);
    let maxAbs = 0;
    for (let i = 0; i < pc.data.length; i++)
      maxAbs = Math.max(maxAbs, Math.abs(pc.data[i] - (refData.data as Float32Array)[i]));
    expect(maxAbs).toBeLessThanOrEqual(1e-4);
    expect(Array.from(pc.seg)).toEqual(Array.from(refSeg.data as Int8Array));
  });

  it('cancelling preprocessing stops between cases with an AbortError', async () => {
    const { db } = await freshStore();
    const plan = await planImport(fsSource(join(REFERENCE, 'raw', ID)));
    const { dataset } = await importDataset(db, plan.meta, plan.cases);
    const ctrl = new AbortController();
    const run = (await pipelineOf(db, dataset.id)).preprocess(
      json(`plans/${ID}/nnUNetPlans.json`),
      '3d_fullres',
      {
        signal: ctrl.signal,
        onProgress: (p) => p.done === 2 && ctrl.abort(),
      },
    );
    await expect(run).rejects.toThrow(/cancelled after 2 of 5/);
    expect(await listPreprocessed(db, dataset.id, 'nnUNetPlans', '3d_fullres')).toHaveLength(2);
  });
});
