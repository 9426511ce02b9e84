// The browser tests' harness lives in src/node/app-session.ts (benchmarks use it too).
export * from '../../src/node/app-session.ts';

/** Unfolds the Federation tab's advanced settings (tiny patch, relay, host key) so tests can fill them. */
export async function openAdvanced(page: import('playwright-core').Page): Promise<void> {
  await page.$eval('#fed-advanced', (d) => ((d as HTMLDetailsElement).open = true));
}
