// The browser tests' set-up, in one place. One page on the built app: openApp (in
// src/node/app-session.ts, which the benchmarks use too). A federation: useRelaySession, a relay
// serving the built app (dist/, made by global-setup.ts) and one Chromium whose pages each get a
// fresh profile (their own IndexedDB and site key) with their errors recorded.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContextOptions, Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { startRelay, type Relay, type RelayOptions } from '../../src/node/relay/server.ts';
import { mergeSiteFingerprints } from '../../src/fed/ffe-merge.ts';
import { launchChromium, type LaunchedBrowser } from '../../src/node/chromium.ts';
import { gotoReady, recordErrors } from '../../src/node/app-session.ts';
import { importDemo } from './demo-pages.ts';

export * from '../../src/node/app-session.ts';
export * from './demo-pages.ts';

/** Unfolds the Federation tab's advanced settings (tiny patch, relay, host key) so tests can fill them. */
export async function openAdvanced(page: Page): Promise<void> {
  await page.$eval('#fed-advanced', (d) => ((d as HTMLDetailsElement).open = true));
}

/**
 * Gives the page demo site `k`'s dataset and makes it the Federation tab's only dataset, with the
 * smallest tiny patch (8) so a round on SwiftShader takes seconds.
 */
export async function demoSiteReady(page: Page, k: number): Promise<void> {
  await importDemo(page, k);
  await page.click('#tab-data');
  await page.click('#tab-federation'); // refreshes the dataset list
  await page.waitForFunction(() => document.querySelectorAll('#fed-dataset option').length === 1);
  await openAdvanced(page);
  await page.fill('#fed-tiny-patch', '8');
}

/** Opens the Train tab (a fresh load of `url`) with the prepared dataset `id` selected. */
export async function trainTabOn(page: Page, url: string, id: string): Promise<void> {
  await gotoReady(page, `${url}#train`);
  await page.waitForFunction(
    (i) =>
      [...document.querySelectorAll('#train-dataset option')].some(
        (o) => (o as HTMLOptionElement).value === i,
      ),
    id,
  );
  await page.selectOption('#train-dataset', id);
}

/** Exports stored model `id` as .zip from the Predict tab (as a user does) into `dir`; its path. */
export async function exportModelZip(
  page: Page,
  url: string,
  id: string,
  dir: string,
): Promise<string> {
  await page.goto(`${url}#predict`);
  const [dl] = await Promise.all([
    page.waitForEvent('download'),
    page.click(`[data-export-model="${id}"]`),
  ]);
  const zip = join(dir, 'model.zip');
  await dl.saveAs(zip);
  return zip;
}

type RelayConfig = RelayOptions['config'];

export interface RelaySessionOptions {
  /** The relay's own federation: FFE on 3d_fullres for two sites, 1 round of 1 iteration, fp16, unless given here. */
  config: Partial<RelayConfig> & { token: string };
  /** Further relay options, read when the relay starts (after the beforeAll hooks declared earlier). */
  relay?: () => Partial<RelayOptions>;
  /** WebGPU (SwiftShader here) or none (the tab trains on tfjs' CPU backend). Default: true. */
  webgpu?: boolean;
  /** Chromium flags on top of chromiumArgs(). */
  chromiumArgs?: string[];
  /** afterAll's time limit (ms), where closing the pages' browser takes long. */
  closeTimeout?: number;
}

export interface RelaySession {
  readonly relay: Relay;
  readonly browser: LaunchedBrowser;
  /**
   * A page in a new context (a fresh profile; service workers blocked) whose console and page
   * errors go to `errors`, prefixed with `name`. Nothing loaded yet.
   */
  newPage(name: string, errors: string[], context?: BrowserContextOptions): Promise<Page>;
  /** newPage, then `url` loaded until the app says it is ready. */
  open(url: string, name: string, errors: string[], context?: BrowserContextOptions): Promise<Page>;
}

/**
 * In the enclosing describe: beforeAll starts a relay (its data dir a fresh temporary folder) and
 * a Chromium; afterAll closes both and removes the folder. The session's fields are there once
 * beforeAll has run.
 */
export function useRelaySession(o: RelaySessionOptions): RelaySession {
  let relay: Relay | undefined;
  let browser: LaunchedBrowser | undefined;
  let dir: string | undefined;
  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('the relay session starts in beforeAll');
    return v;
  };
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fednnunet-relay-'));
    relay = await startRelay({
      dataDir: dir,
      staticDir: join(process.cwd(), 'dist'),
      log: () => undefined,
      aggregateFingerprints: mergeSiteFingerprints,
      config: {
        method: 'ffe',
        configuration: '3d_fullres',
        rounds: 1,
        itersPerRound: 1,
        minSites: 2,
        roundDeadlineMs: 600_000,
        weighting: 'uniform',
        encoding: 'fp16',
        expectedSites: 2,
        ...o.config,
      },
      ...o.relay?.(),
    });
    browser = await launchChromium({ webgpu: o.webgpu ?? true, extraArgs: o.chromiumArgs });
  });
  afterAll(async () => {
    await browser?.close();
    await relay?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, o.closeTimeout);
  const s: RelaySession = {
    get relay() {
      return started(relay);
    },
    get browser() {
      return started(browser);
    },
    async newPage(name, errors, context) {
      const page = await (await s.browser.newContext(context)).newPage();
      recordErrors(page, errors, name);
      return page;
    },
    async open(url, name, errors, context) {
      const page = await s.newPage(name, errors, context);
      await gotoReady(page, url);
      return page;
    },
  };
  return s;
}
