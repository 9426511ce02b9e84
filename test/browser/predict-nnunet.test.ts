// A model trained by nnU-Net v2 itself, run in the browser (issue 16): the reference results folder
// (Dataset801_PhantomMR, 3d_fullres, folds 0 and 1) is picked on the Predict tab, fold 0's
// checkpoint_final.pth imported (parsed by the safe .pth reader in the infer worker, with the
// progress bar), and mrA_000 segmented without mirroring twice: with the Automatic engine
// (onnxruntime-web; WebAssembly on this software WebGPU adapter, SwiftShader) and with TensorFlow.js
// on WebGPU (SwiftShader) with our kernels. The worker predicts an imported model as the CLI does
// (predictNnUNetCase: nnUNetPredictor's fp16 numerics). The downloaded label map is compared with
// nnUNetPredictor's own (predictions/fold0_nomirror/mrA_000.nii.gz): ≥ 99.99 % identical voxels
// (measured: 100 % on both engines; the margin is for an fp16 rounding step that an engine's other
// summation order can flip, docs/nnunet-parity.md). The tab does not expose probabilities, so they
// are not compared here (nnunet-parity.test.ts does; nnunet-import.test.ts checks that a stored
// package predicts exactly as the model read from disk). Then a ResidualEncoderUNet results folder
// (test/reference/resenc: random weights, nnU-Net's ResEnc plans layout) is imported the same way
// and its labels for a phantom case must equal the Node pipeline's (onnxruntime-node), whose
// network resenc.test.ts checks against torch's logits; its "Export for nnU-Net" zip must hold the
// checkpoint's weights exactly.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNifti } from '../../src/io/nifti.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import { ellipsoidPhantom } from '../../src/demo/ellipsoid-phantom.ts';
import { predictNnUNetCase } from '../../src/infer/nnunet-model.ts';
import { readNnUNetFolds, readNnUNetModel } from '../../src/infer/nnunet-folds.ts';
import { zipBytesSource } from '../../src/io/zip-source.ts';
import { buildOnnxModel } from '../../src/infer/onnx-export.ts';
import { createOrtSession, ortTilePredictor } from '../../src/infer/ort.ts';
import { configurationInfo } from '../../src/infer/predictor.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { RESENC_MODEL } from '../nnunet-helpers.ts';
import { REFERENCE } from '../paths.ts';
import { openApp, type AppSession } from './harness.ts';

const DS = join(REFERENCE, 'nnunet-model', 'Dataset801_PhantomMR');
const MODEL = join(DS, 'nnUNetTrainer__nnUNetPlans__3d_fullres');
const SCAN = join(REFERENCE, 'raw', 'Dataset801_PhantomMR', 'imagesTr', 'mrA_000_0000.nii.gz');
const NNUNET_SEG = join(DS, 'predictions', 'fold0_nomirror', 'mrA_000.nii.gz');
const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-predict-nnunet-'));
let s: AppSession;

