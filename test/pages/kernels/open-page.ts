// Builds and opens the test-only kernels page (this folder), for the fast-kernel browser
// test and benchmark. Built into a temporary folder so the app's dist/ is untouched.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'vite';
import type { Page } from 'playwright-core';
import type { KernelsApi } from '../../kernels/kernel-suite.ts';
import { launchChromium } from '../../../src/node/chromium.ts';
import { serveStatic } from '../../../src/node/static-server.ts';

type Api = KernelsApi;

export interface KernelsPage {
  page: Page;
  errors: string[];
  /** Calls the kernels worker's `fn` (window.__kernels in the page) with JSON-able arguments. */
  call<K extends keyof Api>(
    fn: K,
    ...args: Parameters<Api[K]>
  ): Promise<Awaited<ReturnType<Api[K]>>>;
  close(): Promise<void>;
}

export async function openKernelsPage(): Promise<KernelsPage> {
  const out = mkdtempSync(join(tmpdir(), 'fednnunet-kernels-page-'));
  await build({
    configFile: false,
    root: process.cwd(),
    logLevel: 'error',
    worker: { format: 'es' },
    build: {
      target: 'es2022',
      outDir: out,
      emptyOutDir: true,
      chunkSizeWarningLimit: 8192,
      rollupOptions: { input: join(process.cwd(), 'test/pages/kernels/index.html') },
    },
  });
  // The static server serves <root>/index.html; asset URLs are absolute (/assets/…).
  copyFileSync(join(out, 'test/pages/kernels/index.html'), join(out, 'index.html'));
  const server = await serveStatic(out);
  const browser = await launchChromium({ webgpu: true });
  const close = async () => {
    await browser.close();
    await server.close();
    rmSync(out, { recursive: true, force: true });
  };
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(server.url);
    await page.waitForSelector('body[data-ready="true"]', { state: 'attached', timeout: 60_000 });
    const call: KernelsPage['call'] = (fn, ...args) =>
      page.evaluate(
        ([f, a]) =>
          (
            window as unknown as { __kernels: Record<string, (...x: unknown[]) => unknown> }
          ).__kernels[f](...a),
        [fn, args as unknown[]] as const,
      ) as never;
    return { page, errors, call, close };
  } catch (e) {
    await close();
    throw e;
  }
}
