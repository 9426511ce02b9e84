import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarizeFingerprint } from '../../src/fingerprint/ffe.ts';
import type { DatasetFingerprint } from '../../src/fingerprint/types.ts';
import { readNpy } from '../../src/io/npy.ts';
import { decodePreprocessed, type PropertiesJson } from '../../src/preprocess/files.ts';
import { expectMatchesReference } from './helpers/fingerprint-ref.ts';
import { REFERENCE } from '../paths.ts';

const bin = 'bin/fednnunet.js';
const run = (...args: string[]) =>
  execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
const fail = (...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-fp-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

describe('fednnunet fingerprint', () => {
  for (const ds of ['Dataset801_PhantomMR', 'Dataset803_PhantomMR2ch']) {
    it(`${ds}: nnU-Net's file, byte for byte except the sampled mean/std digits`, () => {
      const out = join(tmp, `${ds}.json`);
      const priv = join(tmp, `${ds}-private.json`);
      const stdout = run(
        'fingerprint',
        join(REFERENCE, 'raw', ds),
        '-o',
        out,
        '--private-summary',
        priv,
      );
      expect(stdout).toMatch(/cases, \d channel\(s\)/);
      const refPath = join(REFERENCE, 'fingerprints', ds, 'dataset_fingerprint.json');
      const ours = json(out) as DatasetFingerprint;
      expectMatchesReference(ours, json(refPath));
      const [a, b] = [
        readFileSync(out, 'utf8').split('\n'),
        readFileSync(refPath, 'utf8').split('\n'),
      ];
      expect(a.length).toBe(b.length);
      const differing = a.map((l, i) => [l, b[i]]).filter(([l, r]) => l !== r);
      // Only the sampled statistics may differ (README §5.2), one mean and one std line per channel.
      expect(
        differing.every(
          ([l, r]) => /^ +"(mean|std)": [\d.]+,?$/.test(l) && l.split(':')[0] === r.split(':')[0],
        ),
      ).toBe(true);
      expect(differing.length).toBeLessThanOrEqual(
        2 * Object.keys(ours.foreground_intensity_properties_per_channel).length,
      );
      expect(json(priv)).toEqual(summarizeFingerprint(ours));
    });
  }

  it('bad input: exit 1 with one line; bad usage: exit 2', () => {
    const r = fail('fingerprint', join(tmp, 'missing'), '-o', join(tmp, 'x.json'));
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^fednnunet fingerprint: .*ENOENT/);
    expect(existsSync(join(tmp, 'x.json'))).toBe(false);
    expect(fail('fingerprint', join(REFERENCE, 'raw', 'Dataset801_PhantomMR')).status).toBe(2);
  });
});

