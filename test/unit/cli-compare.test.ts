// `fednnunet compare` on two small demo sites written as nnU-Net raw folders, with a one-iteration
// budget: the printed table, summary.json and compare.svg carry the same numbers, and no model
// trained on a held-out case.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import type { ComparisonSummary } from '../../src/eval/method-comparison.ts';
import { drawHoldout } from '../../src/eval/method-comparison.ts';

const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-compare-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Demo sites A and B at twice their voxel size (small volumes: quick sliding windows), 3 cases each. */
function writeSites(): string[] {
  return DEMO_SITES.slice(0, 2).map((p, i) => {
    const ds = demoDataset(
      { ...p, spacing: p.spacing.map((s) => 2 * s) as typeof p.spacing },
      i,
      3,
    );
    const root = join(tmp, ds.name);
    mkdirSync(join(root, 'imagesTr'), { recursive: true });
    mkdirSync(join(root, 'labelsTr'), { recursive: true });
    writeFileSync(join(root, 'dataset.json'), JSON.stringify(ds.datasetJson));
    for (const c of ds.cases) {
      writeFileSync(
        join(root, 'imagesTr', `${c.id}_0000.nii.gz`),
        writeNifti(c.image, { gzip: true }),
      );
      writeFileSync(join(root, 'labelsTr', `${c.id}.nii.gz`), writeNifti(c.label, { gzip: true }));
    }
    return root;
  });
}

describe('fednnunet compare', () => {
  it('prints the table and writes summary.json and compare.svg with the same numbers; held-out cases never train', () => {
    const dirs = writeSites();
    const out = join(tmp, 'out');
    const stdout = execFileSync(
      process.execPath,
      [
        'bin/fednnunet.js',
        'compare',
        '--sites',
        ...dirs,
        '--rounds',
        '1',
        '--iters',
        '1',
        '--tiny',
        '--tiny-patch',
        '16',
        '--holdout',
        '1',
        '--seed',
        '2',
        '-o',
        out,
      ],
      { encoding: 'utf8' },
    );
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as ComparisonSummary;
    const svg = readFileSync(join(out, 'compare.svg'), 'utf8');

    // Settings and the paper's column order.
    expect(s.settings).toMatchObject({ rounds: 1, iters: 1, budgetIterations: 1, holdout: 1 });
    expect(s.seeds.holdout).toBe(2);
    expect(s.table.methods).toEqual(['local', 'asym', 'ffe', 'fedavg', 'centralised']);
    expect(s.table.sites).toEqual(['Dataset901_DemoSiteA', 'Dataset902_DemoSiteB']);

    // Held-out cases: K per site, the seeded draw, in no model's training set.
    for (const [i, site] of s.sites.entries()) {
      expect(site.holdout).toHaveLength(1);
      expect(site.holdout).toEqual(
        drawHoldout([...site.holdout, ...site.training], 1, 2 * 1009 + i),
      );
      expect(site.training.filter((id) => site.holdout.includes(id))).toEqual([]);
      expect(site.training.length + site.holdout.length).toBe(site.cases);
    }
    const heldOut = new Set(s.sites.flatMap((x) => x.holdout.map((id) => `${x.name}/${id}`)));
    const allTraining = s.sites.flatMap((x) => x.training.map((id) => `${x.name}/${id}`)).sort();
    for (const m of s.methods) {
      for (const model of m.models) {
        expect(model.trainedOn.length).toBeGreaterThan(0);
        expect(model.trainedOn.filter((id) => heldOut.has(id))).toEqual([]);
        // Local models see their own site only; the others see every site's training cases.
        if (m.method === 'local')
          expect(
            model.trainedOn.every((id) => id.startsWith(`${s.sites[model.site!].name}/`)),
          ).toBe(true);
        else expect([...model.trainedOn].sort()).toEqual(allTraining);
      }
    }

    // The table in summary.json is the models' Dice, each model on each site's held-out case.
    for (const [j, method] of s.table.methods.entries()) {
      const r = s.methods.find((m) => m.method === method)!;
      for (const [i] of s.table.sites.entries()) {
        const d = s.table.dice[i][j];
        if (r.status === 'skipped') {
          expect(d).toBeNull();
          expect(r.reason).toBeTruthy();
          continue;
        }
        const model = r.models.find((m) => m.site === i) ?? r.models.find((m) => m.site === null)!;
        expect(model.dice).toHaveLength(2);
        expect(d).toBe(model.dice[i]);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(1);
      }
    }
    expect(s.methods.filter((m) => m.status === 'done').map((m) => m.method)).toEqual(
      expect.arrayContaining(['local', 'asym', 'ffe', 'centralised']),
    );

    // Printed table: same numbers to 4 places, mean row included.
    const fmt = (d: number | null) => (d === null ? 'n/a' : d.toFixed(4));
    const lines = stdout.split('\n');
    const head = lines.findIndex((l) =>
      /^site\s+local\s+AsymFedAvg\s+FFE\s+FedAvg\s+centralised$/.test(l),
    );
    expect(head).toBeGreaterThan(-1);
    const rows = [...s.table.dice, s.table.mean];
    const names = [...s.table.sites, 'mean'];
    for (const [i, row] of rows.entries())
      expect(lines[head + 1 + i].split(/\s+/)).toEqual([names[i], ...row.map(fmt)]);

    // The figure: one bar (or an n/a mark) per site and method, and the mean, with the same Dice.
    const bars = [
      ...svg.matchAll(/data-site="([^"]+)" data-method="([^"]+)" data-dice="([^"]+)"/g),
    ];
    expect(bars).toHaveLength(names.length * s.table.methods.length);
    for (const [, site, method, dice] of bars) {
      const i = names.indexOf(site);
      const j = s.table.methods.indexOf(method as never);
      expect(dice).toBe(fmt(rows[i][j]));
    }
    expect(svg.startsWith('<svg')).toBe(true);
  }, 240_000);

  it('refuses bad input with a clear message', async () => {
    const { default: compare } = await import('../../src/cli/commands/compare.ts');
    await expect(compare.run(['--sites', 'a'])).rejects.toThrow(/at least two --sites/);
    await expect(
      compare.run([
        '--sites',
        'a',
        'b',
        '--rounds',
        '1',
        '--iters',
        '1',
        '--methods',
        'local,magic',
      ]),
    ).rejects.toThrow(/'magic' is not one of/);
    await expect(compare.run(['--sites', 'a', 'b', '--iters', '1'])).rejects.toThrow(
      /--rounds and --iters are required/,
    );
    await expect(
      compare.run(['--sites', 'a', 'b', '--rounds', '1', '--iters', '1', '--holdout', '0']),
    ).rejects.toThrow(/--holdout must be an integer ≥ 1/);
  });
});
