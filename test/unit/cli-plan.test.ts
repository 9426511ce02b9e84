import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { DatasetFingerprint } from '../../src/fingerprint/types.ts';
import type { Plans } from '../../src/plan/types.ts';
import { REFERENCE } from '../paths.ts';
import { readJson } from './plan-fixtures.ts';

const bin = 'bin/fednnunet.js';
const run = (...args: string[]) =>
  execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-plan-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const fp = (d: string) => join(REFERENCE, 'fingerprints', d, 'dataset_fingerprint.json');
const FED = join(REFERENCE, 'federated', 'fed_801_804');
const CLIENTS = ['Dataset801_PhantomMR', 'Dataset804_PhantomMRsiteB'];

describe('fednnunet aggregate-fingerprints + plan', () => {
  it('FFE aggregate of 801, 804 equals the reference aggregate', () => {
    const out = join(tmp, 'fed.json');
    run('aggregate-fingerprints', ...CLIENTS.map(fp), '-o', out);
    const ours = readJson<DatasetFingerprint>(out);
    const ref = readJson<DatasetFingerprint>(join(FED, 'aggregated_dataset_fingerprint.json'));
    expect(ours.spacings).toEqual(ref.spacings);
    expect(ours.shapes_after_crop).toEqual(ref.shapes_after_crop);
    const [a, b] = [
      ours.foreground_intensity_properties_per_channel['0'],
      ref.foreground_intensity_properties_per_channel['0'],
    ];
    for (const k of Object.keys(b) as (keyof typeof b)[])
      expect(Math.abs(a[k] - b[k])).toBeLessThanOrEqual(1e-12 * Math.abs(b[k]));
  });

  it.each(CLIENTS)(
    'plan %s on the plain and on the --private aggregate: the reference federated plans',
    (d) => {
      const plain = join(tmp, 'fed.json');
      run('aggregate-fingerprints', ...CLIENTS.map(fp), '-o', plain);
      const priv = join(tmp, 'fed-private.json');
      run('aggregate-fingerprints', '--private', ...CLIENTS.map(fp), '-o', priv);
      expect(readJson<object>(priv)).not.toHaveProperty('spacings');
      const ref = readJson<Plans>(join(FED, d, 'nnUNetPlans.json'));
      for (const f of [plain, priv]) {
        const out = join(tmp, `plans-${d}.json`);
        run('plan', join(REFERENCE, 'raw', d), '--fingerprint', f, '-o', out);
        expect(readJson<Plans>(out)).toEqual(ref);
      }
    },
  );

  it('--weights changes the weighted means; --memory-budget-mb adds the budget record', () => {
    const out = join(tmp, 'fed-w.json');
    run('aggregate-fingerprints', ...CLIENTS.map(fp), '-o', out, '--weights', '1,1');
    expect(
      readJson<DatasetFingerprint>(out).foreground_intensity_properties_per_channel['0'].median,
    ).toBe(240);
    const plans = join(tmp, 'plans-budget.json');
    const stdout = run(
      'plan',
      join(REFERENCE, 'raw', 'Dataset801_PhantomMR'),
      '--fingerprint',
      fp('Dataset801_PhantomMR'),
      '-o',
      plans,
      '--memory-budget-mb',
      '256',
    );
    expect(stdout).toMatch(/budget changed patch_size/);
    expect(
      readJson<Plans>(plans).configurations['3d_fullres']!.browser_budget!.changed.length,
    ).toBeGreaterThan(0);
  });

  it('bad usage exits 2 with one line; mismatched channels exit 1', () => {
    const r = spawnSync(
      process.execPath,
      [bin, 'plan', join(REFERENCE, 'raw', 'Dataset801_PhantomMR')],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const m = spawnSync(
      process.execPath,
      [
        bin,
        'aggregate-fingerprints',
        fp('Dataset801_PhantomMR'),
        fp('Dataset803_PhantomMR2ch'),
        '-o',
        join(tmp, 'x.json'),
      ],
      { encoding: 'utf8' },
    );
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/channels/);
  });
});
