import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { bboxOfMask, cropToNonzero, fillHoles } from '../../src/preprocess/crop.ts';
import { nnunetView } from '../../src/io/volume.ts';
import { loadRawCase } from './helpers/load-nifti.ts';
import { REFERENCE } from '../paths.ts';

const DATASETS = [
  'Dataset801_PhantomMR',
  'Dataset802_PhantomCTaniso',
  'Dataset803_PhantomMR2ch',
  'Dataset804_PhantomMRsiteB',
];

describe('fillHoles / bbox', () => {
  it('fills enclosed background (face connectivity) and keeps border-connected background', () => {
    const shape: [number, number, number] = [5, 5, 5];
    const m = new Uint8Array(125);
    const at = (z: number, y: number, x: number) => (z * 5 + y) * 5 + x;
    // a shell 1..3 on every axis with a hollow centre, plus a channel from the centre to the x border
    for (let z = 1; z <= 3; z++)
      for (let y = 1; y <= 3; y++) for (let x = 1; x <= 3; x++) m[at(z, y, x)] = 1;
    m[at(2, 2, 2)] = 0;
    const closed = m.slice();
    fillHoles(closed, shape);
    expect(closed[at(2, 2, 2)]).toBe(1);
    expect(closed[at(0, 0, 0)]).toBe(0);
    const open = m.slice();
    open[at(2, 2, 3)] = 0; // centre now touches the face neighbour (2,2,4) on the border
    fillHoles(open, shape);
    expect(open[at(2, 2, 2)]).toBe(0);
    expect(open[at(2, 2, 3)]).toBe(0);
    // a centre reaching the border only diagonally is a hole under face connectivity
    const diag = m.slice();
    diag[at(2, 2, 2)] = 0;
    diag[at(3, 3, 3)] = 0;
    diag[at(3, 3, 2)] = 1;
    const d2 = diag.slice();
    fillHoles(d2, shape);
    expect(d2[at(2, 2, 2)]).toBe(1);
    expect(d2[at(3, 3, 3)]).toBe(0);
    expect(bboxOfMask(closed, shape)).toEqual([
      [1, 4],
      [1, 4],
      [1, 4],
    ]);
    expect(bboxOfMask(new Uint8Array(125), shape)).toEqual([
      [0, 5],
      [0, 5],
      [0, 5],
    ]);
  });

  it('synthesises a label map when there is none', () => {
    const data = new Float32Array(27);
    data[13] = 5;
    data[14] = 2;
    const r = cropToNonzero(data, 1, [3, 3, 3]);
    expect(r.bbox).toEqual([
      [1, 2],
      [1, 2],
      [1, 3],
    ]);
    expect(Array.from(r.seg)).toEqual([0, 0]);
    expect(Array.from(r.data)).toEqual([5, 2]);
  });
});

describe('cropToNonzero on the phantoms (exact vs exact_foreground_stats.json)', () => {
  for (const ds of DATASETS) {
    it(ds, () => {
      const stats = JSON.parse(
        readFileSync(`${REFERENCE}/fingerprints/${ds}/exact_foreground_stats.json`, 'utf8'),
      );
      const dj = JSON.parse(readFileSync(`${REFERENCE}/raw/${ds}/dataset.json`, 'utf8'));
      const nch = Object.keys(dj.channel_names).length;
      for (const [id, pc] of Object.entries<{
        shape_zyx_before_crop: number[];
        spacing_zyx: number[];
        bbox_used_for_cropping: number[][];
        shape_after_crop: number[];
        label_counts_after_crop: Record<string, number>;
        'voxels_outside_filled_nonzero_mask_in_bbox (seg -1)': number;
      }>(stats.per_case)) {
        const { image, label } = loadRawCase(`${REFERENCE}/raw/${ds}`, id, nch);
        const v = nnunetView(image);
        expect(v.shape.slice(1)).toEqual(pc.shape_zyx_before_crop);
        expect(v.spacing).toEqual(pc.spacing_zyx);
        const r = cropToNonzero(v.data, nch, [v.shape[1], v.shape[2], v.shape[3]], label.data);
        expect(r.bbox).toEqual(pc.bbox_used_for_cropping);
        expect(r.shape).toEqual(pc.shape_after_crop);
        const counts: Record<string, number> = {};
        for (const s of r.seg) counts[s] = (counts[s] ?? 0) + 1;
        const want = { ...pc.label_counts_after_crop };
        expect(counts).toEqual(want);
        expect(counts['-1'] ?? 0).toBe(pc['voxels_outside_filled_nonzero_mask_in_bbox (seg -1)']);
      }
    });
  }
});
