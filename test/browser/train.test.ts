// Training in the browser on WebGPU (SwiftShader here): the training step equals the cpu
// backend's, and a reload mid-training resumes from the last epoch's checkpoint in IndexedDB.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApp, screenshot, type AppSession } from './harness.ts';

describe('training in the browser', () => {
  let s: AppSession;
  beforeAll(async () => {
    s = await openApp({ webgpu: true });
  });
  afterAll(async () => s?.close());

  it('one deep-supervised training step on WebGPU equals the cpu backend (rel. L2 < 1e-4)', async () => {
    const r = await s.page.evaluate(() => (window as any).__fednnunet.train.gradientCheck());
    console.log(`[webgpu vs cpu training step] loss ${r.loss[0]} vs ${r.loss[1]}, gradients rel. L2 ${r.gradRelL2.toExponential(2)} over ${r.tensors} tensors, worst ${r.worstTensor.name} ${r.worstTensor.relL2.toExponential(2)}`);
    expect(r.tensors).toBeGreaterThan(20);
    expect(Math.abs(r.loss[0] - r.loss[1]) / Math.abs(r.loss[1])).toBeLessThan(1e-4);
    expect(r.gradRelL2).toBeLessThan(1e-4);
    expect(r.worstTensor.relL2).toBeLessThan(1e-3);
  });

  it('a reload mid-training resumes from the last epoch\'s checkpoint', async () => {
    const EPOCHS = 20;
    // A demo site, prepared (fingerprint → plan → preprocess) through the data worker.
    const id = await s.page.evaluate(async () => {
      const f = (window as any).__fednnunet;
      const r = await f.data.importDemo(0, f.proxy(() => undefined));
      await f.data.prepare(r.datasetId, { configuration: '3d_fullres' }, f.proxy(() => undefined));
      return r.datasetId;
    });
    const configure = async () => {
      await s.page.goto(`${s.url}#train`);
      await s.page.waitForSelector('body[data-ready="true"]');
      await s.page.waitForFunction((i) => [...document.querySelectorAll('#train-dataset option')].some((o) => (o as HTMLOptionElement).value === i), id);
      await s.page.selectOption('#train-dataset', id);
      await s.page.fill('#train-epochs', String(EPOCHS));
      await s.page.fill('#train-iters', '1');
      await s.page.fill('#train-val-iters', '1');
      await s.page.fill('#train-tiny-patch', '8');
    };
    await configure();
    await s.page.click('#train-start');
    // Any finished epoch short of the last: with the fast kernels an epoch here takes well under a
    // second, so waiting for exactly "1" could miss it (seen in CI: the run had already finished).
    await s.page.waitForFunction((n) => { const e = Number(document.querySelector('#train-epoch')?.getAttribute('data-epoch')); return e >= 1 && e < n; }, EPOCHS, { timeout: 240_000 }).catch(async (e) => {
      throw new Error(`${e}\nstatus: ${await s.page.textContent('#train-status')}; progress: ${await s.page.textContent('#train-progress')}; page errors: ${s.errors.join(' | ')}`);
    });
    await s.page.reload();
    await configure();
    await s.page.click('#train-start');
    await s.page.waitForFunction(() => document.querySelector('#train-status')?.textContent?.startsWith('resumed from the checkpoint of epoch'), undefined, { timeout: 60_000 });
    const resumedFrom = Number(await s.page.getAttribute('#train-status', 'data-resumed'));
    expect(resumedFrom).toBeGreaterThanOrEqual(1);
    await s.page.waitForSelector('#train-status[data-finished="true"]', { timeout: 300_000 });
    expect(await s.page.textContent('#train-status')).toBe(`Training finished: ${EPOCHS} epochs.`);
    // After the reload the page saw exactly the epochs after the checkpoint: none was redone.
    expect(await s.page.getAttribute('#train-epoch', 'data-epoch')).toBe(String(EPOCHS));
    const expected = Array.from({ length: EPOCHS - resumedFrom }, (_, i) => resumedFrom + 1 + i).join(',');
    expect(await s.page.getAttribute('#train-epoch', 'data-seen')).toBe(expected);
    // The finished run is a model on the Predict tab.
    const model = await s.page.getAttribute('#train-status', 'data-model');
    const models = await s.page.evaluate(() => (window as any).__fednnunet.infer.models());
    expect(models.some((m: any) => m.id === model && m.source === 'local')).toBe(true);
    await screenshot(s.page, 'train-resumed');
    expect(s.errors).toEqual([]);
  });
});
