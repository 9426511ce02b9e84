// Fingerprint + plan + preprocess of Dataset801 (5 cases) in the browser's data worker
// (Chromium, IndexedDB), timed by the worker; the same work as `npm run bench fingerprint` in Node.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'vite';
import { openApp } from '../src/node/app-session.ts';
import { REFERENCE } from '../test/paths.ts';
import type { HookedWindow } from '../src/ui/main.ts';

await build({ logLevel: 'warn' });
const work = mkdtempSync(join(tmpdir(), 'bench-prepare-'));
const s = await openApp({ webgpu: false });
try {
  const rows: string[] = [];
  for (const name of ['Dataset801_PhantomMR', 'Dataset802_PhantomCTaniso']) {
    const dir = join(work, name);
    cpSync(join(REFERENCE, 'raw', name), dir, { recursive: true });
    await s.page.setInputFiles('#import-folder', dir);
    await s.page.waitForFunction(
      (n) => document.querySelector('#import-result')?.textContent?.includes(`Imported ${n}`),
      name,
      { timeout: 300_000 },
    );
    const id = await s.page.getAttribute(`details[data-dataset="${name}"]`, 'data-id');
    const times: Array<{ fingerprint: number; preprocess: number; cases: number }> = [];
    for (let rep = 0; rep < 3; rep++) {
      const r = await s.page.evaluate((i) => {
        const w = window as unknown as HookedWindow;
        return w.__fednnunet.data.prepare(
          i,
          { configuration: '3d_fullres' },
          w.__fednnunet.proxy(() => undefined),
        );
      }, id!);
      times.push({
        fingerprint: r.ms.fingerprint,
        preprocess: r.ms.preprocess,
        cases: r.casesPreprocessed,
      });
    }
    const med = (k: 'fingerprint' | 'preprocess') =>
      times.map((t) => t[k]).sort((a, b) => a - b)[1];
    rows.push(
      `| ${name} (${times[0].cases} cases) | ${med('fingerprint').toFixed(0)} | ${med('preprocess').toFixed(0)} | ${(med('preprocess') / times[0].cases).toFixed(0)} |`,
    );
  }
  console.log('Chromium data worker, IndexedDB reads included; median of 3.\n');
  console.log(
    '| dataset | fingerprint (ms) | preprocess all cases, 3d_fullres (ms) | per case (ms) |',
  );
  console.log('|---|---|---|---|');
  for (const r of rows) console.log(r);
} finally {
  await s.close();
  rmSync(work, { recursive: true, force: true });
}
