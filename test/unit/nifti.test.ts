// NIfTI reader: geometry and values against nibabel 5.0 (numbers in comments come from
// /usr/bin/python3 + nibabel on the same files).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readNifti } from '../../src/io/nifti.ts';
import { axcodes } from '../../src/io/geometry.ts';
import { gunzip } from '../../src/io/gzip.ts';
import { REFERENCE, FIXTURES } from '../paths.ts';

const RAW = resolve(REFERENCE, 'raw');
const LOCAL = resolve(import.meta.dirname, '../fixtures/nifti');
const load = (p: string) => readNifti(new Uint8Array(readFileSync(p)), p);

function stats(a: ArrayLike<number>) {
  let min = Infinity,
    max = -Infinity,
    sum = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x;
  }
  return { min, max, sum };
}

describe('readNifti: fixtures match nibabel', () => {
  it('anatomical.nii: big-endian int16, sform 2, LAS', () => {
    const v = load(resolve(FIXTURES, 'nifti/anatomical.nii'));
    // nibabel: shape (33, 41, 25), >i2, zooms 2,2,2, affine below, aff2axcodes ('L','A','S')
    expect(v.dims).toEqual([33, 41, 25]);
    expect(v.channels).toBe(1);
    expect(v.datatype).toBe('int16');
    expect(v.header.littleEndian).toBe(false);
    expect(v.spacing).toEqual([2, 2, 2]);
    expect(v.affine).toEqual([-2, 0, 0, 32, 0, 2, 0, -40, 0, 0, 2, -16, 0, 0, 0, 1]);
    expect(v.orientation).toBe('LAS');
    // nibabel: min -610, max 30393, sum 284166082, voxel [10,20,12] = 10872
    expect(stats(v.data)).toEqual({ min: -610, max: 30393, sum: 284166082 });
    expect(v.data[10 + 33 * (20 + 41 * 12)]).toBe(10872);
  });

  it('someones_anatomy.nii.gz: uint8 with scl_slope/inter -> float32 as nibabel get_fdata().astype(float32)', () => {
    const v = load(resolve(FIXTURES, 'nifti/someones_anatomy.nii.gz'));
    // nibabel: shape (57, 67, 56), uint8, scl_slope 0.35245904, scl_inter 6.678364, sform 4, RAS
    expect(v.dims).toEqual([57, 67, 56]);
    expect(v.storedDatatype).toBe('uint8');
    expect(v.datatype).toBe('float32');
    expect(v.spacing).toEqual([2.75, 2.75, 2.75]);
    expect(v.affine).toEqual([2.75, 0, 0, -78, 0, 2.75, 0, -91, 0, 0, 2.75, -91, 0, 0, 0, 1]);
    expect(v.orientation).toBe('RAS');
    // nibabel float32: sum (float64) 9834293.123020172, min 6.678364, max 96.55542, [28,33,28] = 64.12919 (raw 163)
    const s = stats(v.data);
    expect(s.sum).toBe(9834293.123020172);
    expect(s.min).toBe(Math.fround(6.678364));
    expect(s.max).toBe(Math.fround(96.55542));
    expect(v.data[28 + 57 * (33 + 67 * 28)]).toBe(Math.fround(64.12919));
  });

  it('801 mrA_000: int16, spacing as float32 widened, RAS', () => {
    const v = load(resolve(RAW, 'Dataset801_PhantomMR/imagesTr/mrA_000_0000.nii.gz'));
    // nibabel: (76, 66, 53) int16, zooms (1, 1, 1.2000000476837158), min 0 max 179 sum 13158633
    expect(v.dims).toEqual([76, 66, 53]);
    expect(v.datatype).toBe('int16');
    expect(v.spacing).toEqual([1, 1, 1.2000000476837158]);
    expect(v.affine).toEqual([
      1, 0, 0, -23.079999923706055, 0, 1, 0, -20.450000762939453, 0, 0, 1.2000000476837158,
      39.18000030517578, 0, 0, 0, 1,
    ]);
    expect(v.orientation).toBe('RAS');
    expect(stats(v.data)).toEqual({ min: 0, max: 179, sum: 13158633 });
  });

  it('802 ct_002: uint16 + scl_inter -1024 gives HU', () => {
    const v = load(resolve(RAW, 'Dataset802_PhantomCTaniso/imagesTr/ct_002_0000.nii.gz'));
    // nibabel: (98, 98, 24) uint16, slope 1 inter -1024, LPS, get_fdata min -1024 max 734 sum -110240217
    expect(v.dims).toEqual([98, 98, 24]);
    expect(v.storedDatatype).toBe('uint16');
    expect(v.datatype).toBe('float32');
    expect(v.spacing).toEqual([0.800000011920929, 0.800000011920929, 4]);
    expect(v.affine).toEqual([
      -0.800000011920929, 0, 0, -9.140000343322754, 0, -0.800000011920929, 0, 110.55000305175781, 0,
      0, 4, -125.83000183105469, 0, 0, 0, 1,
    ]);
    expect(v.orientation).toBe('LPS');
    expect(stats(v.data)).toEqual({ min: -1024, max: 734, sum: -110240217 });
    expect(Array.from(v.data.subarray(0, 5))).toEqual([-1012, -978, -1015, -1007, -1000]);
  });

  it('803 mp_000: oblique affine (10 degrees about x), two channel files', () => {
    const t2 = load(resolve(RAW, 'Dataset803_PhantomMR2ch/imagesTr/mp_000_0000.nii.gz'));
    const adc = load(resolve(RAW, 'Dataset803_PhantomMR2ch/imagesTr/mp_000_0001.nii.gz'));
    const aff = [
      1.5, 0, 0, -43.630001068115234, 0, 1.477211594581604, -0.26047226786613464,
      -79.76000213623047, 0, 0.26047226786613464, 1.477211594581604, -39.5099983215332, 0, 0, 0, 1,
    ];
    for (const v of [t2, adc]) {
      expect(v.dims).toEqual([59, 55, 60]);
      expect(v.spacing).toEqual([1.5, 1.5, 1.5]);
      expect(v.affine).toEqual(aff);
      expect(v.orientation).toBe('RAS');
    }
    // nibabel: T2 min 0 max 268 sum 9040759; ADC min 0 max 1898 sum 80849508
    expect(stats(t2.data)).toEqual({ min: 0, max: 268, sum: 9040759 });
    expect(stats(adc.data)).toEqual({ min: 0, max: 1898, sum: 80849508 });
  });

  it('804 mrB_000: x and y flipped affine -> LPS', () => {
    const v = load(resolve(RAW, 'Dataset804_PhantomMRsiteB/imagesTr/mrB_000_0000.nii.gz'));
    // nibabel: (95, 104, 31) int16, zooms (0.699999988079071, 0.699999988079071, 2), LPS, min 0 max 349 sum 30188446
    expect(v.dims).toEqual([95, 104, 31]);
    expect(v.spacing).toEqual([0.699999988079071, 0.699999988079071, 2]);
    expect(v.affine).toEqual([
      -0.699999988079071, 0, 0, 25, 0, -0.699999988079071, 0, -32.0099983215332, 0, 0, 2,
      -21.90999984741211, 0, 0, 0, 1,
    ]);
    expect(v.orientation).toBe('LPS');
    expect(stats(v.data)).toEqual({ min: 0, max: 349, sum: 30188446 });
  });

  it('NIfTI-2, 4-D float64 (2 channels), sform only', () => {
    const v = load(resolve(LOCAL, 'nifti2_4d_f64.nii.gz'));
    // nibabel: Nifti2Header, (5, 4, 3, 2) float64, sform 2, qform 0, zooms (0.9, 1.5, 2.5079872407968904), ALS
    expect(v.header.version).toBe(2);
    expect(v.dims).toEqual([5, 4, 3]);
    expect(v.channels).toBe(2);
    expect(v.datatype).toBe('float64');
    expect(v.spacing).toEqual([0.9, 1.5, 2.5079872407968904]);
    expect(v.affine).toEqual([0, -1.5, 0, 10, 0.9, 0, 0.2, -3, 0, 0, 2.5, 7.25, 0, 0, 0, 1]);
    expect(v.orientation).toBe('ALS');
    // nibabel: [0,0,0,0] 2.0409191213851825, [1,0,0,0] -0.1828389745977349, [0,0,0,1] -2.5556650313141818
    expect(v.data[0]).toBe(2.0409191213851825);
    expect(v.data[1]).toBe(-0.1828389745977349);
    expect(v.data[60]).toBe(-2.5556650313141818);
    const s = stats(v.data);
    expect(s.min).toBe(-2.8281623068437627);
    expect(s.max).toBe(3.3229995166448827);
    expect(s.sum).toBeCloseTo(-3.8800057620209194, 12);
  });

  it('big-endian uint16, scl_slope 2 / scl_inter -5, qform only (qfac -1)', () => {
    const v = load(resolve(LOCAL, 'be_u2_scaled_qform.nii'));
    // nibabel: (6, 5, 4) >u2, sform 0, qform 1, affine diag(-1.25, 1.25, 3) + (2.5, 0, 0), LAS;
    // get_fdata min -5 max 1661 sum 99360, first [-5, 275, 555], [5,4,3] = 1661 (raw 833)
    expect(v.dims).toEqual([6, 5, 4]);
    expect(v.storedDatatype).toBe('uint16');
    expect(v.datatype).toBe('float32');
    expect(v.affine).toEqual([-1.25, 0, 0, 2.5, 0, 1.25, 0, 0, 0, 0, 3, 0, 0, 0, 0, 1]);
    expect(v.orientation).toBe('LAS');
    expect(stats(v.data)).toEqual({ min: -5, max: 1661, sum: 99360 });
    expect(Array.from(v.data.subarray(0, 3))).toEqual([-5, 275, 555]);
    expect(v.data[5 + 6 * (4 + 5 * 3)]).toBe(1661);
  });
});

