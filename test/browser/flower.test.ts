// A browser tab as a site of a Flower federation (issue 20 b, e): a real SuperLink on loopback
// (flower/kit), our ServerApp, our relay as the same-origin gateway to the Fleet API, one Chromium
// tab (the Federation tab's "Flower federation" connection, training in its worker on the CPU
// backend) and one Node site. The tab reloads twice: after its round-1 reply (between rounds), and
// in the middle of its round-2 training (Flower delivered that train message once: the tab kept
// it and answers it after the reload). Each time it must come back as the same Flower node and
// continue from its saved state; the run ends with one final model, the ServerApp's.
// Skips, saying why, without the Flower kit's Python dependencies (as the unit test does).
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlowerNode } from '../../src/fed/flower/node.ts';
import { FlowerSite } from '../../src/fed/flower/site.ts';
import { TrainerSite } from '../../src/pipeline/trainer-site.ts';
import { SitePipeline } from '../../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../../src/pipeline/site-store.ts';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { readModelFolder } from '../../src/node/model-folder-fs.ts';
import { flowerKitMissing, startSuperLink, type SuperLink } from '../flower-superlink.ts';
import { importDemo, openAdvanced, useRelaySession } from './harness.ts';

const missing = flowerKitMissing();
if (missing) console.warn(`Flower browser test skipped: ${missing}`);

