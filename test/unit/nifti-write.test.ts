// NIfTI writer: read -> write -> read keeps shape, affine, datatype and values bit-exactly; and,
// where Debian's python3 has nibabel, nibabel reads the written file with the same geometry.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readNifti } from '../../src/io/nifti.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import { isGzip } from '../../src/io/gzip.ts';
import type { DataTypeName, Volume } from '../../src/io/volume.ts';
import { REFERENCE, FIXTURES } from '../paths.ts';

const RAW = resolve(REFERENCE, 'raw');
const load = (p: string) => readNifti(new Uint8Array(readFileSync(p)), p);
const sources = {
  anatomical: resolve(FIXTURES, 'nifti/anatomical.nii'),
  oblique803: resolve(RAW, 'Dataset803_PhantomMR2ch/imagesTr/mp_000_0000.nii.gz'),
  flipped804: resolve(RAW, 'Dataset804_PhantomMRsiteB/imagesTr/mrB_000_0000.nii.gz'),
  nifti2: resolve(import.meta.dirname, '../fixtures/nifti/nifti2_4d_f64.nii.gz'),
};

/** Bit-exact equality of two typed arrays of the same type (fast for large arrays). */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return (
    a.constructor === b.constructor &&
    Buffer.compare(
      new Uint8Array(a.buffer, a.byteOffset, a.byteLength),
      new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
    ) === 0
  );
}

/** A label/probability map on the source grid, with values that exercise the type's range. */
function mapLike(src: Volume, datatype: DataTypeName): Volume {
  const n = src.dims[0] * src.dims[1] * src.dims[2];
  const data =
    datatype === 'uint8'
      ? Uint8Array.from({ length: n }, (_, i) => i % 4)
      : datatype === 'uint16'
        ? Uint16Array.from({ length: n }, (_, i) => (i * 37) % 65536)
        : datatype === 'int16'
          ? Int16Array.from({ length: n }, (_, i) => ((i * 37) % 65536) - 32768)
          : Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i) / 3));
  return { ...src, data, channels: 1, datatype };
}

describe('writeNifti round trip', () => {
  for (const [name, path] of Object.entries(sources)) {
    for (const datatype of ['uint8', 'uint16', 'int16', 'float32'] as DataTypeName[]) {
      for (const gzip of [false, true]) {
        it(`${name} ${datatype}${gzip ? ' gz' : ''}`, () => {
          const src = load(path);
          const map = mapLike(src, datatype);
          const bytes = writeNifti(map, { gzip });
          expect(isGzip(bytes)).toBe(gzip);
          const back = readNifti(bytes);
          expect(back.dims).toEqual(src.dims);
          expect(back.channels).toBe(1);
          expect(back.datatype).toBe(datatype);
          expect(back.storedDatatype).toBe(datatype);
          expect(back.header.version).toBe(1);
          expect(back.orientation).toBe(src.orientation);
          expect(back.spacing.map(Math.fround)).toEqual(src.spacing.map(Math.fround));
          if (src.header.version === 1) expect(back.affine).toEqual(src.affine);
          // NIfTI-2 stores float64; NIfTI-1 keeps float32 precision.
          else back.affine.forEach((x, i) => expect(x).toBe(Math.fround(src.affine[i])));
          expect(sameBytes(back.data, map.data)).toBe(true);
        });
      }
    }
  }

  it('an image itself (int16, multi-channel) round-trips', () => {
    const src = load(sources.nifti2);
    const back = readNifti(writeNifti(src));
    expect(back.channels).toBe(2);
    expect(sameBytes(back.data, src.data)).toBe(true);
  });

  it('a changed affine is written to sform and qform', () => {
    const src = load(sources.anatomical);
    const aff = [0, 0, 3, 1, -2, 0, 0, 2, 0, 2.5, 0, 3, 0, 0, 0, 1];
    const back = readNifti(writeNifti({ ...src, affine: aff, spacing: [2, 2.5, 3] }));
    expect(back.affine).toEqual(aff);
    expect(back.orientation).toBe('PSR');
    // qform alone must give the same geometry
    const h = back.header;
    const b = writeNifti({ ...src, affine: aff, spacing: [2, 2.5, 3] });
    new DataView(b.buffer).setInt16(254, 0, true);
    expect(readNifti(b).affine).toEqual(aff);
    expect(h.sformCode).toBe(2); // kept from the source header
  });

  it('refuses values the target integer type cannot hold', () => {
    const src = load(sources.anatomical);
    expect(() =>
      writeNifti(
        { ...src, datatype: 'float32', data: new Float32Array(src.data.length).fill(0.5) },
        { datatype: 'uint8' },
      ),
    ).toThrow('cannot write value 0.5 (voxel 0) as uint8');
    expect(() => writeNifti(src, { datatype: 'uint8' })).toThrow(
      /cannot write value -?\d+ \(voxel \d+\) as uint8/,
    );
  });
});

// Optional: nibabel reads what we wrote (skipped where Debian's python3 lacks nibabel).
const hasNibabel =
  spawnSync('/usr/bin/python3', ['-c', 'import nibabel'], { encoding: 'utf8' }).status === 0;
describe.skipIf(!hasNibabel)('nibabel reads written files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nifti-write-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it('shape, dtype, affine and values as written', () => {
    const cases: [string, Volume, DataTypeName][] = [];
    for (const [name, path] of Object.entries(sources)) {
      const src = load(path);
      for (const dt of ['uint8', 'float32'] as DataTypeName[])
        cases.push([`${name}_${dt}.nii.gz`, mapLike(src, dt), dt]);
    }
    for (const [file, v] of cases) writeFileSync(join(dir, file), writeNifti(v, { gzip: true }));
    const py = `
import sys, json, nibabel as nib, numpy as np
out = {}
for f in sys.argv[2:]:
    im = nib.load(sys.argv[1] + '/' + f)
    d = np.asarray(im.dataobj)
    out[f] = {'shape': list(im.shape), 'dtype': str(im.get_data_dtype()), 'affine': im.affine.ravel().tolist(),
              'codes': ''.join(nib.aff2axcodes(im.affine)), 'sum': float(d.astype(np.float64).sum()), 'first': float(d.ravel(order='F')[7])}
print(json.dumps(out))`;
    const r = spawnSync('/usr/bin/python3', ['-c', py, dir, ...cases.map((c) => c[0])], {
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    const got = JSON.parse(r.stdout) as Record<
      string,
      {
        shape: number[];
        dtype: string;
        affine: number[];
        codes: string;
        sum: number;
        first: number;
      }
    >;
    for (const [file, v, dt] of cases) {
      const g = got[file];
      expect(g.shape).toEqual(v.dims);
      expect(g.dtype).toBe(dt);
      expect(g.affine).toEqual(v.affine.map((x) => Math.fround(x)));
      expect(g.codes).toBe(readNifti(readFileSync(join(dir, file))).orientation);
      let sum = 0;
      for (const x of v.data) sum += x;
      expect(g.sum).toBeCloseTo(sum, 6);
      expect(g.first).toBe(v.data[7]);
    }
  });
});
