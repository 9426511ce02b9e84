import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import {
  foregroundClasses,
  runCase,
  sampleClassLocations,
  sampleWithoutReplacement,
} from '../../src/preprocess/preprocess.ts';
import { readNpy } from '../../src/io/npy.ts';
import { mulberry32 } from '../../src/util/rng.ts';
import { loadRawCase } from './helpers/load-nifti.ts';
import { REFERENCE } from '../paths.ts';

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

function firstCase(ds: string): string {
  return readdirSync(`${REFERENCE}/raw/${ds}/labelsTr`)
    .map((f) => f.replace(/\.nii\.gz$/, ''))
    .sort()[0];
}

function check(ds: string, plansPath: string, outDir: string) {
  const dj = json(`${REFERENCE}/raw/${ds}/dataset.json`);
  const plans = json(plansPath);
  const id = firstCase(ds);
  const { image, label } = loadRawCase(
    `${REFERENCE}/raw/${ds}`,
    id,
    Object.keys(dj.channel_names).length,
  );
  const t0 = performance.now();
  const r = runCase(image, label, plans, '3d_fullres', dj);
  const ms = performance.now() - t0;
  const refD = readNpy(readFileSync(`${outDir}/${id}_data.npy.gz`));
  const refS = readNpy(readFileSync(`${outDir}/${id}_seg.npy.gz`));
  const props = json(`${outDir}/${id}_properties.json`);
  expect(r.shape).toEqual(refD.shape);
  expect([1, ...r.shape.slice(1)]).toEqual(refS.shape);
  expect(r.seg).toBeInstanceOf(Int8Array);
  let maxAbs = 0;
  for (let i = 0; i < r.data.length; i++)
    maxAbs = Math.max(maxAbs, Math.abs(r.data[i] - refD.data[i]));
  let segDiff = 0;
  for (let i = 0; i < r.seg.length; i++) if (r.seg[i] !== refS.data[i]) segDiff++;
  console.log(
    `${ds} ${id}: shape ${r.shape}, data max abs ${maxAbs.toExponential(2)}, seg voxels differing ${segDiff}, ${ms.toFixed(0)} ms`,
  );
  expect(maxAbs).toBeLessThanOrEqual(1e-4);
  expect(segDiff).toBe(0);
  const p = r.properties;
  expect(p.spacing).toEqual(props.spacing);
  expect(p.shape_before_cropping).toEqual(props.shape_before_cropping);
  expect(p.bbox_used_for_cropping).toEqual(props.bbox_used_for_cropping);
  expect(p.shape_after_cropping_and_before_resampling).toEqual(
    props.shape_after_cropping_and_before_resampling,
  );
  const counts = Object.fromEntries(
    Object.entries(p.class_locations!).map(([k, v]) => [k, v.length / 4]),
  );
  expect(counts).toEqual(props.class_locations_counts);
  // every location carries its label and is distinct
  const [, , ny, nx] = r.shape;
  for (const [k, locs] of Object.entries(p.class_locations!)) {
    const seen = new Set<number>();
    for (let i = 0; i < locs.length; i += 4) {
      const idx = (locs[i + 1] * ny + locs[i + 2]) * nx + locs[i + 3];
      expect(locs[i]).toBe(0);
      expect(r.seg[idx]).toBe(Number(k));
      seen.add(idx);
    }
    expect(seen.size).toBe(locs.length / 4);
  }
}

describe('runCase vs DefaultPreprocessor.run_case (3d_fullres, first case)', () => {
  for (const ds of [
    'Dataset801_PhantomMR',
    'Dataset802_PhantomCTaniso',
    'Dataset803_PhantomMR2ch',
    'Dataset804_PhantomMRsiteB',
  ]) {
    it(`${ds} local plans`, () =>
      check(
        ds,
        `${REFERENCE}/plans/${ds}/nnUNetPlans.json`,
        `${REFERENCE}/preprocessed/${ds}/3d_fullres`,
      ));
  }
  for (const ds of ['Dataset801_PhantomMR', 'Dataset804_PhantomMRsiteB']) {
    it(`${ds} federated plans (FFE 801+804)`, () =>
      check(
        ds,
        `${REFERENCE}/federated/fed_801_804/${ds}/nnUNetPlans.json`,
        `${REFERENCE}/preprocessed_federated/fed_801_804/${ds}/3d_fullres`,
      ));
  }
});

