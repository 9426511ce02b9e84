// Fingerprint → plan → preprocess in the data worker over Chromium's IndexedDB, from the page.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REFERENCE } from '../paths.ts';
import { openApp, screenshot, type AppSession } from './harness.ts';
import type { HookedWindow } from '../../src/ui/main.ts';

describe('dataset preparation in the browser worker', () => {
  let s: AppSession;
  let work: string;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'prepare-'));
    s = await openApp({ webgpu: false });
  });
  afterAll(async () => {
    await s?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("801: plans nnU-Net's 3d_fullres network and stores every preprocessed case", async () => {
    const dir = join(work, 'Dataset801_PhantomMR');
    cpSync(join(REFERENCE, 'raw', 'Dataset801_PhantomMR'), dir, { recursive: true });
    await s.page.setInputFiles('#import-folder', dir);
    await s.page.waitForSelector('#import-result p.ok', { timeout: 120_000 });
    const id = await s.page.getAttribute('details[data-dataset="Dataset801_PhantomMR"]', 'data-id');
    await s.page.click('details[data-dataset="Dataset801_PhantomMR"] summary');
    await s.page.click(`button[data-prepare="${id}"]`);
    await s.page.waitForSelector(`[data-prepare-result="${id}"] dl`, { timeout: 240_000 });
    const text = (k: string) => s.page.textContent(`[data-prepare-result="${id}"] [data-k="${k}"]`);
    expect(await text('patch')).toBe('64 × 80 × 80');
    expect(await text('batch')).toBe('2');
    expect(await text('spacing')).toBe('1.200 × 1.000 × 1.000');
    expect(await text('cases')).toBe('5 cases stored');
    const status = await s.page.textContent(`[data-prepare-status="${id}"]`);
    console.log(`[browser worker, 801] ${status}`);
    const prepared = await s.page.evaluate(
      (i) => (window as unknown as HookedWindow).__fednnunet.data.prepared(i),
      id!,
    );
    expect(prepared).toEqual([{ plansName: 'nnUNetPlans', configuration: '3d_fullres', cases: 5 }]);
    await screenshot(s.page, 'data-prepared');
    expect(s.errors).toEqual([]);
  });

  it('"Use demo data" generates a synthetic site in the browser, ready to prepare', async () => {
    await s.page.selectOption('#demo-site', '1');
    await s.page.click('#use-demo');
    await s.page.waitForFunction(
      () =>
        document
          .querySelector('#import-result')
          ?.textContent?.includes('Imported Dataset902_DemoSiteB: 5 case(s)'),
      undefined,
      { timeout: 120_000 },
    );
    const id = await s.page.getAttribute('details[data-dataset="Dataset902_DemoSiteB"]', 'data-id');
    await s.page.click('details[data-dataset="Dataset902_DemoSiteB"] summary');
    await s.page.click(`button[data-prepare="${id}"]`);
    await s.page.waitForSelector(`[data-prepare-result="${id}"] dl`, { timeout: 240_000 });
    expect(await s.page.textContent(`[data-prepare-result="${id}"] [data-k="cases"]`)).toBe(
      '5 cases stored',
    );
    expect(s.errors).toEqual([]);
  });
});
