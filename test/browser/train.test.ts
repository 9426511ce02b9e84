// Training in the browser on WebGPU (SwiftShader here): the training step equals the cpu
// backend's, and a reload mid-training resumes from the last epoch's checkpoint in IndexedDB. The
// trained model, exported as .zip from the Predict tab, runs in `fednnunet predict`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_SITES, demoCase } from '../../src/demo/phantoms.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import { readModelFolder } from '../../src/node/model-folder-fs.ts';
import {
  exportModelZip,
  openApp,
  preparedDemo,
  screenshot,
  trainTabOn,
  type AppSession,
} from './harness.ts';
import type { HookedWindow } from '../../src/ui/main.ts';

describe('training in the browser', () => {
  let s: AppSession;
  /** The model id of the finished training run (the resume test makes it). */
  let trained: string | null = null;
  beforeAll(async () => {
    s = await openApp({ webgpu: true });
  });
  afterAll(async () => s?.close());

  it('one deep-supervised training step on WebGPU equals the cpu backend (rel. L2 < 1e-4)', async () => {
    const r = await s.page.evaluate(() =>
      (window as unknown as HookedWindow).__fednnunet.train.gradientCheck(),
    );
    console.log(
      `[webgpu vs cpu training step] loss ${r.loss[0]} vs ${r.loss[1]}, gradients rel. L2 ${r.gradRelL2.toExponential(2)} over ${r.tensors} tensors, worst ${r.worstTensor.name} ${r.worstTensor.relL2.toExponential(2)}`,
    );
    expect(r.tensors).toBeGreaterThan(20);
    expect(Math.abs(r.loss[0] - r.loss[1]) / Math.abs(r.loss[1])).toBeLessThan(1e-4);
    expect(r.gradRelL2).toBeLessThan(1e-4);
    expect(r.worstTensor.relL2).toBeLessThan(1e-3);
  });

  it("a reload mid-training resumes from the last epoch's checkpoint", async () => {
    const EPOCHS = 20;
    // A demo site, prepared (fingerprint → plan → preprocess) through the data worker.
    const id = await preparedDemo(s.page, 0);
    const configure = async () => {
      await trainTabOn(s.page, s.url, id);
      await s.page.fill('#train-epochs', String(EPOCHS));
      await s.page.fill('#train-iters', '1');
      await s.page.fill('#train-val-iters', '1');
      await s.page.fill('#train-tiny-patch', '8');
    };
    await configure();
    await s.page.click('#train-start');
    // Any finished epoch short of the last: with the fast kernels an epoch here takes well under a
    // second, so waiting for exactly "1" could miss it (seen in CI: the run had already finished).
    await s.page
      .waitForFunction(
        (n) => {
          const e = Number(document.querySelector('#train-epoch')?.getAttribute('data-epoch'));
          return e >= 1 && e < n;
        },
        EPOCHS,
        { timeout: 240_000 },
      )
      .catch(async (e) => {
        throw new Error(
          `${e}\nstatus: ${await s.page.textContent('#train-status')}; progress: ${await s.page.textContent('#train-progress')}; page errors: ${s.errors.join(' | ')}`,
        );
      });
    await s.page.reload();
    await configure();
    await s.page.click('#train-start');
    await s.page.waitForFunction(
      () =>
        document
          .querySelector('#train-status')
          ?.textContent?.startsWith('resumed from the checkpoint of epoch'),
      undefined,
      { timeout: 60_000 },
    );
    const resumedFrom = Number(await s.page.getAttribute('#train-status', 'data-resumed'));
    expect(resumedFrom).toBeGreaterThanOrEqual(1);
    await s.page.waitForSelector('#train-status[data-finished="true"]', { timeout: 300_000 });
    expect(await s.page.textContent('#train-status')).toBe(`Training finished: ${EPOCHS} epochs.`);
    // After the reload the page saw exactly the epochs after the checkpoint: none was redone.
    expect(await s.page.getAttribute('#train-epoch', 'data-epoch')).toBe(String(EPOCHS));
    const expected = Array.from(
      { length: EPOCHS - resumedFrom },
      (_, i) => resumedFrom + 1 + i,
    ).join(',');
    expect(await s.page.getAttribute('#train-epoch', 'data-seen')).toBe(expected);
    // The live charts hold what this page saw: a pseudo-Dice point per epoch (0-based), losses.
    const series = async (id: string) =>
      JSON.parse((await s.page.getAttribute(id, 'data-series'))!) as Array<{
        name: string;
        points: Array<[number, number]>;
      }>;
    const dice = (await series('#train-dice-chart')).find((x) => x.name === 'pseudo-Dice')!;
    expect(dice.points.map(([e]) => e + 1).join(',')).toBe(expected);
    expect((await series('#train-loss-chart'))[0].points.length).toBeGreaterThanOrEqual(
      EPOCHS - resumedFrom,
    );
    // The finished run is a model on the Predict tab.
    const model = await s.page.getAttribute('#train-status', 'data-model');
    const models = await s.page.evaluate(() =>
      (window as unknown as HookedWindow).__fednnunet.infer.models(),
    );
    expect(models.some((m) => m.id === model && m.source === 'local')).toBe(true);
    await screenshot(s.page, 'train-resumed');
    expect(s.errors).toEqual([]);
    trained = model;
  });

  it('the trained model, exported as .zip on the Predict tab, runs in `fednnunet predict`', async () => {
    expect(trained).toBeTruthy();
    const model = trained!;
    const EPOCHS = 20;
    const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-train-export-'));
    try {
      const zip = await exportModelZip(s.page, s.url, model, tmp);
      const md = await readModelFolder(zip);
      expect(md.provenance).toMatchObject({
        trained_by: 'browser training',
        method: 'local',
        epochs: EPOCHS,
        iterations: EPOCHS,
      });
      // A case of the same demo site the page trained on (the generator is deterministic).
      const c = demoCase(DEMO_SITES[0], 0, 0);
      const input = join(tmp, `${c.id}_0000.nii.gz`);
      writeFileSync(input, writeNifti(c.image, { gzip: true }));
      const out = join(tmp, 'seg.nii.gz');
      const r = spawnSync(
        process.execPath,
        [
          'bin/fednnunet.js',
          'predict',
          '--model',
          zip,
          '-i',
          input,
          '-o',
          out,
          '--backend',
          'ort-node',
          '--step-size',
          '1',
        ],
        { encoding: 'utf8' },
      );
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      console.log(r.stdout.trim());
      expect(readNifti(new Uint8Array(readFileSync(out)), out).dims).toEqual(c.image.dims);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    expect(s.errors).toEqual([]);
  }, 300_000);
});
