// Model packages in IndexedDB (src/store/models.ts): save/list/load/add-file/delete, kept apart from
// datasets (deleting a dataset keeps models), invalid packages refused.
import { describe, expect, it } from 'vitest';
import { encodeModelFolder } from '../../src/model/model-folder.ts';
import { deleteDataset } from '../../src/store/datasets.ts';
import { deleteModel, listModels, loadModelFiles } from '../../src/store/models.ts';
import { loadModel, putModelFile, saveModel } from '../../src/infer/stored-models.ts';
import { DATASET_JSON } from './infer-helpers.ts';
import { twoStageModel } from './helpers/tiny-model.ts';
import { freshStore } from './store-helpers.ts';

async function tinyPackage(): Promise<Record<string, Uint8Array>> {
  return encodeModelFolder(await twoStageModel());
}

describe('model store', () => {
  it('saves, lists (metadata only), loads every weight bit, adds model.onnx, deletes', async () => {
    const { db } = await freshStore();
    const files = await tinyPackage();
    const a = await saveModel(db, files, { name: 'A', source: 'imported' });
    const b = await saveModel(db, files, {
      name: 'B',
      source: 'federation-global',
      origin: 'fed-1',
    });
    const list = await listModels(db);
    expect(list.map((m) => m.name).sort()).toEqual(['A', 'B']);
    expect(list.every((m) => !('files' in m))).toBe(true);
    expect(a).toMatchObject({
      configuration: '3d_fullres',
      numInputChannels: 1,
      patchSize: [8, 8, 8],
      hasOnnx: false,
      labels: DATASET_JSON.labels,
    });
    const back = await loadModelFiles(db, a.id);
    for (const [k, v] of Object.entries(files)) expect(back?.[k]).toEqual(v);
    const md = await loadModel(db, b.id);
    expect(md?.record.source).toBe('federation-global');
    expect(md?.weights.size).toBeGreaterThan(0);
    await putModelFile(db, a.id, 'model.onnx', new Uint8Array([1, 2, 3]));
    expect((await listModels(db)).find((m) => m.id === a.id)).toMatchObject({
      hasOnnx: true,
      bytes: a.bytes + 3,
    });
    // Deleting a dataset never touches models (they live under dataset id '').
    await deleteDataset(db, 'whatever');
    expect(await listModels(db)).toHaveLength(2);
    expect(await deleteModel(db, a.id)).toBe(true);
    expect(await deleteModel(db, a.id)).toBe(false);
    expect((await listModels(db)).map((m) => m.name)).toEqual(['B']);
    expect(await loadModelFiles(db, a.id)).toBeUndefined();
  });

  it('refuses a package with a missing or truncated file', async () => {
    const { db } = await freshStore();
    const files = await tinyPackage();
    const { 'dataset.json': _d, ...noDataset } = files;
    await expect(saveModel(db, noDataset, { name: 'x', source: 'imported' })).rejects.toThrow(
      /no dataset.json/,
    );
    await expect(
      saveModel(
        db,
        { ...files, 'weights.bin': files['weights.bin'].subarray(4) },
        { name: 'x', source: 'imported' },
      ),
    ).rejects.toThrow(/weights.bin/);
    expect(await listModels(db)).toHaveLength(0);
  });
});
