// Browser-test and benchmark plumbing: serve dist/ on 127.0.0.1, launch Chromium, open a page and
// record console errors and page errors so every test can assert there were none.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { launchChromium, type LaunchedBrowser } from './chromium.ts';
import { serveStatic, type RunningServer } from './static-server.ts';

export const ARTIFACTS = join(process.cwd(), 'test-artifacts');

export interface AppSession {
  page: Page;
  url: string;
  errors: string[];
  close(): Promise<void>;
}

/** Console errors and uncaught page errors of `page` go to `errors`, each prefixed with `name: ` if given. */
export function recordErrors(page: Page, errors: string[], name?: string): void {
  const push = (m: string) => errors.push(name ? `${name}: ${m}` : m);
  page.on('console', (m) => {
    if (m.type() === 'error') push(m.text());
  });
  page.on('pageerror', (e) => push(String(e)));
}

/** Loads `url` and waits until the app says it is ready (main() has wired every tab). */
export async function gotoReady(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
}

export async function openApp(opts: { webgpu?: boolean; path?: string } = {}): Promise<AppSession> {
  let server: RunningServer | undefined;
  let browser: LaunchedBrowser | undefined;
  try {
    server = await serveStatic(join(process.cwd(), 'dist'));
    browser = await launchChromium({ webgpu: opts.webgpu ?? true });
    const page = await browser.newPage();
    const errors: string[] = [];
    recordErrors(page, errors);
    const url = server.url + (opts.path ?? '');
    await gotoReady(page, url);
    const s = server;
    const b = browser;
    return {
      page,
      url,
      errors,
      async close() {
        await b.close();
        await s.close();
      },
    };
  } catch (e) {
    await browser?.close();
    await server?.close();
    throw e;
  }
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
