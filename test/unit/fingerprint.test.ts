import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { caseFingerprint, summarizeValues } from '../../src/fingerprint/case.ts';
import { datasetFingerprint, mixtureQuantile } from '../../src/fingerprint/dataset.ts';
import { median } from '../../src/util/numeric.ts';
import { mulberry32 } from '../../src/util/rng.ts';
import { loadRawCase } from './helpers/load-nifti.ts';
import { REFERENCE } from '../paths.ts';

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));
const DATASETS = [
  'Dataset801_PhantomMR',
  'Dataset802_PhantomCTaniso',
  'Dataset803_PhantomMR2ch',
  'Dataset804_PhantomMRsiteB',
];
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('dataset fingerprint vs nnU-Net (801-804, all cases)', () => {
  for (const ds of DATASETS) {
    it(ds, () => {
      const fp = json(`${REFERENCE}/fingerprints/${ds}/dataset_fingerprint.json`);
      const exact = json(`${REFERENCE}/fingerprints/${ds}/exact_foreground_stats.json`);
      const dj = json(`${REFERENCE}/raw/${ds}/dataset.json`);
      const ids = Object.keys(exact.per_case).sort();
      const cases = ids.map((id) => {
        const { image, label } = loadRawCase(
          `${REFERENCE}/raw/${ds}`,
          id,
          Object.keys(dj.channel_names).length,
        );
        const c = caseFingerprint(image, label);
        const pc = exact.per_case[id];
        expect(c.relative_size_after_cropping).toBe(pc.relative_size_after_cropping);
        for (const [ch, st] of Object.entries<Record<string, number>>(
          pc.foreground_stats_per_channel,
        )) {
          const s = c.foreground[Number(ch)];
          expect(s.n).toBe(st.n_voxels);
          expect(s.exact).toBe(true);
          expect(rel(s.mean, st.mean)).toBeLessThan(1e-12);
          expect(rel(Math.sqrt(s.m2 / s.n), st.std)).toBeLessThan(1e-10);
          expect([s.min, s.max]).toEqual([st.min, st.max]);
        }
        return c;
      });
      const ours = datasetFingerprint(cases);
      expect(Object.keys(ours)).toEqual(Object.keys(fp));
      expect(ours.shapes_after_crop).toEqual(fp.shapes_after_crop);
      expect(ours.spacings).toEqual(fp.spacings);
      expect(ours.median_relative_size_after_cropping).toBe(fp.median_relative_size_after_cropping);
      for (const [ch, ref] of Object.entries<Record<string, number>>(
        fp.foreground_intensity_properties_per_channel,
      )) {
        const o = ours.foreground_intensity_properties_per_channel[ch];
        const conv = exact.converged_equal_weight_per_case[ch];
        expect(Object.keys(o).sort()).toEqual(Object.keys(ref).sort());
        console.log(
          `${ds} ch${ch}: mean ${o.mean} (nnU-Net ${ref.mean}, rel ${rel(o.mean, ref.mean).toExponential(1)}), ` +
            `std ${o.std} (nnU-Net ${ref.std}, rel ${rel(o.std, ref.std).toExponential(1)}), p0.5/med/p99.5 ${o.percentile_00_5}/${o.median}/${o.percentile_99_5}`,
        );
        expect(rel(o.mean, ref.mean)).toBeLessThan(1e-3);
        expect(rel(o.std, ref.std)).toBeLessThan(1e-3);
        for (const k of ['min', 'max', 'median', 'percentile_00_5', 'percentile_99_5'])
          expect(o[k as keyof typeof o]).toBe(ref[k]);
        // and the converged values themselves, to float32 precision
        expect(rel(o.mean, conv.mean)).toBeLessThan(1e-7);
        expect(rel(o.std, conv.std)).toBeLessThan(1e-7);
      }
    });
  }
});

describe('summaries and mixture quantiles', () => {
  it('weights cases equally, whatever their voxel count', () => {
    const a = summarizeValues(Float32Array.of(1, 1, 1, 1, 1, 1, 1, 1, 1, 2)); // 10 voxels
    const b = summarizeValues(Float32Array.of(3, 4)); // 2 voxels
    // F(1) = (0.9 + 0)/2 = 0.45, F(2) = 0.5, F(3) = 0.75, F(4) = 1
    expect(mixtureQuantile([a, b], 0.45)).toBe(1);
    expect(mixtureQuantile([a, b], 0.46)).toBe(2);
    expect(mixtureQuantile([a, b], 0.5)).toBe(2); // exact tie reaches
    expect(mixtureQuantile([a, b], 0.51)).toBe(3);
    expect(mixtureQuantile([a, b], 1)).toBe(4);
    expect(median([0.3, 0.1, 0.2, 0.4])).toBeCloseTo(0.25, 15);
  });

  it('keeps float-valued cases bounded and their CDF within 1/budget', () => {
    const r = mulberry32(7);
    const v = Float32Array.from({ length: 200_000 }, () => r() * 100);
    const s = summarizeValues(v.slice(), 1000);
    expect(s.exact).toBe(false);
    expect(s.values.length).toBeLessThanOrEqual(1000);
    const sorted = v.slice().sort();
    for (const q of [0.005, 0.5, 0.995]) {
      const got = mixtureQuantile([s], q);
      const rank = sorted.findIndex((x) => x >= got) / sorted.length;
      expect(Math.abs(rank - q)).toBeLessThanOrEqual(1 / 1000 + 1e-9);
    }
    expect(s.min).toBe(sorted[0]);
    expect(s.max).toBe(sorted[sorted.length - 1]);
  });
});
