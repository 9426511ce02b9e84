// The Predict tab's nnU-Net import without the page: the reference results folder (as dropped
// files, and as the zip nnUNetv2_export_model_to_zip writes) is found, imported fold by fold with
// progress by bytes into the browser's model store, and decodes back to the checkpoint's weights
// (the ensemble's second fold included). Wrong layouts and a refused pickle are errors in words.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { zipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { findNnUNetModels, readNnUNetModel } from '../../src/infer/nnunet-folds.ts';
import { nnunetPredictionModel, type NnUNetImportProgress } from '../../src/infer/nnunet-import.ts';
import { loadModel, saveNnUNetModel } from '../../src/infer/stored-models.ts';
import { listModels } from '../../src/store/models.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { givenFilesSource, zipBytesSource } from '../../src/io/zip-source.ts';
import { setReadLimits } from '../../src/io/read-limits.ts';
import {
  filesUnder,
  NNUNET_DS as DS,
  NNUNET_MODEL as MODEL,
  NNUNET_TRAINER as TRAINER,
} from '../nnunet-helpers.ts';
import { freshStore } from './store-helpers.ts';

type GivenFile = { path: string; file: Blob };
/** The results folder as a folder drop gives it: paths start with the folder's name. */
const folderFiles = (): GivenFile[] =>
  filesUnder(MODEL, join(MODEL, '..')).map((f) => ({ path: f.path, file: new Blob([f.bytes]) }));

