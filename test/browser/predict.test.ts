// The Predict tab end to end (issue 8's acceptance test): import a tiny model folder (written here
// with writeModelFolder from a randomly initialised PlainConvUNet) and a NIfTI scan through the page's
// file inputs, segment on onnxruntime-web (WebGPU on SwiftShader), see the overlay in niivue,
// download the .nii.gz and compare it in Node with predictCase on tfjs-cpu: same dims and affine,
// ≥ 99.9 % identical labels. Also: model export (.zip, .onnx), volume table, plain-words errors.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unzipSync, zipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelFromFolder } from '../../src/model/model-folder.ts';
import { readModelFolder, writeModelFolder } from '../../src/node/model-folder-fs.ts';
import { inspectOnnx } from '../../src/infer/onnx-export.ts';
import { configurationInfo, predictCase, tfjsTilePredictor } from '../../src/infer/predictor.ts';
import { readNnUNetFolds } from '../../src/infer/nnunet-folds.ts';
import { zipBytesSource } from '../../src/io/zip-source.ts';
import { openZipBytes } from '../../src/io/zip-archive.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { readDicomVolume } from '../../src/io/dicom.ts';
import { readdirSync } from 'node:fs';
import { REFERENCE, FIXTURES } from '../paths.ts';
import { randomizeWeights, tinyConfig } from '../unit/infer-helpers.ts';
import { openApp, screenshot, type AppSession } from './harness.ts';
import type { HookedWindow } from '../../src/ui/main.ts';

const RAW = join(REFERENCE, 'raw', 'Dataset801_PhantomMR');
const SCAN = join(RAW, 'imagesTr', 'mrA_000_0000.nii.gz');
const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-predict-ui-'));
const modelDir = join(tmp, 'TinyPhantomModel');
let expected: Uint8Array | Uint16Array;
let s: AppSession;