/** The digest the worker reports: SHA-256 of the float32 bytes, tensors in sorted name order. */
function digestOf(w: Map<string, { data: Float32Array }>): string {
  const h = createHash('sha256');
  for (const k of [...w.keys()].sort()) {
    const d = w.get(k)!.data;
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex');
}

const nodeIdsIn = async (page: Page) =>
  [...((await page.textContent('#fed-log')) ?? '').matchAll(/joined as node (\d+)/g)].map(
    (m) => m[1],
  );

describe.skipIf(!!missing)('a browser site in a Flower federation (relay as gateway)', () => {
  let link: SuperLink;
  let dir: string;
  // Declared before the relay session's hooks, so the SuperLink is up when the relay starts (it
  // proxies the Fleet API to it) and is closed after the relay.
  beforeAll(async () => {
    await useBackend('cpu');
    dir = mkdtempSync(join(tmpdir(), 'flower-browser-'));
    link = await startSuperLink();
  });
  afterAll(() => {
    link?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  // The relay's own federation is unused here; it serves the app and the Fleet API gateway. No
  // WebGPU: the tab trains on tfjs' CPU backend (the small network), as exactly as Node does.
  const s = useRelaySession({
    config: { weighting: 'cases', encoding: 'fp32', token: 'unused' },
    webgpu: false,
    relay: () => ({ flowerSuperlink: link.fleetUrl }),
  });

  it('FFE, 2 rounds, a browser tab and a Node site; the tab reloads after round 1 and in the middle of round 2, rejoins as the same node each time and ends with the final model', async () => {
    const errors: string[] = [];
    const relay = s.relay;
    const page = await s.open(`${relay.url}?flower=1&site=browser-a`, 'browser-a', errors);
    await importDemo(page, 0);
    await page.click('#tab-data');
    await page.click('#tab-federation');
    await page.waitForFunction(() => document.querySelectorAll('#fed-dataset option').length === 1);
    expect(await page.inputValue('#fed-connection')).toBe('flower');
    expect(await page.inputValue('#fed-fleet')).toBe(relay.url.replace(/\/$/, ''));
    expect(await page.isVisible('#fed-token')).toBe(false);
    await openAdvanced(page);
    expect(await page.inputValue('#fed-backend')).toBe('cpu');
    await page.fill('#fed-tiny-patch', '8');

    // The Node site holds its round 1 until the tab has reloaded and rejoined, so the reload
    // falls between the tab's round-1 reply and round 2.
    // The tab's demo dataset again: the planner caps the batch size by the site's own case count,
    // so FFE sites of different sizes plan different batch sizes, which the ServerApp refuses (it
    // requires one plan); this test is about the browser's wiring, not about the data.
    const ds = demoDataset(DEMO_SITES[0], 0);
    const nodeSite = new TrainerSite({
      pipeline: new SitePipeline(memoryCasesStore(ds.name, ds.datasetJson, ds.cases)),
      tiny: { patch: 8 },
      valIters: 0,
      evaluate: false,
    });
    let release!: () => void;
    const rejoined = new Promise<void>((r) => (release = r));
    const train = nodeSite.train.bind(nodeSite);
    nodeSite.train = async (round: number) => {
      if (round === 1) await rejoined;
      return train(round);
    };
    const node = new FlowerNode({ superlink: link.fleetUrl, heartbeatInterval: 120, pollMs: 300 });
    const handler = new FlowerSite(nodeSite);
    await node.join();
    const serving = node
      .serve(handler.handle, { done: () => handler.done })
      .finally(() => node.leave());

    await page.click('#fed-join');
    await page.waitForFunction(() =>
      /joined as node \d+/.test(document.querySelector('#fed-log')?.textContent ?? ''),
    );
    const [nodeId] = await nodeIdsIn(page);
    const model = join(dir, 'model');
    let serverApp = '';
    const run = link.submit(
      {
        method: 'ffe',
        'num-server-rounds': 2,
        // Rounds of many iterations: the second reload lands inside the tab's round 2 (with 4, a
        // loaded machine once ran the whole round between two checks of the page).
        iters: 24,
        'min-nodes': 2,
        tiny: true,
        'out-dir': model,
      },
      (t) => (serverApp = (serverApp + t).slice(-6000)),
    );
    // What a failure needs to be understood: the tab's log and line, the ServerApp's output.
    const explain = async (e: unknown) =>
      new Error(
        `${String(e)}\n--- page errors: ${errors.join('\n')}\n--- tab: ${await page.textContent('#fed-phase').catch(() => '?')} / ${await page.textContent('#fed-status').catch(() => '?')}\n${await page
          .$$eval('#fed-log li', (l) => l.map((x) => x.textContent).join('\n'))
          .catch(
            () => '?',
          )}\n--- ServerApp:\n${serverApp}\n--- SuperLink:\n${link.log().slice(-3000)}`,
      );
    try {
      // The tab's round-1 reply reached the SuperLink (the audit row comes after the push).
      await page.waitForSelector('#egress-rows tr[data-type="update"]', {
        state: 'attached',
        timeout: 240_000,
      });
      await page.reload();
      await page.waitForSelector('body[data-ready="true"]');
      await page.waitForSelector('#fed-status[data-rejoined="true"]', { timeout: 60_000 });
      await page.waitForFunction(() =>
        /joined as node \d+/.test(document.querySelector('#fed-log')?.textContent ?? ''),
      );
      expect(await nodeIdsIn(page)).toEqual([nodeId]);
      expect(await page.textContent('#fed-log')).toContain('resumed after 1 round');
      release();

      // Round 2 under way in the tab (at least one of its 24 iterations done, the reply far off):
      // reload. Polled on a timer, not on animation frames, which a loaded headless page delays.
      await page.waitForFunction(
        () => {
          const p = document.querySelector<HTMLElement>('#fed-phase')?.dataset;
          return p?.step === 'training' && p.round === '2' && Number(p.iteration) >= 1;
        },
        undefined,
        { polling: 50, timeout: 240_000 },
      );
      await page.reload();
      await page.waitForSelector('body[data-ready="true"]');
      await page.waitForSelector('#fed-status[data-rejoined="true"]', { timeout: 60_000 });
      await page.waitForFunction(
        () =>
          /resumed mid-round: answering the train \(round 2\) message/.test(
            document.querySelector('#fed-log')?.textContent ?? '',
          ),
        undefined,
        { timeout: 60_000 },
      );
      expect(await nodeIdsIn(page)).toEqual([nodeId]);
      expect(await page.textContent('#fed-log')).toContain('resumed after 1 round');

      await page.waitForSelector('#fed-status[data-done="true"]', { timeout: 600_000 });
    } catch (e) {
      release();
      throw await explain(e);
    }
    const out = await run;
    expect(out, out).toContain('model saved to');
    await serving;
    expect(handler.done).toBe(true);

    // The tab's final model is the ServerApp's (FFE: every tensor shared), and the Node site's.
    const saved = await readModelFolder(model);
    expect(await page.getAttribute('#fed-status', 'data-digest')).toBe(digestOf(saved.weights));
    expect(digestOf(await nodeSite.weights())).toBe(digestOf(saved.weights));
    expect(await page.getAttribute('#fed-phase', 'data-step')).toBe('done');
    // The audit survived both reloads: both rounds' updates (round 2's once: the reply to the
    // message kept across the reload), the fingerprint and the plan reply.
    const types = await page.$$eval('#egress-rows tr', (rows) =>
      rows.map((r) => r.getAttribute('data-type')),
    );
    expect(types.filter((t) => t === 'update')).toHaveLength(2);
    expect(new Set(types)).toEqual(new Set(['fingerprint', 'spec', 'update', 'final-metrics']));
    expect(errors).toEqual([]);
    nodeSite.trainer?.dispose();
  }, 900_000);
});