describe('nnU-Net results folder import (Predict tab, in Node)', () => {
  it('finds the model in a dropped folder and in an export zip; refuses other layouts in words', async () => {
    const [m] = await findNnUNetModels(await givenFilesSource(folderFiles()));
    expect(m.dir).toBe(TRAINER);
    expect(m.folds.map((f) => f.fold)).toEqual([0, 1]);
    expect(m.folds[0].checkpoints.map((c) => c.name)).toEqual(['checkpoint_final.pth']);
    expect(m.folds[0].checkpoints[0].bytes).toBe(
      statSync(join(MODEL, 'fold_0/checkpoint_final.pth')).size,
    );
    // nnUNetv2_export_model_to_zip: Dataset folder / trainer folder / fold_K inside the zip.
    const zfiles = Object.fromEntries(
      filesUnder(MODEL, join(DS, '..')).map((f) => [f.path, f.bytes]),
    );
    const zip = zipSync(zfiles, { level: 1 });
    const zsrc = await givenFilesSource([{ path: 'model.zip', file: new Blob([zip]) }]);
    const [z] = await findNnUNetModels(zsrc);
    expect(z.dir).toBe(`Dataset801_PhantomMR/${TRAINER}`);
    expect(z.folds.map((f) => f.fold)).toEqual([0, 1]);

    const noFold = folderFiles().filter((f) => !f.path.includes('fold_'));
    await expect(findNnUNetModels(await givenFilesSource(noFold))).rejects.toThrow(
      /not an nnU-Net v2 results folder: no fold_K\//,
    );
    const noPlans = folderFiles().filter((f) => !f.path.endsWith('plans.json'));
    await expect(findNnUNetModels(await givenFilesSource(noPlans))).rejects.toThrow(
      /no plans\.json/,
    );
    await expect(
      givenFilesSource([{ path: 'x.zip', file: new Blob([new Uint8Array(40)]) }]),
    ).rejects.toThrow(/x\.zip: no end of central directory/);
  });

  it('stores both folds as one package with progress by bytes; weights equal the checkpoints’', async () => {
    const { db } = await freshStore();
    const src = await givenFilesSource(folderFiles());
    const [found] = await findNnUNetModels(src);
    const events: NnUNetImportProgress[] = [];
    const rec = await saveNnUNetModel(db, src, found, { onProgress: (p) => events.push(p) });
    expect(rec.name).toBe(`${TRAINER}, folds 0 1`);
    expect(rec.configuration).toBe('3d_fullres');
    const total = found.folds.reduce((s, f) => s + f.checkpoints[0].bytes, 0);
    expect(events.map((e) => `${e.fold}:${e.phase}`)).toEqual([
      '0:reading',
      '0:decoding',
      '0:stored',
      '1:reading',
      '1:decoding',
      '1:stored',
    ]);
    expect(events.at(-1)!.bytesDone).toBe(total);
    expect(events.every((e) => e.bytesTotal === total)).toBe(true);

    const md = (await loadModel(db, rec.id))!;
    expect(md.ensemble).toHaveLength(1);
    expect(md.meta.inference_allowed_mirroring_axes).toEqual([0, 1, 2]);
    // The same reader over the folder on disk (as the CLI reads it) gives the same tensors.
    const ref = await readNnUNetModel(fsSource(MODEL));
    for (const [i, m] of [md, ...md.ensemble].entries()) {
      const w = ref.folds[i].weights;
      expect([...m.weights.keys()]).toEqual([...w.keys()]);
      for (const [k, t] of w) expect(m.weights.get(k)!.data).toEqual(t.data);
    }
    // The two folds differ (the second is not the first stored twice).
    const k0 = [...md.weights.keys()][0];
    expect(md.ensemble[0].weights.get(k0)!.data).not.toEqual(md.weights.get(k0)!.data);

    // The stored package is predicted through the CLI's path (predictNnUNetCase, nnU-Net's fp16
    // numerics) with what the CLI gives it for the model read from disk: the same plans,
    // configuration, dataset.json, mirroring axes and folds (whose weights are equal, above).
    const nn = nnunetPredictionModel(md, [md, ...md.ensemble])!;
    expect(nn.plans).toEqual(ref.plans);
    expect(nn.datasetJson).toEqual(ref.datasetJson);
    expect([nn.configuration, nn.mirrorAxes]).toEqual([ref.configuration, ref.mirrorAxes]);
    expect(nn.folds).toHaveLength(ref.folds.length);
    // A model trained in this app is not predicted with nnU-Net's numerics.
    const { meta } = md;
    expect(nnunetPredictionModel({ ...md, meta: { ...meta, nnunet: undefined } }, [md])).toBe(
      undefined,
    );
  });

  it('one fold, and a refused checkpoint leaves nothing stored', async () => {
    const { db } = await freshStore();
    const src = await givenFilesSource(folderFiles());
    const [found] = await findNnUNetModels(src);
    const one = await saveNnUNetModel(db, src, found, { folds: [1] });
    expect((await loadModel(db, one.id))!.ensemble).toEqual([]);
    await expect(saveNnUNetModel(db, src, found, { folds: [3] })).rejects.toThrow(
      /fold 3 has no checkpoint_final\.pth \(available: 0, 1\)/,
    );
    await expect(
      saveNnUNetModel(db, src, found, { checkpoint: 'checkpoint_best.pth' }),
    ).rejects.toThrow(/no fold has a checkpoint_best\.pth/);

    // fold 1's checkpoint replaced by a pickle that calls os.system: refused, fold 0 not kept.
    const evil = zipSync({
      'archive/data.pkl': new Uint8Array([
        0x80,
        0x02,
        0x63,
        ...new TextEncoder().encode('os\nsystem\n'),
        0x58,
        2,
        0,
        0,
        0,
        0x69,
        0x64,
        0x85,
        0x52,
        0x2e,
      ]),
    });
    const bad = folderFiles().map((f) =>
      f.path.endsWith('fold_1/checkpoint_final.pth') ? { ...f, file: new Blob([evil]) } : f,
    );
    const bsrc = await givenFilesSource(bad);
    const [bf] = await findNnUNetModels(bsrc);
    await expect(saveNnUNetModel(db, bsrc, bf)).rejects.toThrow(
      /fold_1\/checkpoint_final\.pth: .*os/,
    );
    expect((await listModels(db)).map((m) => m.id)).toEqual([one.id]);

    // An export zip whose checkpoint entries declare more than the read limit: refused before
    // anything is allocated for them (bounded memory); nothing is stored.
    const zip = zipSync(
      Object.fromEntries(filesUnder(MODEL, join(DS, '..')).map((f) => [f.path, f.bytes])),
      { level: 0 },
    );
    const ck = statSync(join(MODEL, 'fold_0/checkpoint_final.pth')).size;
    const zsrc = await givenFilesSource([{ path: 'm.zip', file: new Blob([zip]) }]);
    const [zf] = await findNnUNetModels(zsrc);
    const old = setReadLimits({ maxVolumeBytes: ck - 1 });
    try {
      await expect(saveNnUNetModel(db, zipBytesSource('m.zip', zip), zf)).rejects.toThrow(
        /fold_0\/checkpoint_final\.pth declares .* more than the .* read limit/,
      );
    } finally {
      setReadLimits(old);
    }
    expect((await listModels(db)).map((m) => m.id)).toEqual([one.id]);
  });
});
