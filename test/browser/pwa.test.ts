// The app as a PWA (issue 19): manifest and icons served, the service worker installs and takes
// the tab, the app loads with the server gone (flaky workshop Wi-Fi), and a new build on the server
// is offered as an update that replaces the old cache. Served from a copy of dist/ so the "new
// build" (a changed sw.js, as every rebuild gives) can be made without building twice.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserContext, Page } from 'playwright-core';
import { launchChromium, type LaunchedBrowser } from '../../src/node/chromium.ts';
import { serveStatic, type RunningServer } from '../../src/node/static-server.ts';
import { screenshot } from './harness.ts';

const root = mkdtempSync(join(tmpdir(), 'fednnunet-pwa-'));
let server: RunningServer | undefined;
let browser: LaunchedBrowser;
let ctx: BrowserContext;
let page: Page;
let port = 0;
const errors: string[] = [];

async function stop(): Promise<void> {
  server?.server.closeAllConnections();
  await server?.close();
  server = undefined;
}

const cacheKeys = () => page.evaluate(() => caches.keys());

beforeAll(async () => {
  cpSync(join(process.cwd(), 'dist'), root, { recursive: true });
  server = await serveStatic(root);
  port = Number(new URL(server.url).port);
  browser = await launchChromium({ webgpu: false });
  ctx = await browser.newContext({ serviceWorkers: 'allow' });
  page = await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
});
afterAll(async () => {
  await browser?.close();
  await stop();
  rmSync(root, { recursive: true, force: true });
});

describe('PWA', () => {
  it('serves a manifest with icons; the service worker precaches the build and takes the tab', async () => {
    await page.goto(server!.url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    const m = await page.evaluate(async () => {
      const href = document.querySelector<HTMLLinkElement>('link[rel="manifest"]')!.href;
      const r = await fetch(href);
      const json = await r.json();
      const icons = await Promise.all(
        json.icons.map(async (i: { src: string }) => {
          const ir = await fetch(new URL(i.src, href));
          return `${ir.status} ${ir.headers.get('content-type')}`;
        }),
      );
      return { type: r.headers.get('content-type'), name: json.name, display: json.display, icons };
    });
    expect(m).toEqual({
      type: 'application/manifest+json',
      name: 'FednnU-Net Web',
      display: 'standalone',
      icons: ['200 image/svg+xml', '200 image/png', '200 image/png'],
    });
    // Installed (every file fetched into the cache) and controlling this tab (clients.claim).
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.waitForFunction(() => !!navigator.serviceWorker.controller, undefined, {
      timeout: 60_000,
    });
    const keys = await cacheKeys();
    expect(keys).toHaveLength(1);
    const version = readFileSync(join(root, 'sw.js'), 'utf8').match(/"version":"(\w+)"/)![1];
    expect(keys[0]).toBe(`fednnunet-app-${version}`);
    const cached = await page.evaluate(
      async (k) => (await (await caches.open(k)).keys()).map((r) => new URL(r.url).pathname),
      keys[0],
    );
    expect(cached).toContain('/');
    expect(cached.some((p) => p.endsWith('.wasm'))).toBe(true);
    expect(cached.some((p) => /infer\.worker-.*\.js$/.test(p))).toBe(true);
    expect(cached).not.toContain('/sw.js');
  });

  it('loads with the server gone, still cross-origin isolated, workers running', async () => {
    await stop();
    await ctx.setOffline(true);
    await page.reload();
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    // The data worker (its script from the cache) answers.
    expect(
      await page.evaluate(async () =>
        Array.isArray(
          await (
            window as unknown as { __fednnunet: { data: { datasets(): Promise<unknown> } } }
          ).__fednnunet.data.datasets(),
        ),
      ),
    ).toBe(true);
    await screenshot(page, 'pwa-offline');
  });

  it('a new build on the server is offered as an update and replaces the old cache', async () => {
    const swPath = join(root, 'sw.js');
    const old = (await cacheKeys())[0];
    // What a rebuild does to sw.js: a new version string (here without rebuilding the files).
    writeFileSync(
      swPath,
      readFileSync(swPath, 'utf8').replace(/"version":"(\w+)"/, '"version":"$1next"'),
    );
    await ctx.setOffline(false);
    server = await serveStatic(root, { port });
    await page.evaluate(async () => (await navigator.serviceWorker.getRegistration())!.update());
    await page.waitForSelector('#update-banner', { timeout: 60_000 });
    // The old version keeps serving this tab until the user chooses to reload.
    expect(await cacheKeys()).toContain(old);
    await page.click('#update-reload');
    await page.waitForFunction(
      (o) => caches.keys().then((k) => k.length === 1 && k[0] === `${o}next`),
      old,
      { timeout: 60_000 },
    );
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    expect(errors).toEqual([]);
  });
});
