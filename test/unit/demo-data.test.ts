import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DEMO_SITES, demoCase } from '../../src/demo/phantoms.ts';
import { validateRawDataset } from '../../src/io/raw-dataset.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { extractFingerprint } from '../../src/fingerprint/extract.ts';

describe('demo phantoms', () => {
  it('are deterministic and hold both labels inside the body', () => {
    const a = demoCase(DEMO_SITES[0], 0, 1);
    const b = demoCase(DEMO_SITES[0], 0, 1);
    expect(Buffer.from(a.image.data.buffer).equals(Buffer.from(b.image.data.buffer))).toBe(true);
    expect(
      Buffer.from(demoCase(DEMO_SITES[0], 0, 2).image.data.buffer).equals(
        Buffer.from(a.image.data.buffer),
      ),
    ).toBe(false);
    const counts = [0, 0, 0];
    for (const v of a.label.data) counts[v]++;
    expect(counts[1]).toBeGreaterThan(1000);
    expect(counts[2]).toBeGreaterThan(50);
    expect(a.image.dims).toEqual([56, 56, 47]);
  });

  it('demo-data writes valid nnU-Net datasets whose sites differ in spacing and intensity', async () => {
    const out = mkdtempSync(join(tmpdir(), 'demo-'));
    try {
      execFileSync(process.execPath, [
        'bin/fednnunet.js',
        'demo-data',
        '-o',
        out,
        '--sites',
        '3',
        '--cases',
        '3',
      ]);
      const means: number[] = [];
      const spacings: number[][] = [];
      for (const name of ['Dataset901_DemoSiteA', 'Dataset902_DemoSiteB', 'Dataset903_DemoSiteC']) {
        const src = fsSource(join(out, name));
        const report = await validateRawDataset(src);
        expect(report.problems).toEqual([]);
        expect(report.cases.every((c) => c.problems.length === 0)).toBe(true);
        const fp = await extractFingerprint(src);
        means.push(fp.fingerprint.foreground_intensity_properties_per_channel['0'].mean);
        spacings.push(fp.fingerprint.spacings[0]);
      }
      expect(new Set(spacings.map((s) => s.join())).size).toBe(3);
      // Site B's scanner (1.8·S + 50) sees the same anatomy much brighter than site A.
      expect(means[1]).toBeGreaterThan(1.5 * means[0]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
