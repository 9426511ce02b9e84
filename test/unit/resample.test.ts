import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  computeNewShape,
  resampleData,
  resampleSeg,
  separateZAxis,
  zoomAxis,
} from '../../src/preprocess/resample.ts';
import { roundHalfEven } from '../../src/util/numeric.ts';
import { readNpy } from '../../src/io/npy.ts';
import { REFERENCE } from '../paths.ts';
import type { Shape3 } from '../../src/preprocess/crop.ts';

const load = (p: string) => readNpy(readFileSync(p));

describe('resampling helpers', () => {
  it('rounds half to even and computes new shapes like nnU-Net', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundHalfEven)).toEqual([
      0, 2, 2, 0, -2, 2, 3,
    ]);
    // 802 case 0: 26 slices of 4 mm -> 3.3 mm
    expect(
      computeNewShape(
        [26, 94, 99],
        [4, 0.800000011920929, 0.800000011920929],
        [3.3, 0.800000011920929, 0.800000011920929],
      ),
    ).toEqual([32, 94, 99]);
    expect(
      computeNewShape(
        [27, 76, 75],
        [2, 0.699999988079071, 0.699999988079071],
        [1.2000000476837158, 1, 1],
      ),
    ).toEqual([45, 53, 52]);
  });

  it('picks the separate-z axis as nnU-Net', () => {
    expect(separateZAxis([4, 0.8, 0.8], [3.3, 0.8, 0.8])).toBe(0);
    expect(separateZAxis([2, 0.7, 0.7], [1.2, 1, 1])).toBe(null);
    expect(separateZAxis([1, 1, 1], [1, 1, 5])).toBe(2); // from the target spacing
    expect(separateZAxis([4, 4, 1], [1, 1, 1])).toBe(null); // two axes share the max
    expect(separateZAxis([1, 1, 1], [1, 1, 1], true)).toBe(null);
  });

  it('reproduces samples exactly at zoom 1 and keeps constants constant', () => {
    const shape: Shape3 = [3, 4, 5];
    const a = Float32Array.from({ length: 60 }, (_, i) => Math.sin(i));
    for (const ax of [0, 1, 2]) {
      const r = zoomAxis(a, shape, ax, shape[ax], 3);
      for (let i = 0; i < a.length; i++) expect(r[i]).toBeCloseTo(a[i], 6);
    }
    const c = new Float32Array(60).fill(2.5);
    const up = resampleData(c, 1, shape, [7, 9, 11], [1, 1, 1], [0.5, 0.5, 0.5]);
    expect(up.every((v) => Math.abs(v - 2.5) < 1e-6)).toBe(true);
  });
});

function compare(
  dir: string,
  id: string,
  cur: number[],
  target: number[],
  expectSep: number | null,
) {
  const d = load(`${dir}/${id}_data_before_resampling.npy.gz`);
  const s = load(`${dir}/${id}_seg_before_resampling.npy.gz`);
  const refD = load(`${dir}/${id}_data.npy.gz`);
  const refS = load(`${dir}/${id}_seg.npy.gz`);
  const shape = d.shape.slice(1) as Shape3;
  const newShape = computeNewShape(shape, cur, target) as Shape3;
  expect(newShape).toEqual(refD.shape.slice(1));
  expect(separateZAxis(cur, target)).toBe(expectSep);
  const t0 = performance.now();
  const out = resampleData(d.data as Float32Array, d.shape[0], shape, newShape, cur, target);
  const seg = resampleSeg(Int16Array.from(s.data), shape, newShape, cur, target);
  const ms = performance.now() - t0;
  let maxAbs = 0;
  for (let i = 0; i < out.length; i++) maxAbs = Math.max(maxAbs, Math.abs(out[i] - refD.data[i]));
  let segDiff = 0;
  for (let i = 0; i < seg.length; i++) if (seg[i] !== refS.data[i]) segDiff++;
  console.log(
    `${id}: ${shape} -> ${newShape}: data max abs ${maxAbs.toExponential(2)}, seg voxels differing ${segDiff}, ${ms.toFixed(0)} ms`,
  );
  expect(maxAbs).toBeLessThanOrEqual(1e-4);
  expect(segDiff).toBe(0);
}

describe('resampling vs nnU-Net (data max abs <= 1e-4, seg exact)', () => {
  it('802 ct_000: separate z, 26 -> 32 slices, nearest along z', () => {
    const plans = JSON.parse(
      readFileSync(`${REFERENCE}/plans/Dataset802_PhantomCTaniso/nnUNetPlans.json`, 'utf8'),
    );
    const props = JSON.parse(
      readFileSync(
        `${REFERENCE}/preprocessed/Dataset802_PhantomCTaniso/3d_fullres/ct_000_properties.json`,
        'utf8',
      ),
    );
    compare(
      `${REFERENCE}/preprocessed/Dataset802_PhantomCTaniso/3d_fullres`,
      'ct_000',
      props.spacing,
      plans.configurations['3d_fullres'].spacing,
      0,
    );
  });
  it('804 mrB_000 federated: 27x76x75 -> 45x53x52, cubic, one-hot linear seg', () => {
    const plans = JSON.parse(
      readFileSync(
        `${REFERENCE}/federated/fed_801_804/Dataset804_PhantomMRsiteB/nnUNetPlans.json`,
        'utf8',
      ),
    );
    const dir = `${REFERENCE}/preprocessed_federated/fed_801_804/Dataset804_PhantomMRsiteB/3d_fullres`;
    const props = JSON.parse(readFileSync(`${dir}/mrB_000_properties.json`, 'utf8'));
    compare(dir, 'mrB_000', props.spacing, plans.configurations['3d_fullres'].spacing, null);
  });
});