beforeAll(async () => {
  s = await openApp({ webgpu: true, path: '#predict' });
});
afterAll(async () => {
  await s?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('Predict tab: an nnU-Net v2 results folder', () => {
  it('a folder that is neither kind of model is refused in plain words', async () => {
    const bad = join(tmp, 'NotAModel');
    mkdirSync(bad, { recursive: true });
    writeFileSync(join(bad, 'plans.json'), readFileSync(join(MODEL, 'plans.json')));
    await s.page.setInputFiles('#model-import-folder', bad);
    await s.page.waitForSelector('#model-status.bad');
    expect(await s.page.textContent('#model-status')).toMatch(
      /neither this app’s model folder .* nor an nnU-Net model .*no fold_K.*Nothing was stored/,
    );
    expect(await s.page.isHidden('#nnunet-import')).toBe(true);
  });

  it('imports fold 0 with a progress bar and segments mrA_000 as nnU-Net does (≥ 99.99 % of voxels)', async () => {
    const { page } = s;
    const t0 = Date.now();
    await page.setInputFiles('#model-import-folder', MODEL);
    await page.waitForSelector('#nnunet-import:not([hidden])');
    // Both folds are offered and ticked; fold 1 is unticked here.
    expect(await page.locator('#nnunet-folds input[data-fold]').count()).toBe(2);
    expect(await page.isChecked('#nnunet-folds input[data-fold="1"]')).toBe(true);
    await page.uncheck('#nnunet-folds input[data-fold="1"]');
    // Record the progress bar's values as the worker reports them.
    await page.evaluate(() => {
      const p = document.querySelector<HTMLProgressElement>('#nnunet-import-progress')!;
      const seen: string[] = [];
      (window as unknown as { __progress: string[] }).__progress = seen;
      new MutationObserver(() => seen.push(`${p.value}/${p.max}`)).observe(p, {
        attributes: true,
      });
    });
    await page.click('#nnunet-import-run');
    await page.waitForSelector('#nnunet-import-status.ok');
    const tImport = Date.now() - t0;
    console.log(`imported in ${(tImport / 1000).toFixed(1)} s`);
    const progress = await page.evaluate(
      () => (window as unknown as { __progress: string[] }).__progress,
    );
    const ckBytes = readFileSync(join(MODEL, 'fold_0', 'checkpoint_final.pth')).length;
    expect(progress).toContain(`${ckBytes}/${ckBytes}`);
    const name = 'nnUNetTrainer__nnUNetPlans__3d_fullres, fold 0';
    expect(await page.textContent('#model-list')).toContain(name);
    expect(await page.textContent('#predict-model option:checked')).toContain(name);

    await page.setInputFiles('#scan-files', SCAN);
    const ref = readNifti(new Uint8Array(readFileSync(NNUNET_SEG)), 'nnU-Net');
    // Automatic: onnxruntime-web on WebAssembly on this software adapter (SwiftShader), the fast
    // choice here; then TensorFlow.js on WebGPU (SwiftShader) with our kernels.
    for (const [backend, engine] of [
      ['auto', /^onnxruntime-web wasm/],
      ['tfjs', /webgpu/i],
    ] as const) {
      await page.selectOption('#predict-backend', backend);
      expect(await page.isChecked('#predict-tta')).toBe(false);
      const t1 = Date.now();
      await page.click('#predict-run');
      await page.waitForSelector('#predict-status[data-phase="done"]', { timeout: 500_000 });
      const tPredict = Date.now() - t1;
      expect(await page.textContent('#predict-error')).toBe('');
      const used = (await page.getAttribute('#predict-result', 'data-engine')) ?? '';
      expect(used).toMatch(engine);
      const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download-seg')]);
      const ours = readNifti(new Uint8Array(readFileSync((await dl.path())!)), 'downloaded');
      expect(ours.dims).toEqual(ref.dims);
      let same = 0;
      const fg = [0, 0];
      for (let i = 0; i < ref.data.length; i++) {
        if (ours.data[i] === ref.data[i]) same++;
        if (ref.data[i] > 0) fg[0]++;
        if (ours.data[i] > 0) fg[1]++;
      }
      const frac = same / ref.data.length;
      console.log(
        `nnU-Net fold 0 in the browser on ${used} (no mirroring): ${same} of ${ref.data.length} voxels equal nnU-Net's labels (${(100 * frac).toFixed(3)} %); foreground ${fg[1]} vs ${fg[0]}; import ${(tImport / 1000).toFixed(1)} s, prediction ${(tPredict / 1000).toFixed(1)} s`,
      );
      expect(fg[0]).toBeGreaterThan(1000); // the reference labels something
      expect(frac).toBeGreaterThanOrEqual(0.9999);
      // The next run must not read this run's finished state.
      await page.evaluate(() =>
        document.querySelector('#predict-status')?.removeAttribute('data-phase'),
      );
    }
    expect(s.errors).toEqual([]);
  }, 900_000);

  it('imports a ResidualEncoderUNet model (nnU-Net ResEnc plans), segments as the Node pipeline does, and exports it back for nnU-Net', async () => {
    const { page } = s;
    // A 24³ phantom at 1 mm (the model's spacing: no resampling), as a NIfTI file.
    const { image } = ellipsoidPhantom(7, 24);
    const scan = join(tmp, 'resenc_case_0000.nii.gz');
    writeFileSync(scan, writeNifti(image));
    await page.setInputFiles('#model-import-folder', RESENC_MODEL);
    await page.waitForSelector('#nnunet-import:not([hidden])');
    expect(await page.locator('#nnunet-folds input[data-fold]').count()).toBe(1);
    await page.click('#nnunet-import-run');
    await page.waitForSelector('#nnunet-import-status.ok');
    const name = 'nnUNetTrainer__nnUNetResEncUNetPlans__3d_fullres, fold 0';
    expect(await page.textContent('#predict-model option:checked')).toContain(name);

    await page.setInputFiles('#scan-files', scan);
    await page.selectOption('#predict-backend', 'auto');
    await page.click('#predict-run');
    await page.waitForSelector('#predict-status[data-phase="done"]', { timeout: 300_000 });
    expect(await page.textContent('#predict-error')).toBe('');
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download-seg')]);
    const ours = readNifti(new Uint8Array(readFileSync((await dl.path())!)), 'downloaded');

    // The same case through the same pipeline in Node (onnxruntime-node; resenc.test.ts checks
    // that network against torch's logits).
    const m = await readNnUNetModel(fsSource(RESENC_MODEL));
    const { patch } = configurationInfo(m.plans, m.configuration);
    const session = await createOrtSession(buildOnnxModel(m.arch, m.folds[0].weights), {
      backend: 'ort-node',
    });
    let ref;
    try {
      ref = await predictNnUNetCase(image, m, [
        ortTilePredictor(session, patch, m.arch.inputChannels),
      ]);
    } finally {
      await session.release();
    }
    expect(ours.dims).toEqual(ref.segmentation.dims);
    let same = 0;
    for (let i = 0; i < ours.data.length; i++)
      if (ours.data[i] === ref.segmentation.data[i]) same++;
    const frac = same / ours.data.length;
    console.log(
      `ResEnc in the browser (${await page.getAttribute('#predict-result', 'data-engine')}): ${same} of ${ours.data.length} voxels equal the Node pipeline's labels`,
    );
    expect(new Set(ref.segmentation.data).size).toBeGreaterThan(1); // random weights, not all one label
    expect(frac).toBeGreaterThanOrEqual(0.999); // an fp16 rounding step may flip a voxel (see above)

    // Exported back for nnU-Net from the tab: fold 0's checkpoint holds the imported weights exactly.
    const row = page.locator('#model-list > *', { hasText: name });
    const [nnDl] = await Promise.all([
      page.waitForEvent('download'),
      row.locator('[data-export-nnunet]').click(),
    ]);
    const zip = new Uint8Array(readFileSync((await nnDl.path())!));
    let folds = 0;
    for await (const f of readNnUNetFolds(zipBytesSource('resenc.zip', zip))) {
      folds++;
      expect(f.model.architecture?.network_class_name).toMatch(/ResidualEncoderUNet$/);
      expect(f.model.weights.size).toBe(m.folds[0].weights.size);
      for (const [k, t] of m.folds[0].weights)
        expect(Array.from(f.model.weights.get(k)!.data), k).toEqual(Array.from(t.data));
    }
    expect(folds).toBe(1);
    expect(s.errors).toEqual([]);
  }, 600_000);
});
