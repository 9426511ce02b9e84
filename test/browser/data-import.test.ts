// Importing through the real page into Chromium's IndexedDB: a raw dataset folder survives a
// reload bit-exactly; a big volume imports with progress while the page stays responsive;
// cancelled and bad imports leave the store as it was.
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNifti } from '../../src/io/nifti.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import { REFERENCE } from '../paths.ts';
import { openApp, screenshot, type AppSession } from './harness.ts';
import type { HookedWindow } from '../../src/ui/main.ts';

const RAW803 = join(REFERENCE, 'raw', 'Dataset803_PhantomMR2ch');
const sha = (a: ArrayBufferView) =>
  createHash('sha256')
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex');

describe('data import in the browser', () => {
  let s: AppSession;
  let work: string;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'import-'));
    s = await openApp({ webgpu: false });
  });
  afterAll(async () => {
    await s?.close();
    rmSync(work, { recursive: true, force: true });
  });

  const datasets = () =>
    s.page.evaluate(() => (window as unknown as HookedWindow).__fednnunet.data.datasets());

  it('imports an nnU-Net raw folder; after a reload the cases are intact, bit for bit', async () => {
    const dir = join(work, 'Dataset803_PhantomMR2ch');
    cpSync(RAW803, dir, { recursive: true });
    await s.page.setInputFiles('#import-folder', dir);
    await s.page.waitForSelector('#import-result p.ok', { timeout: 120_000 });
    expect(await s.page.textContent('#import-result')).toContain(
      'Imported Dataset803_PhantomMR2ch: 3 case(s)',
    );
    await s.page.reload();
    await s.page.waitForSelector('body[data-ready="true"]');
    const all = await datasets();
    expect(all.map((d) => [d.name, d.numCases, d.casesWithProblems])).toEqual([
      ['Dataset803_PhantomMR2ch', 3, 0],
    ]);
    const id = all[0].id;
    for (const caseId of ['mp_000', 'mp_002']) {
      const got = await s.page.evaluate(
        ([i, c]) => (window as unknown as HookedWindow).__fednnunet.data.caseDigests(i, c),
        [id, caseId],
      );
      if (!got) throw new Error(`no digests stored for ${caseId}`);
      const img = (ch: number) =>
        readNifti(
          new Uint8Array(readFileSync(join(RAW803, 'imagesTr', `${caseId}_000${ch}.nii.gz`))),
        );
      expect(got.images).toEqual([sha(img(0).data), sha(img(1).data)]);
      expect(got.label).toBe(
        sha(
          readNifti(new Uint8Array(readFileSync(join(RAW803, 'labelsTr', `${caseId}.nii.gz`))))
            .data,
        ),
      );
    }
    await s.page.click(`details[data-dataset="Dataset803_PhantomMR2ch"] summary`);
    expect(await s.page.locator('li[data-case="mp_001"][data-ok="true"]').count()).toBe(1);
    await screenshot(s.page, 'data-imported');
    expect(s.errors).toEqual([]);
  });

  it('a 256×256×200 int16 volume imports with progress while the page keeps running', async () => {
    const dir = join(work, 'bigscan');
    mkdirSync(dir);
    const dims: [number, number, number] = [256, 256, 200];
    const data = new Int16Array(dims[0] * dims[1] * dims[2]);
    for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 3000) - 1000;
    const affine = [0.8, 0, 0, -100, 0, 0.8, 0, -100, 0, 0, 1.5, -150, 0, 0, 0, 1];
    writeFileSync(
      join(dir, 'big.nii'),
      writeNifti({ data, dims, channels: 1, spacing: [0.8, 0.8, 1.5], affine, datatype: 'int16' }),
    );
    writeFileSync(
      join(dir, 'big2.nii'),
      writeNifti({ data, dims, channels: 1, spacing: [0.8, 0.8, 1.5], affine, datatype: 'int16' }),
    );
    // Record the main thread's heartbeat and every progress text during the import.
    await s.page.evaluate(() => {
      const w = window as unknown as {
        __beats: number[];
        __beat: ReturnType<typeof setInterval>;
        __texts: Array<string | null>;
      };
      w.__beats = [] as number[];
      w.__beat = setInterval(() => w.__beats.push(performance.now()), 20);
      w.__texts = [] as string[];
      new MutationObserver(() =>
        w.__texts.push(document.querySelector('#import-status')!.textContent),
      ).observe(document.querySelector('#import-status')!, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    await s.page.setInputFiles('#import-folder', dir);
    await s.page.waitForSelector('#import-result p.ok', { timeout: 240_000 });
    const { beats, texts } = await s.page.evaluate(() => {
      const w = window as unknown as {
        __beats: number[];
        __beat: ReturnType<typeof setInterval>;
        __texts: Array<string | null>;
      };
      clearInterval(w.__beat);
      return { beats: w.__beats as number[], texts: w.__texts as string[] };
    });
    const gaps = beats.slice(1).map((t, i) => t - beats[i]);
    const longest = Math.max(...gaps);
    console.log(
      `[import 2×256×256×200 int16] heartbeats ${beats.length}, longest main-thread gap ${longest.toFixed(0)} ms; progress texts: ${texts.length}`,
    );
    expect(texts.some((t) => /Read big/.test(t))).toBe(true);
    expect(texts.some((t) => /1 of 2 cases/.test(t))).toBe(true);
    // Parsing and storing happen in the worker: the page never blocks for a whole second.
    expect(longest).toBeLessThan(1000);
    expect((await datasets()).find((d) => d.name === 'bigscan')!.numCases).toBe(2);
  });

  it('cancelling an import or importing junk leaves the store exactly as it was', async () => {
    const before = JSON.stringify(await datasets());
    const junk = join(work, 'junk');
    mkdirSync(junk);
    writeFileSync(join(junk, 'notes.txt'), 'not a scan');
    await s.page.setInputFiles('#import-folder', junk);
    await s.page.waitForSelector('#import-error');
    expect(await s.page.textContent('#import-error')).toMatch(
      /Import failed: .*no dataset\.json, no NIfTI file and no readable DICOM series.*Nothing was stored/,
    );
    // One plain sentence; the parser's own words only in the folded details (issue 19, item 7).
    const shown = await s.page.textContent('#import-error');
    expect(shown).toContain('1 skipped: not medical images (notes.txt)');
    expect(shown).not.toMatch(/dicomParser|DICM|readFixedString/);
    expect(await s.page.textContent('#import-details')).toMatch(/notes\.txt: .*dicomParser/);
    expect(JSON.stringify(await datasets())).toBe(before);

    const many = join(work, 'many');
    mkdirSync(many);
    const vol = readFileSync(join(work, 'bigscan', 'big.nii'));
    for (let i = 0; i < 6; i++) writeFileSync(join(many, `scan${i}.nii`), vol);
    await s.page.setInputFiles('#import-folder', many);
    await s.page.waitForFunction(
      () => /1 of 6/.test(document.querySelector('#import-status')?.textContent ?? ''),
      undefined,
      { timeout: 120_000 },
    );
    await s.page.click('#import-cancel');
    await s.page.waitForSelector('#import-error');
    expect(await s.page.textContent('#import-error')).toContain('Import cancelled');
    expect(JSON.stringify(await datasets())).toBe(before);
    expect(s.errors).toEqual([]);
  });
});