describe('fednnunet preprocess', () => {
  const first = {
    Dataset801_PhantomMR: 'mrA_000',
    Dataset802_PhantomCTaniso: 'ct_000',
    Dataset803_PhantomMR2ch: 'mp_000',
  };
  for (const [ds, id] of Object.entries(first)) {
    it(`${ds} ${id} 3d_fullres: nnU-Net's run_case arrays and properties`, () => {
      const out = join(tmp, `pp-${ds}`);
      run(
        'preprocess',
        join(REFERENCE, 'raw', ds),
        '--plans',
        join(REFERENCE, 'plans', ds, 'nnUNetPlans.json'),
        '--config',
        '3d_fullres',
        '--case',
        id,
        '-o',
        out,
      );
      const ref = join(REFERENCE, 'preprocessed', ds, '3d_fullres', id);
      const refD = readNpy(readFileSync(`${ref}_data.npy.gz`));
      const refS = readNpy(readFileSync(`${ref}_seg.npy.gz`));
      const files = {
        data: readFileSync(join(out, `${id}_data.npy`)),
        seg: readFileSync(join(out, `${id}_seg.npy`)),
        properties: readFileSync(join(out, `${id}_properties.json`), 'utf8'),
      };
      const d = readNpy(files.data);
      const s = readNpy(files.seg);
      expect([d.descr, d.shape]).toEqual(['<f4', refD.shape]);
      expect([s.descr, s.shape]).toEqual(['|i1', refS.shape]);
      let maxAbs = 0;
      for (let i = 0; i < d.data.length; i++)
        maxAbs = Math.max(maxAbs, Math.abs(d.data[i] - refD.data[i]));
      expect(maxAbs).toBeLessThanOrEqual(1e-4);
      expect(Buffer.from(s.data.buffer).equals(Buffer.from(refS.data.buffer))).toBe(true);
      const p = JSON.parse(files.properties) as PropertiesJson;
      const rp = json(`${ref}_properties.json`);
      for (const k of [
        'spacing',
        'shape_before_cropping',
        'bbox_used_for_cropping',
        'shape_after_cropping_and_before_resampling',
        'nibabel_stuff',
      ] as const)
        expect(p[k]).toEqual(rp[k]);
      expect(
        Object.fromEntries(Object.entries(p.class_locations!).map(([k, v]) => [k, v.length])),
      ).toEqual(rp.class_locations_counts);
      for (const [k, rows] of Object.entries(p.class_locations!))
        for (const [c, z, y, x] of rows) {
          expect(c).toBe(0);
          expect(s.data[(z * s.shape[2] + y) * s.shape[3] + x]).toBe(Number(k));
        }
      // The files decode back to the arrays and properties (class_locations as flat int32 rows).
      const back = decodePreprocessed(files);
      expect(back.shape).toEqual(d.shape);
      expect(back.properties.class_locations!['1'].length).toBe(4 * p.class_locations!['1'].length);
    });
  }

  const hasNumpy =
    spawnSync('/usr/bin/python3', ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;
  it.skipIf(!hasNumpy)('numpy reads the .npy files with the same dtype, shape and values', () => {
    const out = join(tmp, 'pp-Dataset801_PhantomMR');
    if (!existsSync(join(out, 'mrA_000_data.npy')))
      run(
        'preprocess',
        join(REFERENCE, 'raw', 'Dataset801_PhantomMR'),
        '--plans',
        join(REFERENCE, 'plans', 'Dataset801_PhantomMR', 'nnUNetPlans.json'),
        '--case',
        'mrA_000',
        '-o',
        out,
      );
    const py = `import numpy as np, gzip, sys, json
d = np.load(sys.argv[1] + '/mrA_000_data.npy'); s = np.load(sys.argv[1] + '/mrA_000_seg.npy')
r = np.load(gzip.open(sys.argv[2] + '_data.npy.gz')); rs = np.load(gzip.open(sys.argv[2] + '_seg.npy.gz'))
print(json.dumps([str(d.dtype), d.shape, str(s.dtype), s.shape, float(np.abs(d - r).max()), int((s != rs).sum())]))`;
    const [dt, dshape, st, sshape, maxAbs, segDiff] = JSON.parse(
      execFileSync(
        '/usr/bin/python3',
        [
          '-c',
          py,
          out,
          join(REFERENCE, 'preprocessed', 'Dataset801_PhantomMR', '3d_fullres', 'mrA_000'),
        ],
        { encoding: 'utf8' },
      ),
    );
    expect([dt, dshape, st, sshape]).toEqual(['float32', [1, 48, 66, 70], 'int8', [1, 48, 66, 70]]);
    expect(maxAbs).toBeLessThanOrEqual(1e-4);
    expect(segDiff).toBe(0);
  });

  it('bad input: exit 1 with one line; bad usage: exit 2', () => {
    const raw = join(REFERENCE, 'raw', 'Dataset801_PhantomMR');
    const plans = join(REFERENCE, 'plans', 'Dataset801_PhantomMR', 'nnUNetPlans.json');
    for (const [args, pattern] of [
      [['--plans', plans, '--case', 'nope', '-o', tmp], /no case nope/],
      [['--plans', plans, '--config', '3d_lowres', '-o', tmp], /no configuration '3d_lowres'/],
      [['--plans', join(raw, 'dataset.json'), '-o', tmp], /not an nnU-Net plans file/],
      [['--plans', join(tmp, 'missing.json'), '-o', tmp], /cannot read plans/],
    ] as const) {
      const r = fail('preprocess', raw, ...args);
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
    }
    expect(fail('preprocess', raw, '-o', tmp).status).toBe(2);
    expect(fail('preprocess', raw, '--plans', plans, '-o', tmp, '--seed', 'x').status).toBe(2);
  });
});
