// `fednnunet info` end to end (spawns the CLI).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REFERENCE, FIXTURES } from '../paths.ts';

const run = (...args: string[]) =>
  spawnSync(process.execPath, ['bin/fednnunet.js', 'info', ...args], { encoding: 'utf8' });

describe('fednnunet info', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'info-cli-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('NIfTI file: geometry and value range (nibabel numbers)', () => {
    const r = run(resolve(REFERENCE, 'raw/Dataset802_PhantomCTaniso/imagesTr/ct_002_0000.nii.gz'));
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({
      type: 'nifti',
      shape: [98, 98, 24],
      channels: 1,
      spacing: [0.800000011920929, 0.800000011920929, 4],
      orientation: 'LPS',
      datatype: 'float32',
      storedDatatype: 'uint16',
      min: -1024,
      max: 734,
    });
    expect(j.affine[1]).toEqual([0, -0.800000011920929, 0, 110.55000305175781]);
  });

  it('a detached NRRD header reads its data file; a symlink to /dev/zero is refused, not read', () => {
    writeFileSync(
      join(tmp, 'v.nhdr'),
      'NRRD0004\ntype: uint8\ndimension: 3\nsizes: 2 2 2\nencoding: raw\nspace: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,2)\ndata file: v.raw\n',
    );
    writeFileSync(join(tmp, 'v.raw'), new Uint8Array([0, 1, 2, 3, 4, 5, 6, 9]));
    const r = run(join(tmp, 'v.nhdr'));
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      type: 'nrrd',
      shape: [2, 2, 2],
      spacing: [1, 1, 2],
      orientation: 'LPS',
      min: 0,
      max: 9,
      affine: [
        [-1, 0, 0, 0],
        [0, -1, 0, 0],
        [0, 0, 2, 0],
        [0, 0, 0, 1],
      ],
    });
    symlinkSync('/dev/zero', join(tmp, 'zero.nii'));
    const z = run(join(tmp, 'zero.nii'));
    expect(z.status).toBe(1);
    expect(z.stderr).toMatch(/cannot read zero\.nii: not a regular file/);
  });

  it('DICOM folder: one series per SeriesInstanceUID', () => {
    const r = run(resolve(FIXTURES, 'dicom-ct-phantom'));
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.type).toBe('dicom');
    expect(j.series).toHaveLength(1);
    expect(j.series[0]).toMatchObject({
      files: 26,
      shape: [99, 94, 26],
      orientation: 'LPS',
      min: -1048,
      max: 734,
    }); // nibabel on ct_000: min -1048 max 734
  });

  it('raw dataset with problems: JSON with every problem, exit 1', () => {
    const dir = join(tmp, 'Dataset803_PhantomMR2ch');
    cpSync(resolve(REFERENCE, 'raw/Dataset803_PhantomMR2ch'), dir, { recursive: true });
    rmSync(join(dir, 'imagesTr/mp_001_0001.nii.gz'));
    rmSync(join(dir, 'labelsTr/mp_002.nii.gz'));
    const r = run(dir);
    expect(r.status).toBe(1);
    const j = JSON.parse(r.stdout);
    expect(j.type).toBe('nnunet-raw');
    expect(j.ok).toBe(false);
    expect(j.cases.map((c: { problems: string[] }) => c.problems)).toEqual([
      [],
      ['missing channel file imagesTr/mp_001_0001.nii.gz (channel 1: "ADC")'],
      ['missing label file labelsTr/mp_002.nii.gz'],
    ]);
  });

  it('bad input: one line on stderr, exit 1', () => {
    for (const r of [run('README.md'), run(join(tmp, 'nope'))]) {
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^fednnunet info: /);
    }
    expect(run(join(tmp, 'nope')).stderr.trim()).toBe(
      `fednnunet info: ${join(tmp, 'nope')}: no such file or folder`,
    );
  });
});