describe('class locations', () => {
  it('collects labels, regions and the ignore key like LabelManager', () => {
    expect(foregroundClasses({ labels: { background: 0, a: 1, b: 2 } })).toEqual([1, 2]);
    expect(foregroundClasses({ labels: { background: 0, a: 1, ignore: 2 } })).toEqual([
      1,
      [-1, 0, 1],
    ]);
    expect(foregroundClasses({ labels: { background: 0, whole: [1, 2], core: 2 } })).toEqual([
      [1, 2],
      [2],
    ]);
  });

  it('samples k = max(min(10000, n), ceil(0.01 n)) distinct voxels, deterministic per seed', () => {
    const seg = new Int8Array(2_000_000);
    for (let i = 0; i < seg.length; i += 3) seg[i] = 1; // 666,667 voxels: max(min(10000, n), 6,667) = 10000
    for (let i = 1; i < 200; i += 2) seg[i] = 2;
    const a = sampleClassLocations(seg, [20, 100, 1000], [1, 2, 3]);
    expect(a['1'].length / 4).toBe(10000);
    expect(a['2'].length / 4).toBe(100);
    expect(a['3'].length).toBe(0);
    const big = new Int8Array(3_000_000).fill(1);
    expect(sampleClassLocations(big, [30, 100, 1000], [1])['1'].length / 4).toBe(30000);
    expect(sampleClassLocations(seg, [20, 100, 1000], [1, 2, 3])).toEqual(a);
    const s = sampleWithoutReplacement(50, 50, mulberry32(1));
    expect(Array.from(s)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });
});

describe('transpose_forward', () => {
  it('runCase on a plan with [2, 0, 1] equals runCase on the pre-transposed volume with [0, 1, 2]', () => {
    const dj = json(`${REFERENCE}/raw/Dataset801_PhantomMR/dataset.json`);
    const plans = json(`${REFERENCE}/plans/Dataset801_PhantomMR/nnUNetPlans.json`);
    const { image, label } = loadRawCase(`${REFERENCE}/raw/Dataset801_PhantomMR`, 'mrA_000', 1);
    const perm = [2, 0, 1];
    const cfgSpacing = plans.configurations['3d_fullres'].spacing as number[];
    const permuted = {
      ...plans,
      transpose_forward: perm,
      configurations: {
        '3d_fullres': {
          ...plans.configurations['3d_fullres'],
          spacing: perm.map((i) => cfgSpacing[i]),
        },
      },
    };
    const a = runCase(image, label, permuted, '3d_fullres', dj, { classLocations: false });
    // Same case with the axes moved by hand: numpy (z, y, x) -> (x, z, y), i.e. NIfTI dims (y, z, x).
    const [nx, ny, nz] = image.dims;
    const move = <T extends Int16Array | Float32Array | Uint8Array>(
      src: ArrayLike<number>,
      out: T,
    ): T => {
      let o = 0;
      for (let x = 0; x < nx; x++)
        for (let z = 0; z < nz; z++)
          for (let y = 0; y < ny; y++) out[o++] = src[(z * ny + y) * nx + x];
      return out;
    };
    const geo = {
      dims: [ny, nz, nx] as [number, number, number],
      spacing: [image.spacing[1], image.spacing[2], image.spacing[0]] as [number, number, number],
    };
    const img2 = { ...image, ...geo, data: move(image.data, new Float32Array(image.data.length)) };
    const lab2 = { ...label, ...geo, data: move(label.data, new Uint8Array(label.data.length)) };
    const b = runCase(img2, lab2, { ...permuted, transpose_forward: [0, 1, 2] }, '3d_fullres', dj, {
      classLocations: false,
    });
    expect(a.shape).toEqual(b.shape);
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(Array.from(a.seg)).toEqual(Array.from(b.seg));
    expect(a.properties.spacing).toEqual([1.2000000476837158, 1, 1]); // reader spacing, before transposition
    expect(a.properties.shape_before_cropping).toEqual([76, 53, 66]);
  });
});
