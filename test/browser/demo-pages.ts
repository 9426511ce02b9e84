// Demo data into a page through the app's test hook (src/ui/main.ts' HookedWindow). Kept out of
// src/node/app-session.ts because src/ must not import the page; the browser tests (through
// harness.ts) and the browser benchmarks use it.
import type { Page } from 'playwright-core';
import type { HookedWindow } from '../../src/ui/main.ts';

/** Demo site `k`'s dataset, imported through the page's data worker; its dataset id. */
export function importDemo(page: Page, k: number): Promise<string> {
  return page.evaluate(async (i) => {
    const f = (window as unknown as HookedWindow).__fednnunet;
    return (
      await f.data.importDemo(
        i,
        f.proxy(() => undefined),
      )
    ).datasetId;
  }, k);
}

/** importDemo, then prepared for 3d_fullres (fingerprint → plan → preprocess) as the Data tab does. */
export async function preparedDemo(page: Page, k: number): Promise<string> {
  const id = await importDemo(page, k);
  await page.evaluate(async (i) => {
    const f = (window as unknown as HookedWindow).__fednnunet;
    await f.data.prepare(
      i,
      { configuration: '3d_fullres' },
      f.proxy(() => undefined),
    );
  }, id);
  return id;
}
