import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { cropToNonzero } from '../../src/preprocess/crop.ts';
import { normalize, normalizeChannel } from '../../src/preprocess/normalize.ts';
import { readNpy } from '../../src/io/npy.ts';
import { nnunetView } from '../../src/io/volume.ts';
import { loadRawCase } from './helpers/load-nifti.ts';
import { REFERENCE } from '../paths.ts';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** crop + normalize of the first case with the local plans, as run_case does before resampling. */
function cropAndNormalize(ds: string, caseId: string) {
  const plans = JSON.parse(readFileSync(`${REFERENCE}/plans/${ds}/nnUNetPlans.json`, 'utf8'));
  const cfg = plans.configurations['3d_fullres'];
  const nch = cfg.normalization_schemes.length;
  const { image, label } = loadRawCase(`${REFERENCE}/raw/${ds}`, caseId, nch);
  const v = nnunetView(image);
  const r = cropToNonzero(v.data, nch, [v.shape[1], v.shape[2], v.shape[3]], label.data);
  normalize(
    r.data,
    nch,
    r.seg,
    cfg.normalization_schemes,
    cfg.use_mask_for_norm,
    plans.foreground_intensity_properties_per_channel,
  );
  return r;
}

describe('normalize vs nnU-Net (abs tol 1e-5, seg exact)', () => {
  const cases: [string, string, string][] = [
    ['Dataset801_PhantomMR', 'mrA_000', 'mrA_000_data.npy.gz'],
    ['Dataset803_PhantomMR2ch', 'mp_000', 'mp_000_data.npy.gz'],
    ['Dataset804_PhantomMRsiteB', 'mrB_000', 'mrB_000_data.npy.gz'],
    ['Dataset802_PhantomCTaniso', 'ct_000', 'ct_000_data_before_resampling.npy.gz'],
  ];
  for (const [ds, id, file] of cases) {
    it(`${ds} ${id}`, () => {
      const dir = `${REFERENCE}/preprocessed/${ds}/3d_fullres`;
      const ref = readNpy(readFileSync(`${dir}/${file}`));
      const refSeg = readNpy(readFileSync(`${dir}/${file.replace('_data', '_seg')}`));
      const r = cropAndNormalize(ds, id);
      expect(ref.shape.slice(1)).toEqual(r.shape);
      const d = maxAbsDiff(r.data, ref.data);
      console.log(`${ds}: normalized data max abs diff ${d.toExponential(2)}`);
      expect(d).toBeLessThanOrEqual(1e-5);
      expect(Array.from(r.seg)).toEqual(Array.from(refSeg.data));
    });
  }

  it('other schemes', () => {
    const x = Float32Array.of(2, 4, 6);
    normalizeChannel(x, 'RescaleTo01Normalization', {});
    expect(Array.from(x)).toEqual([0, 0.5, 1]);
    const y = Float32Array.of(0, 51, 255);
    normalizeChannel(y, 'RGBTo01Normalization', {});
    expect(Array.from(y)).toEqual([0, Math.fround(0.2), 1]);
    const z = Float32Array.of(3, 3);
    normalizeChannel(z, 'ZScoreNormalization', {});
    expect(Array.from(z)).toEqual([0, 0]); // std 0 -> eps, no NaN
    const w = Float32Array.of(7, -1);
    normalizeChannel(w, 'NoNormalization', {});
    expect(Array.from(w)).toEqual([7, -1]);
    expect(() => normalizeChannel(w, 'Bogus', {})).toThrow(/unknown normalization/);
    const m = Float32Array.of(0, 1, 3);
    normalizeChannel(m, 'ZScoreNormalization', { useMaskForNorm: true, seg: [-1, 0, 1] });
    expect(Array.from(m)).toEqual([0, -1, 1]);
  });
});
