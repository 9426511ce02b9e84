// Finding and launching Debian's Chromium for browser tests and `fednnunet doctor`.
// We never download a browser: CHROME_PATH or a system Chromium is used.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  chromium,
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  type Page,
} from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

export function findChromium(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.CHROME_PATH) return existsSync(env.CHROME_PATH) ? env.CHROME_PATH : null;
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

export const INSTALL_HINT =
  'sudo apt-get install -y chromium   (or set CHROME_PATH to a Chromium/Chrome binary)';

/**
 * Flags measured on this machine: with them headless Chromium exposes WebGPU through
 * SwiftShader (a CPU implementation) when no GPU exists. Without `--enable-unsafe-webgpu`
 * there is no adapter, which is how tests simulate an unsupported browser.
 */
export function chromiumArgs(webgpu: boolean): string[] {
  const args = [
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  return args;
}

export interface LaunchedBrowser {
  browser: Browser;
  /**
   * A new context (a fresh profile) with service workers blocked unless `opts.serviceWorkers`
   * says 'allow': the production build registers one that precaches the whole app (~40 MB), which
   * only the offline test wants; in every other tab it is load that slows the test under test.
   */
  newContext(opts?: BrowserContextOptions): Promise<BrowserContext>;
  /** A page in a new context made by newContext. */
  newPage(opts?: BrowserContextOptions): Promise<Page>;
  close(): Promise<void>;
}

export async function launchChromium(
  opts: {
    webgpu?: boolean;
    /** Flags on top of chromiumArgs() (a test's own switch, e.g. for WebRTC). */
    extraArgs?: string[];
  } = {},
): Promise<LaunchedBrowser> {
  const executablePath = findChromium();
  if (!executablePath) throw new Error(`No Chromium found. Install one: ${INSTALL_HINT}`);
  // A fresh profile per launch, as DEVELOPERS.md asks; playwright manages it in launchPersistentContext
  // only, so we pass none and let it create a temporary one.
  const scratch = mkdtempSync(join(tmpdir(), 'fednnunet-chromium-'));
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [...chromiumArgs(opts.webgpu ?? true), ...(opts.extraArgs ?? [])],
    env: { ...process.env, TMPDIR: scratch },
  });
  const newContext = (o: BrowserContextOptions = {}) =>
    browser.newContext({ serviceWorkers: 'block', ...o });
  return {
    browser,
    newContext,
    async newPage(o) {
      return (await newContext(o)).newPage();
    },
    async close() {
      await browser.close().catch(() => undefined);
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