beforeAll(async () => {
  await useBackend('cpu');
  // Dataset801's plans with a tiny network at coarse spacing: the scan is one 32×40×40 tile.
  const plans = JSON.parse(
    readFileSync(join(REFERENCE, 'plans', 'Dataset801_PhantomMR', 'nnUNetPlans.json'), 'utf8'),
  );
  const cfg = plans.configurations['3d_fullres'];
  cfg.architecture = tinyConfig(3, [
    [1, 1, 1],
    [2, 2, 2],
    [2, 2, 2],
  ]).architecture;
  cfg.spacing = [2.4, 2, 2];
  cfg.patch_size = [32, 40, 40];
  const datasetJson = JSON.parse(readFileSync(join(RAW, 'dataset.json'), 'utf8'));
  const model = PlainConvUNet.fromPlan(cfg, 1, Object.keys(datasetJson.labels).length, { seed: 4 });
  const weights = await randomizeWeights(model, 21);
  model.dispose();
  await writeModelFolder(modelDir, {
    plans,
    datasetJson,
    configuration: '3d_fullres',
    weights,
    meta: { training: { epochs: 0, note: 'random init' } },
  });
  // The reference: the same model folder through predictCase in Node (tfjs cpu, no TTA).
  const md = await readModelFolder(modelDir);
  const net = modelFromFolder(md);
  const { patch } = configurationInfo(md.plans, md.configuration);
  const r = await predictCase(
    readNifti(new Uint8Array(readFileSync(SCAN))),
    { plans: md.plans, configuration: md.configuration, datasetJson: md.datasetJson },
    tfjsTilePredictor(net, patch),
  );
  net.dispose();
  expected = r.segmentation.data as Uint8Array;
  s = await openApp({ webgpu: true, path: '#predict' });
});
afterAll(async () => {
  await s?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('Predict tab', () => {
  it('a folder without weights is refused in plain words, nothing stored', async () => {
    const bad = join(tmp, 'NotAModel');
    mkdirSync(bad, { recursive: true });
    for (const f of ['model.json', 'plans.json', 'dataset.json'])
      writeFileSync(join(bad, f), readFileSync(join(modelDir, f)));
    await s.page.setInputFiles('#model-import-folder', bad);
    await s.page.waitForSelector('#model-status.bad');
    expect(await s.page.textContent('#model-status')).toMatch(
      /could not be imported: .*no weights.json.*Nothing was stored/,
    );
    expect(await s.page.locator('#no-models').count()).toBe(1);
  });

  it('imports the model folder and a NIfTI scan, segments with Automatic (WebAssembly on this software adapter), shows the overlay', async () => {
    const { page } = s;
    await page.setInputFiles('#model-import-folder', modelDir);
    await page.waitForSelector('#model-status.ok');
    expect(await page.textContent('#model-list')).toContain('TinyPhantomModel');
    await page.setInputFiles('#scan-files', SCAN);
    expect(await page.textContent('#scan-chosen')).toContain('mrA_000_0000.nii.gz');
    await page.selectOption('#predict-backend', 'auto');
    // Keyboard: the run button is reachable and starts the job with Enter.
    await page.focus('#predict-run');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#predict-status[data-phase="done"]', { timeout: 240_000 });
    expect(await page.textContent('#predict-error')).toBe('');
    const engine = await page.getAttribute('#predict-result', 'data-engine');
    console.log(await page.textContent('#predict-result'));
    // SwiftShader is a software adapter: Automatic takes WebAssembly and says why (issue 19, item 4).
    expect(engine).toMatch(/^onnxruntime-web wasm/);
    expect(await page.getAttribute('#predict-result', 'data-engine-reason')).toMatch(/software/);
    // niivue holds the scan and the label map, and the canvas shows more than a blank fill.
    await page.waitForFunction(
      () => (window as unknown as HookedWindow).__fednnunet.predict.viewer.volumesLoaded() === 2,
    );
    await page.waitForTimeout(500);
    const png = await page.locator('#viewer-canvas').screenshot();
    const colours = await page.evaluate(async (b64) => {
      const img = await createImageBitmap(
        await (await fetch(`data:image/png;base64,${b64}`)).blob(),
      );
      const c = new OffscreenCanvas(img.width, img.height);
      const g = c.getContext('2d')!;
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, img.width, img.height).data;
      const set = new Set<number>();
      let coloured = 0;
      for (let i = 0; i < d.length; i += 4) {
        set.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        // Label 2 ('lesion', the only label this random net predicts) is drawn sky blue
        // (Okabe-Ito 86,180,233): over the grey scan, blue well above red.
        if (d[i + 2] > d[i] + 40 && d[i + 1] > d[i] + 20) coloured++;
      }
      return { distinct: set.size, coloured, total: d.length / 4 };
    }, png.toString('base64'));
    console.log(
      `viewer canvas: ${colours.distinct} distinct colours, ${colours.coloured} of ${colours.total} pixels sky blue (overlay)`,
    );
    expect(colours.distinct).toBeGreaterThan(50); // grey scan levels
    expect(colours.coloured).toBeGreaterThan(1000); // the label colour over it
    await screenshot(page, 'predict-overlay');
    expect(s.errors).toEqual([]);
  });

  it('downloads the .nii.gz: input dims and affine, labels = predictCase in Node (≥ 99.9 %), volumes in ml agree', async () => {
    const { page } = s;
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download-seg')]);
    expect(dl.suggestedFilename()).toBe('mrA_000_seg.nii.gz');
    const bytes = new Uint8Array(readFileSync((await dl.path())!));
    const seg = readNifti(bytes, 'downloaded');
    const input = readNifti(new Uint8Array(readFileSync(SCAN)));
    expect(seg.dims).toEqual(input.dims);
    expect(seg.spacing).toEqual(input.spacing);
    for (let i = 0; i < 16; i++) expect(seg.affine[i]).toBeCloseTo(input.affine[i], 5);
    expect(seg.data.length).toBe(expected.length);
    let same = 0;
    const counts = new Map<number, number>();
    for (let i = 0; i < expected.length; i++) {
      if (seg.data[i] === expected[i]) same++;
      counts.set(seg.data[i], (counts.get(seg.data[i]) ?? 0) + 1);
    }
    const frac = same / expected.length;
    console.log(
      `browser (ORT WebGPU) vs Node (tfjs cpu): ${same} of ${expected.length} voxels equal (${(100 * frac).toFixed(3)} %); labels ${[
        ...counts,
      ]
        .sort((a, b) => a[0] - b[0])
        .map(([k, n]) => `${k}:${n}`)
        .join(' ')}`,
    );
    expect(frac).toBeGreaterThanOrEqual(0.999);
    expect(counts.size).toBeGreaterThan(1); // a random net still labels something
    const voxelMl = (input.spacing[0] * input.spacing[1] * input.spacing[2]) / 1000;
    const rows = await page.$$eval('#volume-table tbody tr', (trs) =>
      trs.map((t) => ({
        label: Number((t as HTMLElement).dataset.label),
        voxels: Number((t as HTMLElement).dataset.voxels),
        ml: Number((t as HTMLElement).dataset.ml),
      })),
    );
    expect(rows.map((r) => r.label)).toEqual([1, 2]);
    for (const r of rows) {
      expect(r.voxels).toBe(counts.get(r.label) ?? 0);
      expect(r.ml).toBeCloseTo(r.voxels * voxelMl, 6);
    }
  });

  it('exports the model as .zip (same files) and as .onnx (built from the weights)', async () => {
    const { page } = s;
    const id = await page.getAttribute('#model-list li[data-model="TinyPhantomModel"]', 'data-id');
    const [zipDl] = await Promise.all([
      page.waitForEvent('download'),
      page.click(`[data-export-model="${id}"]`),
    ]);
    const files = unzipSync(new Uint8Array(readFileSync((await zipDl.path())!)));
    for (const f of ['model.json', 'plans.json', 'dataset.json', 'weights.json', 'weights.bin']) {
      expect(files[f], f).toEqual(new Uint8Array(readFileSync(join(modelDir, f))));
    }
    const [onnxDl] = await Promise.all([
      page.waitForEvent('download'),
      page.click(`[data-export-onnx="${id}"]`),
    ]);
    const info = inspectOnnx(new Uint8Array(readFileSync((await onnxDl.path())!)));
    expect(info.arch?.features).toEqual([4, 8, 16]);
    await page.waitForFunction(() =>
      document.querySelector('#model-list')?.textContent?.includes('with ONNX'),
    );
    // nnU-Net's export zip: read back in Node, fold 0 holds the model's weights exactly
    const [nnDl] = await Promise.all([
      page.waitForEvent('download'),
      page.click(`[data-export-nnunet="${id}"]`),
    ]);
    expect(nnDl.suggestedFilename()).toMatch(/_nnunet\.zip$/);
    const zip = new Uint8Array(readFileSync((await nnDl.path())!));
    const names = openZipBytes(zip).entries.map((e) => e.name);
    expect(
      names.some((n) =>
        /^Dataset\d{3}_[^/]+\/nnUNetTrainer__[^/]+__[^/]+\/fold_0\/checkpoint_final\.pth$/.test(n),
      ),
    ).toBe(true);
    const own = await readModelFolder(modelDir);
    let folds = 0;
    for await (const f of readNnUNetFolds(zipBytesSource('e.zip', zip))) {
      folds++;
      for (const [k, t] of own.weights)
        expect(Array.from(f.model.weights.get(k)!.data), k).toEqual(Array.from(t.data));
    }
    expect(folds).toBe(1);
    await page.waitForFunction(() =>
      document.querySelector('#model-status')?.textContent?.includes('nnUNetv2_predict'),
    );
  });

  it('a scan that is not an image is refused in plain words', async () => {
    const { page } = s;
    const junk = join(tmp, 'notes.txt');
    writeFileSync(junk, 'not a scan');
    await page.setInputFiles('#scan-files', junk);
    await page.click('#predict-run');
    await page.waitForSelector('#predict-error p.bad');
    const msg = await page.textContent('#predict-error');
    console.log(msg);
    expect(msg).toMatch(/could not be read|neither NIfTI/);
    expect(await page.isEnabled('#predict-run')).toBe(true);
  });

  it('segments a DICOM folder (label map on the series grid); a series with mixed orientations is refused in plain words', async () => {
    const { page } = s;
    const dir = join(FIXTURES, 'dicom-ct-phantom');
    const series = readDicomVolume(
      readdirSync(dir).map((f) => ({ name: f, bytes: new Uint8Array(readFileSync(join(dir, f))) })),
    );
    await page.setInputFiles('#scan-folder', dir);
    expect(await page.textContent('#scan-chosen')).toContain('read as DICOM');
    await page.click('#predict-run');
    await page.waitForSelector('#predict-status[data-phase="done"]', { timeout: 240_000 });
    const r = await page.evaluate(() => {
      const l = (window as unknown as HookedWindow).__fednnunet.predict.last()!;
      return { dims: l.dims, spacing: l.spacing, affine: l.affine, n: l.labels.length };
    });
    expect(r.dims).toEqual(series.dims);
    expect(r.n).toBe(series.dims[0] * series.dims[1] * series.dims[2]);
    for (let i = 0; i < 16; i++) expect(r.affine[i]).toBeCloseTo(series.affine[i], 5);
    await page.setInputFiles('#scan-folder', join(FIXTURES, 'dicom-mr-series'));
    await page.click('#predict-run');
    await page.waitForSelector('#predict-error p.bad');
    expect(await page.textContent('#predict-error')).toMatch(
      /could not be read: .*mixed orientations/,
    );
    expect(s.errors).toEqual([]);
  });
});

describe('Predict tab without WebGPU', () => {
  let t: AppSession;
  afterAll(async () => t?.close());

  it('imports a .zip package, falls back to onnxruntime-web wasm and gives the same labels', async () => {
    t = await openApp({ webgpu: false, path: '#predict' });
    const { page } = t;
    const files = Object.fromEntries(
      ['model.json', 'plans.json', 'dataset.json', 'weights.json', 'weights.bin'].map((f) => [
        f,
        new Uint8Array(readFileSync(join(modelDir, f))),
      ]),
    );
    const zip = join(tmp, 'Zipped.zip');
    writeFileSync(zip, zipSync({ Zipped: files }));
    await page.setInputFiles('#model-import-zip', zip);
    await page.waitForSelector('#model-status.ok');
    expect(await page.textContent('#model-list')).toContain('Zipped');
    // Threaded wasm from the built app: the page is cross-origin isolated and onnxruntime's thread
    // workers load from dist/ (through the worker API, to ask for 2 threads).
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    const threaded = await page.evaluate(async (b64) => {
      const f = (window as unknown as HookedWindow).__fednnunet;
      const [m] = await f.infer.models();
      const file = new File(
        [Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))],
        'mrA_000_0000.nii.gz',
      );
      const r = await f.infer.predict(
        m.id,
        { files: [{ path: file.name, file }] },
        { backend: 'onnx-wasm', numThreads: 2 },
        f.proxy(() => undefined),
      );
      return { engine: r.engine, labels: Array.from(r.labels as Uint8Array) };
    }, readFileSync(SCAN).toString('base64'));
    expect(threaded.engine).toBe('onnxruntime-web wasm (2 threads)');
    expect(
      threaded.labels.filter((v, i) => v === expected[i]).length / expected.length,
    ).toBeGreaterThanOrEqual(0.999);
    await page.setInputFiles('#scan-files', SCAN);
    await page.click('#predict-run');
    await page.waitForSelector('#predict-status[data-phase="done"]', { timeout: 240_000 });
    expect(await page.getAttribute('#predict-result', 'data-engine')).toMatch(
      /^onnxruntime-web wasm/,
    );
    const labels = await page.evaluate(() =>
      Array.from(
        (window as unknown as HookedWindow).__fednnunet.predict.last()!.labels as Uint8Array,
      ),
    );
    let same = 0;
    for (let i = 0; i < expected.length; i++) if (labels[i] === expected[i]) same++;
    console.log(
      `browser (ORT wasm) vs Node (tfjs cpu): ${same} of ${expected.length} voxels equal`,
    );
    expect(same / expected.length).toBeGreaterThanOrEqual(0.999);
    // The GPU engines say plainly what to choose instead.
    await page.selectOption('#predict-backend', 'tfjs');
    await page.click('#predict-run');
    await page.waitForSelector('#predict-error p.bad');
    expect(await page.textContent('#predict-error')).toMatch(
      /no WebGPU.*Choose “Automatic” or “ONNX on WebAssembly”/,
    );
    expect(t.errors).toEqual([]);
  });
});