describe('readNifti: affine fallbacks as nibabel get_best_affine', () => {
  const anat = () => new Uint8Array(readFileSync(resolve(FIXTURES, 'nifti/anatomical.nii')));
  it('sform_code 0 -> qform (quaternion (0,1,0), qfac -1)', () => {
    const b = anat();
    new DataView(b.buffer).setInt16(254, 0, false);
    // nibabel: [[-2,0,0,32],[0,2,0,-40],[0,0,2,-16]], LAS
    const v = readNifti(b);
    expect(v.affine).toEqual([-2, 0, 0, 32, 0, 2, 0, -40, 0, 0, 2, -16, 0, 0, 0, 1]);
  });
  it('sform_code 0 and qform_code 0 -> pixdim diagonal centred, x flipped', () => {
    const b = anat();
    new DataView(b.buffer).setInt16(254, 0, false);
    new DataView(b.buffer).setInt16(252, 0, false);
    // nibabel get_base_affine: [[-2,0,0,32],[0,2,0,-40],[0,0,2,-24]]
    expect(readNifti(b).affine).toEqual([-2, 0, 0, 32, 0, 2, 0, -40, 0, 0, 2, -24, 0, 0, 0, 1]);
  });
  it('oblique qform (803 with sform_code 0)', () => {
    const b = gunzip(
      new Uint8Array(
        readFileSync(resolve(RAW, 'Dataset803_PhantomMR2ch/imagesTr/mp_000_0000.nii.gz')),
      ),
    );
    new DataView(b.buffer, b.byteOffset).setInt16(254, 0, true);
    // nibabel (extended-precision quaternion maths): 1.477211628636778, 0.2604722714998236
    const a = readNifti(b).affine;
    const want = [
      1.5, 0, 0, -43.630001068115234, 0, 1.477211628636778, -0.2604722714998236, -79.76000213623047,
      0, 0.2604722714998236, 1.477211628636778, -39.5099983215332, 0, 0, 0, 1,
    ];
    a.forEach((x, i) => expect(x).toBeCloseTo(want[i], 13));
  });
});

describe('axcodes matches nibabel aff2axcodes', () => {
  // nibabel: PSR, RAS (tie broken towards the first world axis), RAI (sheared), ARS
  it.each([
    [[0, 0, 2, 0, -1, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 1], 'PSR'],
    [[0.7, 0.7, 0, 0, -0.7, 0.7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], 'RAS'],
    [[1, 0.9, 0, 0, 0, 1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1], 'RAI'],
    [[0.6, 0.8, 0, 0, 0.8, -0.6, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], 'ARS'],
  ])('%j -> %s', (aff, code) => expect(axcodes(aff)).toBe(code));
});
