// nnU-Net raw dataset folders: discovery and validation of the four reference phantom datasets,
// with geometry checked against make_phantoms.py's manifest (written with nibabel).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  loadCase,
  openRawDataset,
  stackChannels,
  validateRawDataset,
} from '../../src/io/raw-dataset.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { nnunetView } from '../../src/io/volume.ts';
import { REFERENCE } from '../paths.ts';

const RAW = resolve(REFERENCE, 'raw');
type Manifest = Record<
  string,
  Record<string, { spacing_xyz: number[]; affine: number[][]; label: { shape_xyz: number[] } }>
>;
const manifest = JSON.parse(readFileSync(resolve(RAW, 'manifest.json'), 'utf8')) as Manifest;
const DATASETS = [
  'Dataset801_PhantomMR',
  'Dataset802_PhantomCTaniso',
  'Dataset803_PhantomMR2ch',
  'Dataset804_PhantomMRsiteB',
];

describe('reference raw datasets validate cleanly', () => {
  it.each(DATASETS)('%s', async (name) => {
    const r = await validateRawDataset(fsSource(resolve(RAW, name)));
    expect(r.problems).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.cases.flatMap((c) => c.problems)).toEqual([]);
    expect(r.ok).toBe(true);
    const cases = manifest[name];
    expect(r.cases.map((c) => c.id)).toEqual(Object.keys(cases).sort());
    for (const c of r.cases) {
      const m = cases[c.id];
      expect(c.dims).toEqual(m.label.shape_xyz);
      expect(c.spacing!.map(Math.fround)).toEqual(m.spacing_xyz.map(Math.fround));
    }
  });

  it('case counts and channels: 5x1, 4x1, 3x2, 4x1 (README §1)', async () => {
    const opened = await Promise.all(
      DATASETS.map((d) => openRawDataset(fsSource(resolve(RAW, d)))),
    );
    expect(opened.map((o) => [o.cases.length, o.channels.length])).toEqual([
      [5, 1],
      [4, 1],
      [3, 2],
      [4, 1],
    ]);
    expect(opened[2].cases[0]).toEqual({
      id: 'mp_000',
      images: ['imagesTr/mp_000_0000.nii.gz', 'imagesTr/mp_000_0001.nii.gz'],
      label: 'labelsTr/mp_000.nii.gz',
    });
  });
});

describe('loadCase', () => {
  it('803 mp_001: two channels + label on one grid, affine as the manifest', async () => {
    const src = fsSource(resolve(RAW, 'Dataset803_PhantomMR2ch'));
    const ds = await openRawDataset(src);
    const c = await loadCase(src, ds.cases[1]);
    const m = manifest.Dataset803_PhantomMR2ch.mp_001;
    expect(c.images).toHaveLength(2);
    for (const v of [...c.images, c.label!]) {
      expect(v.dims).toEqual(m.label.shape_xyz);
      v.affine.forEach((x, i) =>
        expect(Math.fround(x)).toBe(Math.fround(m.affine[Math.floor(i / 4)][i % 4])),
      );
    }
    expect(c.label!.datatype).toBe('uint8');
    const stacked = stackChannels(c.images);
    const view = nnunetView(stacked);
    const [x, y, z] = m.label.shape_xyz;
    expect(view.shape).toEqual([2, z, y, x]);
    expect(stacked.data[x * y * z + 5]).toBe(c.images[1].data[5]);
  });
  it('802 ct_002 (uint16 + scl_inter) comes out in HU', async () => {
    const src = fsSource(resolve(RAW, 'Dataset802_PhantomCTaniso'));
    const ds = await openRawDataset(src);
    const c = await loadCase(src, ds.cases[2]);
    let min = Infinity;
    for (const v of c.images[0].data) min = Math.min(min, v);
    expect(min).toBe(-1024); // nibabel get_fdata min
  });
});
