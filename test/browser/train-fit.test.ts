// The Train tab's full-or-reduced offer (#train-fit, src/plan/train-fit.ts) in the browser: the
// line says what chooseTrainFit decides on the limits the page's adapter reports, for the demo
// dataset the page prepared (the expectation is computed here, in Node, from the same
// deterministic demo cases). On an adapter whose buffers are too small for nnU-Net's full plan,
// Start trains the reduced plan: the model it leaves has the reduced patch, batch and features.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import { defaultMemoryBudgetMB } from '../../src/plan/budget.ts';
import { chooseTrainFit } from '../../src/plan/train-fit.ts';
import { SitePipeline } from '../../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../../src/pipeline/site-store.ts';
import { readModelFolder } from '../../src/node/model-folder-fs.ts';
import type { ConfigurationPlan } from '../../src/plan/types.ts';
import {
  exportModelZip,
  openApp,
  preparedDemo,
  screenshot,
  trainTabOn,
  type AppSession,
} from './harness.ts';

type Limits = { maxStorageBufferBindingSize: number; maxBufferSize: number };

/** What chooseTrainFit offers for demo site 0's 3d_fullres on these limits (as the Train tab should). */
async function expectedFit(limits: Limits) {
  const ds = demoDataset(DEMO_SITES[0], 0);
  const pipeline = new SitePipeline(memoryCasesStore(ds.name, ds.datasetJson, ds.cases));
  const fp = await pipeline.fingerprint({});
  const budgetMB = defaultMemoryBudgetMB(limits);
  const fit = chooseTrainFit({
    full: pipeline.makePlans(fp).configurations['3d_fullres']!,
    reduced: pipeline.makePlans(fp, { memoryBudgetMB: budgetMB }).configurations['3d_fullres']!,
    budgetMB,
    limits,
    inChannels: Object.keys(ds.datasetJson.channel_names ?? {}).length,
    numClasses: Object.keys(ds.datasetJson.labels).length,
  });
  return { ...fit, budgetMB };
}

/** The buffer limits of a WebGPU adapter this page requests itself (not the app's own reading). */
const adapterLimits = (page: Page): Promise<Limits> =>
  page.evaluate(async () => {
    const a = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!a) throw new Error('no WebGPU adapter');
    return {
      maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize,
      maxBufferSize: a.limits.maxBufferSize,
    };
  });

/**
 * An init script: this page's adapters report at most `cap` bytes for both buffer limits. Only
 * the page (where the Train tab reads them) sees it; the train worker uses the real adapter.
 */
function capBufferLimits(cap: number): void {
  const proto = (globalThis as { GPUSupportedLimits?: { prototype: object } }).GPUSupportedLimits
    ?.prototype;
  if (!proto) return;
  for (const key of ['maxBufferSize', 'maxStorageBufferBindingSize']) {
    const d = Object.getOwnPropertyDescriptor(proto, key);
    const get = d?.get;
    if (!get) continue;
    Object.defineProperty(proto, key, {
      ...d,
      get() {
        return Math.min(cap, get.call(this) as number);
      },
    });
  }
}

describe("the Train tab's full-or-reduced nnU-Net offer", () => {
  let s: AppSession;
  let datasetId: string;
  beforeAll(async () => {
    s = await openApp({ webgpu: true });
    // Demo site 0, prepared (fingerprint → plan → preprocess) through the data worker.
    datasetId = await preparedDemo(s.page, 0);
  });
  afterAll(async () => s?.close());

  /** Opens the Train tab on the prepared dataset; the fit line once it is filled in. */
  async function fitLine() {
    await trainTabOn(s.page, s.url, datasetId);
    await s.page.waitForSelector('#train-fit[data-offer]');
    return s.page.$eval('#train-fit', (p) => ({
      offer: (p as HTMLElement).dataset.offer,
      text: p.textContent ?? '',
    }));
  }

  it("this adapter: the offer and its reason are chooseTrainFit's on the adapter's limits", async () => {
    const limits = await adapterLimits(s.page);
    const want = await expectedFit(limits);
    const got = await fitLine();
    console.log(
      `[train fit] adapter buffers ${limits.maxBufferSize} B, bindings ${limits.maxStorageBufferBindingSize} B: ${got.text}`,
    );
    expect(got.offer).toBe(want.offer);
    expect(got.text).toContain(want.reason);
    if (want.offer === 'reduced') expect(got.text).toContain(`(${want.budgetMB} MB budget)`);
    expect(s.errors).toEqual([]);
  });

  it('an adapter with 8 MiB buffers: the reduced plan is offered, and Start trains it', async () => {
    await s.page.addInitScript(capBufferLimits, 8 * 2 ** 20);
    await s.page.reload();
    const limits = await adapterLimits(s.page);
    expect(limits).toEqual({
      maxStorageBufferBindingSize: 8 * 2 ** 20,
      maxBufferSize: 8 * 2 ** 20,
    });
    const want = await expectedFit(limits);
    // The demo's full plan (patch 48×56×56, 4 stages) is far over a 32 MB budget.
    expect(want.offer).toBe('reduced');
    const got = await fitLine();
    expect(got.offer).toBe('reduced');
    expect(got.text).toContain(want.reason);
    expect(got.text).toContain(`(${want.budgetMB} MB budget)`);
    await screenshot(s.page, 'train-fit-reduced');

    // nnU-Net's network (not the small preset), one epoch of one iteration.
    await s.page.uncheck('#train-tiny');
    await s.page.fill('#train-epochs', '1');
    await s.page.fill('#train-iters', '1');
    await s.page.fill('#train-val-iters', '1');
    await s.page.click('#train-start');
    await s.page
      .waitForSelector('#train-status[data-finished="true"]', { timeout: 240_000 })
      .catch(async (e) => {
        throw new Error(
          `${e}\nstatus: ${await s.page.textContent('#train-status')}; page errors: ${s.errors.join(' | ')}`,
        );
      });
    const model = (await s.page.getAttribute('#train-status', 'data-model'))!;
    expect(model).toBeTruthy();

    // The model's plans are the reduced plan's: the budget reached the train worker.
    const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-train-fit-'));
    try {
      const zip = await exportModelZip(s.page, s.url, model, tmp);
      const c = (await readModelFolder(zip)).plans.configurations[
        '3d_fullres'
      ] as unknown as ConfigurationPlan;
      const trained = {
        patch: c.patch_size,
        batch: c.batch_size,
        features: c.architecture.arch_kwargs.features_per_stage,
      };
      console.log(
        `[train fit] trained ${JSON.stringify(trained)}; full was ${JSON.stringify(want.full)}`,
      );
      expect(trained).toEqual(want.network);
      expect(trained).not.toEqual(want.full);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    expect(s.errors).toEqual([]);
  });
});
