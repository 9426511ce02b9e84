// DICOM series reader against the NIfTI the CT phantom was written from, and pydicom 2.3's numbers
// for the single-slice fixtures (values in comments come from /usr/bin/python3 + pydicom).
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readDicomFiles, readDicomVolume, type NamedBytes } from '../../src/io/dicom.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { REFERENCE, FIXTURES } from '../paths.ts';

function dir(path: string): NamedBytes[] {
  return readdirSync(path)
    .sort()
    .map((name) => ({ name, bytes: new Uint8Array(readFileSync(resolve(path, name))) }));
}

describe('DICOM CT phantom (26 shuffled files) equals its source NIfTI', () => {
  const files = dir(resolve(FIXTURES, 'dicom-ct-phantom'));
  const nii = readNifti(
    new Uint8Array(
      readFileSync(resolve(REFERENCE, 'raw/Dataset802_PhantomCTaniso/imagesTr/ct_000_0000.nii.gz')),
    ),
  );

  it('voxel for voxel, same affine, spacing from positions', () => {
    const v = readDicomVolume(files);
    expect(v.dims).toEqual(nii.dims); // (99, 94, 26)
    expect(v.datatype).toBe('float32'); // uint16 with RescaleIntercept -2048
    expect(v.storedDatatype).toBe('uint16');
    let maxDiff = 0;
    for (let i = 0; i < nii.data.length; i++)
      maxDiff = Math.max(maxDiff, Math.abs(v.data[i] - nii.data[i]));
    expect(maxDiff).toBe(0);
    v.affine.forEach((x, i) => expect(Math.fround(x)).toBe(Math.fround(nii.affine[i])));
    expect(v.spacing.map(Math.fround)).toEqual([0.8, 0.8, 4].map(Math.fround));
    expect(v.orientation).toBe('LPS');
  });

  it('the order does not depend on the file order given', () => {
    const a = readDicomVolume(files);
    const b = readDicomVolume(files.slice().reverse());
    expect(b.source!.files).toEqual(a.source!.files);
    // Names were shuffled when written: the slice order is not the name order.
    expect(a.source!.files).not.toEqual((a.source!.files as string[]).slice().sort());
    expect((a.source!.files as string[])[0]).toBe('IM0012.dcm');
  });
});

describe('dicom-misc single slices (pydicom numbers)', () => {
  it('CT_small.dcm: 128x128 int16, RescaleIntercept -1024', () => {
    const v = readDicomVolume(
      dir(resolve(FIXTURES, 'dicom-misc')).filter((f) => f.name === 'CT_small.dcm'),
    );
    // pydicom: pixel_array int16 min 128 max 2191 sum 14826310, [row 10, col 20] = 185; PixelSpacing 0.661468,
    // SpacingBetweenSlices 5, IPP (-158.135803, -179.035797, -75.699997), IOP identity
    expect(v.dims).toEqual([128, 128, 1]);
    expect(v.datatype).toBe('float32');
    expect(v.spacing).toEqual([0.661468, 0.661468, 5]);
    expect(v.affine).toEqual([
      -0.661468, 0, 0, 158.135803, 0, -0.661468, 0, 179.035797, 0, 0, 5, -75.699997, 0, 0, 0, 1,
    ]);
    let min = Infinity,
      max = -Infinity,
      sum = 0;
    for (const x of v.data) {
      min = Math.min(min, x);
      max = Math.max(max, x);
      sum += x;
    }
    expect([min, max, sum]).toEqual([128 - 1024, 2191 - 1024, 14826310 - 1024 * 128 * 128]);
    expect(v.data[20 + 128 * 10]).toBe(185 - 1024);
  });
  it('MR_small.dcm: 64x64 int16, no rescale, thickness 0.8', () => {
    const v = readDicomVolume(
      dir(resolve(FIXTURES, 'dicom-misc')).filter((f) => f.name === 'MR_small.dcm'),
    );
    // pydicom: int16 min 127 max 2145 sum 2125338, [10, 20] = 316, [3, 7] = 378; PixelSpacing 0.3125, SliceThickness 0.8
    expect(v.dims).toEqual([64, 64, 1]);
    expect(v.datatype).toBe('int16');
    expect(v.spacing).toEqual([0.3125, 0.3125, 0.8]);
    expect(v.affine).toEqual([
      -0.3125, 0, 0, 83.9063, 0, -0.3125, 0, 91.2, 0, 0, 0.8, 6.6406, 0, 0, 0, 1,
    ]);
    let sum = 0;
    for (const x of v.data) sum += x;
    expect(sum).toBe(2125338);
    expect(v.data[20 + 64 * 10]).toBe(316);
    expect(v.data[7 + 64 * 3]).toBe(378);
  });
  it('a folder with two single-slice series gives two series', () => {
    const r = readDicomFiles(dir(resolve(FIXTURES, 'dicom-misc')));
    expect(r.series.map((s) => s.seriesInstanceUID).sort()).toEqual([
      '1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322',
      '1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457',
    ]);
    expect(() => readDicomVolume(dir(resolve(FIXTURES, 'dicom-misc')))).toThrow(
      'expected one DICOM series, found 2',
    );
  });
});

describe('dicom-mr-series: 7 radial projections, one orientation each', () => {
  const files = dir(resolve(FIXTURES, 'dicom-mr-series'));
  it('is refused as a volume: mixed orientations, naming the series and files', () => {
    const r = readDicomFiles(files);
    expect(r.series).toHaveLength(1);
    expect(r.series[0].error).toBe(
      'DICOM series 1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.118 (ANGIO Projected from   C): mixed orientations: ImageOrientationPatient 0.653996\\0.756504\\0.00377102\\-0.00133901\\0.00614239\\-1 in 4467 but 0.959171\\0.282838\\0.000452936\\-0.00133901\\0.00614239\\-1 in 4528',
    );
  });
  // pydicom per file: min, max, sum, pixel [3, 7]
  it.each([
    ['4467', 48, 80, 15714, 61],
    ['4528', 47, 333, 20777, 59],
    ['4558', 55, 339, 38927, 103],
    ['4588', 49, 104, 16180, 65],
    ['4618', 19, 81, 15206, 62],
    ['4648', 0, 87, 7223, 56],
    ['4678', 0, 90, 7642, 60],
  ])('%s alone reads as pydicom: min %i max %i sum %i', (name, min, max, sum, px) => {
    const v = readDicomVolume(files.filter((f) => f.name === name));
    expect(v.dims).toEqual([16, 16, 1]);
    expect(v.spacing).toEqual([0.390625, 0.390625, 1.2]);
    let lo = Infinity,
      hi = -Infinity,
      s = 0;
    for (const x of v.data) {
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
      s += x;
    }
    expect([lo, hi, s]).toEqual([min, max, sum]);
    expect(v.data[7 + 16 * 3]).toBe(px);
  });
});
