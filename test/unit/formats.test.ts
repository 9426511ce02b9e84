// NRRD and MetaImage through io/formats.ts: geometry equals what ITK/Slicer (and so nnU-Net's
// SimpleITK reader) give, checked against NIfTI files of the same voxels and hand-written RAS
// affines; detached headers, gzip/zlib, byte order, channels; the raw-dataset reader and the browser
// import path (fake IndexedDB) take them like NIfTI.
import { describe, expect, it } from 'vitest';
import { gzipSync, zlibSync } from 'fflate';
import { memorySource } from '../../src/io/file-source.ts';
import {
  FILE_ACCEPT,
  isVolumePath,
  readScan,
  readVolumeBytes,
  readVolumeFile,
  sniffVolume,
  volumeBaseName,
} from '../../src/io/formats.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import { openRawDataset, validateRawDataset, loadCase } from '../../src/io/raw-dataset.ts';
import type { ReadVolume } from '../../src/io/formats.ts';
import { importDataset, listCases, loadCaseVolumes } from '../../src/store/datasets.ts';
import { planImport } from '../../src/store/from-files.ts';
import { freshStore } from './store-helpers.ts';

const enc = (s: string) => new TextEncoder().encode(s);
const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const bytesOf = (a: ArrayBufferView) =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
const bigEndian = (a: Int16Array | Float32Array | Float64Array) => {
  const b = bytesOf(a),
    n = a.BYTES_PER_ELEMENT;
  for (let i = 0; i < b.length; i += n) b.subarray(i, i + n).reverse();
  return b;
};

const DIMS: [number, number, number] = [4, 3, 2];
const N = 24;
const int16 = Int16Array.from({ length: N }, (_, i) => i * 37 - 300);
const float32 = Float32Array.from({ length: N }, (_, i) => i / 7 - 1.5);

function nrrd(fields: Record<string, string>, data?: Uint8Array): Uint8Array {
  const head = `NRRD0004\n# written by a test\n${Object.entries(fields)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n')}\n`;
  return data ? cat(enc(head + '\n'), data) : enc(head);
}
function mha(fields: Record<string, string>, data?: Uint8Array): Uint8Array {
  const head = `ObjectType = Image\nNDims = 3\n${Object.entries(fields)
    .map(([k, v]) => `${k} = ${v}`)
    .join('\n')}\n`;
  return data ? cat(enc(head), data) : enc(head);
}
const base = { type: 'short', dimension: '3', sizes: '4 3 2', endian: 'little', encoding: 'raw' };

/** The same voxels and RAS affine, written as NIfTI and read back through the same entry point. */
async function viaNifti(
  data: Int16Array | Float32Array,
  affine: number[],
  spacing: [number, number, number],
): Promise<ReadVolume> {
  const datatype = data instanceof Int16Array ? 'int16' : 'float32';
  return readVolumeBytes(
    writeNifti({ data, dims: DIMS, channels: 1, spacing, affine, datatype }),
    'same.nii',
  );
}

describe('NRRD geometry (ITK/Slicer convention: LPS space -> RAS affine)', () => {
  it("space 'left-posterior-superior' with directions diag(1,1,1) is the RAS affine diag(-1,-1,1)", async () => {
    const v = await readVolumeBytes(
      nrrd(
        {
          ...base,
          space: 'left-posterior-superior',
          'space directions': '(1,0,0) (0,1,0) (0,0,1)',
          'space origin': '(0,0,0)',
        },
        bytesOf(int16),
      ),
      'a.nrrd',
    );
    expect(v.affine).toEqual([-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    expect(v.orientation).toBe('LPS');
    expect(v.dims).toEqual(DIMS);
    expect(Array.from(v.data)).toEqual(Array.from(int16));
  });

  it('an oblique LPS image equals the NIfTI of the same voxels (affine, spacing, data)', async () => {
    // Axis 0 steps 0.5 mm along +P(osterior)... in LPS: (0,0.5,0); axis 1: (-0.6,0,0); axis 2: (0,0,2); origin (10,20,30) LPS.
    const v = await readVolumeBytes(
      nrrd(
        {
          ...base,
          space: 'left-posterior-superior',
          'space directions': '(0,0.5,0) (-0.6,0,0) (0,0,2)',
          'space origin': '(10,20,30)',
        },
        bytesOf(int16),
      ),
      'b.nrrd',
    );
    // By hand: RAS = diag(-1,-1,1) * LPS.
    const want = [0, 0.6, 0, -10, -0.5, 0, 0, -20, 0, 0, 2, 30, 0, 0, 0, 1];
    expect(v.affine).toEqual(want);
    expect(v.spacing).toEqual([0.5, 0.6, 2]);
    const n = await viaNifti(int16, want, [0.5, 0.6, 2]);
    expect(v.affine.map(Math.fround)).toEqual(n.affine);
    expect(v.spacing.map(Math.fround)).toEqual(n.spacing);
    expect(v.orientation).toBe(n.orientation);
    expect(Array.from(v.data)).toEqual(Array.from(n.data));
  });

  it('RAS space keeps the signs; no space field reads as ITK does (spacings along LPS axes)', async () => {
    const ras = await readVolumeBytes(
      nrrd(
        {
          ...base,
          space: 'RAS',
          'space directions': '(2,0,0) (0,3,0) (0,0,4)',
          'space origin': '(1,2,3)',
        },
        bytesOf(int16),
      ),
      'c.nrrd',
    );
    expect(ras.affine).toEqual([2, 0, 0, 1, 0, 3, 0, 2, 0, 0, 4, 3, 0, 0, 0, 1]);
    const plain = await readVolumeBytes(
      nrrd({ ...base, spacings: '2 3 nan' }, bytesOf(int16)),
      'd.nrrd',
    );
    expect(plain.affine).toEqual([-2, 0, 0, 0, 0, -3, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
  });

  it('gzip encoding, big-endian float, attached and detached (.nhdr + data file)', async () => {
    const f = {
      ...base,
      type: 'float',
      endian: 'big',
      encoding: 'gzip',
      space: 'LPS',
      'space directions': '(1,0,0) (0,1,0) (0,0,1)',
    };
    const attached = await readVolumeBytes(nrrd(f, gzipSync(bigEndian(float32))), 'e.nrrd');
    expect(Array.from(attached.data)).toEqual(Array.from(float32));
    expect(attached.datatype).toBe('float32');
    const src = memorySource('d', {
      'scans/e.nhdr': nrrd({ ...f, 'data file': 'raw/e.raw.gz' }),
      'scans/raw/e.raw.gz': gzipSync(bigEndian(float32)),
    });
    const detached = await readVolumeFile(src, 'scans/e.nhdr');
    expect(Array.from(detached.data)).toEqual(Array.from(float32));
    expect(detached.affine).toEqual(attached.affine);
    // byte skip -1 (raw): the data are the last bytes of the data file.
    const skip = memorySource('d', {
      'e.nhdr': nrrd({ ...base, 'byte skip': '-1', 'data file': 'e.raw' }),
      'e.raw': cat(enc('junk header'), bytesOf(int16)),
    });
    expect(Array.from((await readVolumeFile(skip, 'e.nhdr')).data)).toEqual(Array.from(int16));
  });

  it('a channel axis (direction none) first is de-interleaved to one block per channel', async () => {
    const inter = Int16Array.from({ length: 2 * N }, (_, i) => (i % 2 ? -1 : 1) * (i >> 1));
    const v = await readVolumeBytes(
      nrrd(
        {
          ...base,
          dimension: '4',
          sizes: '2 4 3 2',
          space: 'LPS',
          'space directions': 'none (1,0,0) (0,1,0) (0,0,1)',
          kinds: 'vector domain domain domain',
        },
        bytesOf(inter),
      ),
      'f.nrrd',
    );
    expect(v.channels).toBe(2);
    expect(v.dims).toEqual(DIMS);
    expect(Array.from(v.data.subarray(0, 3))).toEqual([0, 1, 2]);
    expect(Array.from(v.data.subarray(N, N + 3))).toEqual([0, -1, -2]);
  });

  it('bad geometry and bad headers are refused with a clear error', async () => {
    const bad = (f: Record<string, string>, data = bytesOf(int16)) =>
      readVolumeBytes(nrrd({ ...base, space: 'LPS', ...f }, data), 'bad.nrrd');
    await expect(bad({ 'space directions': '(0,0,0) (0,1,0) (0,0,1)' })).rejects.toThrow(
      /bad\.nrrd: invalid voxel spacing 0 x 1 x 1/,
    );
    await expect(bad({ 'space directions': '(NaN,0,0) (0,1,0) (0,0,1)' })).rejects.toThrow(
      /invalid voxel spacing/,
    );
    await expect(bad({ 'space directions': '(1,0,0) (2,0,0) (0,0,1)' })).rejects.toThrow(
      /degenerate orientation/,
    );
    await expect(
      bad({ 'space directions': '(1,0,0) (0,1,0) (0,0,1)', 'space origin': '(nan,0,0)' }),
    ).rejects.toThrow(/NaN or infinite/);
    await expect(bad({ type: 'int64' })).rejects.toThrow(/unsupported NRRD type "int64"/);
    await expect(bad({ encoding: 'bzip2' })).rejects.toThrow(/encoding "bzip2" is not supported/);
    await expect(bad({}, bytesOf(int16).subarray(0, 10))).rejects.toThrow(
      /need 48 bytes of NRRD data but the file has 10/,
    );
    await expect(
      readVolumeBytes(nrrd({ ...base, 'data file': 'x.raw' }), 'lone.nhdr'),
    ).rejects.toThrow(/detached NRRD header/);
    const escape = memorySource('d', {
      'a/e.nhdr': nrrd({ ...base, 'data file': '../../etc/passwd' }),
    });
    await expect(readVolumeFile(escape, 'a/e.nhdr')).rejects.toThrow(
      /refusing data file "..\/..\/etc\/passwd" outside the folder/,
    );
  });
});

describe('MetaImage geometry (ITK: the world is LPS; TransformMatrix lists each axis direction)', () => {
  it('identity TransformMatrix with Offset (1,2,3) is the RAS affine diag(-s) with (-1,-2,3)', async () => {
    const v = await readVolumeBytes(
      mha(
        {
          DimSize: '4 3 2',
          ElementType: 'MET_SHORT',
          ElementSpacing: '0.5 0.6 2',
          Offset: '1 2 3',
          TransformMatrix: '1 0 0 0 1 0 0 0 1',
          AnatomicalOrientation: 'RAI',
          ElementDataFile: 'LOCAL',
        },
        bytesOf(int16),
      ),
      'a.mha',
    );
    expect(v.affine).toEqual([-0.5, 0, 0, -1, 0, -0.6, 0, -2, 0, 0, 2, 3, 0, 0, 0, 1]);
    expect(Array.from(v.data)).toEqual(Array.from(int16));
  });

  it('an oblique .mha equals the NIfTI of the same voxels; MSB byte order', async () => {
    // Axis 0 along LPS (0,1,0), axis 1 along (-1,0,0), axis 2 along (0,0,1) — as the NRRD test above.
    const v = await readVolumeBytes(
      mha(
        {
          DimSize: '4 3 2',
          ElementType: 'MET_FLOAT',
          ElementByteOrderMSB: 'True',
          ElementSpacing: '0.5 0.6 2',
          Offset: '10 20 30',
          TransformMatrix: '0 1 0 -1 0 0 0 0 1',
          ElementDataFile: 'LOCAL',
        },
        bigEndian(float32),
      ),
      'b.mha',
    );
    const want = [0, 0.6, 0, -10, -0.5, 0, 0, -20, 0, 0, 2, 30, 0, 0, 0, 1];
    expect(v.affine).toEqual(want);
    const n = await viaNifti(float32, want, [0.5, 0.6, 2]);
    expect(v.affine.map(Math.fround)).toEqual(n.affine);
    expect(v.orientation).toBe(n.orientation);
    expect(Array.from(v.data)).toEqual(Array.from(n.data));
  });

  it('.mhd + .zraw (CompressedData) and interleaved channels', async () => {
    const inter = Int16Array.from({ length: 2 * N }, (_, i) => (i % 2 ? 1000 : 0) + (i >> 1));
    const src = memorySource('m', {
      'x.mhd': mha({
        DimSize: '4 3 2',
        ElementType: 'MET_SHORT',
        ElementNumberOfChannels: '2',
        CompressedData: 'True',
        CompressedDataSize: '0',
        ElementDataFile: 'x.zraw',
      }),
      'x.zraw': zlibSync(bytesOf(inter)),
    });
    const v = await readVolumeFile(src, 'x.mhd');
    expect(v.channels).toBe(2);
    expect(Array.from(v.data.subarray(0, 2))).toEqual([0, 1]);
    expect(Array.from(v.data.subarray(N, N + 2))).toEqual([1000, 1001]);
  });

  it('bad geometry and headers are refused', async () => {
    const bad = (f: Record<string, string>) =>
      readVolumeBytes(
        mha(
          { DimSize: '4 3 2', ElementType: 'MET_SHORT', ...f, ElementDataFile: 'LOCAL' },
          bytesOf(int16),
        ),
        'bad.mha',
      );
    await expect(bad({ ElementSpacing: '1 0 1' })).rejects.toThrow(
      /invalid voxel spacing 1 x 0 x 1/,
    );
    await expect(bad({ ElementSpacing: '1 -1 1' })).rejects.toThrow(/invalid voxel spacing/);
    await expect(bad({ ElementSpacing: '1 nan 1' })).rejects.toThrow(
      /ElementSpacing "1 nan 1" must be 3 finite numbers/,
    );
    await expect(bad({ TransformMatrix: '0 0 0 0 1 0 0 0 1' })).rejects.toThrow(
      /degenerate orientation/,
    );
    await expect(bad({ ElementType: 'MET_LONG_LONG' })).rejects.toThrow(
      /unsupported MetaImage ElementType/,
    );
    await expect(bad({ DimSize: '4 3 20' })).rejects.toThrow(
      /needs 480 bytes of MetaImage data but there are 48/,
    );
  });
});

describe('one registry for every reader', () => {
  it('sniffs by content, names by extension, lists what pickers accept', async () => {
    expect(sniffVolume(nrrd(base))?.name).toBe('NRRD');
    expect(sniffVolume(mha({ ElementDataFile: 'LOCAL' }))?.name).toBe('MetaImage');
    expect(
      sniffVolume(
        writeNifti(
          {
            data: int16,
            dims: DIMS,
            channels: 1,
            spacing: [1, 1, 1],
            affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
            datatype: 'int16',
          },
          { gzip: true },
        ),
      )?.name,
    ).toBe('NIfTI');
    // A misnamed file is read by its content.
    expect((await readVolumeBytes(nrrd(base, bytesOf(int16)), 'scan.mha')).source?.format).toBe(
      'nrrd',
    );
    for (const p of ['a.nii.gz', 'a.NII', 'b.nrrd', 'b.nhdr', 'c.mha', 'c.mhd'])
      expect(isVolumePath(p)).toBe(true);
    for (const p of ['c.raw', 'c.zraw', 'notes.txt', 'IM0001.dcm'])
      expect(isVolumePath(p)).toBe(false);
    expect(volumeBaseName('x/case_0000.nii.gz')).toBe('case_0000');
    for (const e of ['.nii', '.gz', '.nrrd', '.nhdr', '.mha', '.mhd', '.raw', '.zraw', '.dcm'])
      expect(FILE_ACCEPT.split(',')).toContain(e);
    const scan = await readScan(
      memorySource('s', {
        'x.mhd': mha({ DimSize: '4 3 2', ElementType: 'MET_SHORT', ElementDataFile: 'x.raw' }),
        'x.raw': bytesOf(int16),
        '.DS_Store': enc('x'),
      }),
    );
    expect(scan.name).toBe('x');
    expect(scan.images.length).toBe(1);
  });
});

function rawDataset(
  ending: string,
  write: (d: Int16Array) => Record<string, Uint8Array>,
): Record<string, Uint8Array> {
  const label = Int16Array.from({ length: N }, (_, i) => (i % 3 === 0 ? 1 : 0));
  const files: Record<string, Uint8Array> = {
    'dataset.json': enc(
      JSON.stringify({
        channel_names: { 0: 'CT' },
        labels: { background: 0, organ: 1 },
        numTraining: 1,
        file_ending: ending,
      }),
    ),
  };
  for (const [k, v] of Object.entries(write(int16))) files[`imagesTr/c1_0000${k}`] = v;
  for (const [k, v] of Object.entries(write(label))) files[`labelsTr/c1${k}`] = v;
  return files;
}
const geom = {
  space: 'left-posterior-superior',
  'space directions': '(0.8,0,0) (0,0.8,0) (0,0,3)',
  'space origin': '(5,6,7)',
};
const asNrrd = (d: Int16Array) => ({ '.nrrd': nrrd({ ...base, ...geom }, bytesOf(d)) });
const asMha = (d: Int16Array) => ({
  '.mha': mha(
    {
      DimSize: '4 3 2',
      ElementType: 'MET_SHORT',
      ElementSpacing: '0.8 0.8 3',
      Offset: '5 6 7',
      ElementDataFile: 'LOCAL',
    },
    bytesOf(d),
  ),
});

describe('raw datasets and the browser import take NRRD and MetaImage (dataset.json file_ending)', () => {
  it('an nnU-Net raw dataset with file_ending .nrrd validates and loads like NIfTI', async () => {
    const src = memorySource('Dataset900_Nrrd', rawDataset('.nrrd', asNrrd));
    const report = await validateRawDataset(src);
    expect(report.problems).toEqual([]);
    expect(report.cases[0].problems).toEqual([]);
    expect(report.cases[0].labelValues).toEqual([0, 1]);
    const c = await loadCase(src, (await openRawDataset(src)).cases[0]);
    expect(c.images[0].affine).toEqual([-0.8, 0, 0, -5, 0, -0.8, 0, -6, 0, 0, 3, 7, 0, 0, 0, 1]);
    expect(Array.from(c.images[0].data)).toEqual(Array.from(int16));
  });

  it('file_ending .mha validates; .mhd (which nnU-Net does not take in a raw dataset) is a dataset problem', async () => {
    const report = await validateRawDataset(
      memorySource('Dataset901_Mha', rawDataset('.mha', asMha)),
    );
    expect(report.problems).toEqual([]);
    expect(report.cases.map((c) => [c.id, c.problems])).toEqual([['c1', []]]);
    expect(report.cases[0].spacing).toEqual([0.8, 0.8, 3]);
    const mhd = await openRawDataset(memorySource('D', rawDataset('.mhd', asMha)));
    expect(mhd.problems.join(' ')).toMatch(
      /file_ending "\.mhd": nnU-Net's readers do not take it in a raw dataset; use one of \.nii\.gz, \.nii, \.nrrd, \.mha/,
    );
  });

  it('a file_ending no reader knows is a dataset problem', async () => {
    const files = rawDataset('.png', () => ({ '.png': enc('x') }));
    expect((await openRawDataset(memorySource('D', files))).problems.join(' ')).toMatch(
      /file_ending "\.png": not a format this app reads/,
    );
  });

  it('browser import (planImport -> IndexedDB): an NRRD raw dataset and loose .mha/.nhdr files are stored bit-exactly', async () => {
    const { db } = await freshStore();
    const plan = await planImport(
      memorySource(
        'drop',
        Object.fromEntries(
          Object.entries(rawDataset('.nrrd', asNrrd)).map(([k, v]) => [`Dataset900_Nrrd/${k}`, v]),
        ),
      ),
    );
    expect(plan.kind).toBe('raw-dataset');
    const r = await importDataset(db, plan.meta, plan.cases, { casesTotal: plan.casesTotal });
    expect(r.dataset.numCases).toBe(1);
    const stored = (await loadCaseVolumes(db, r.dataset.id, 'c1'))!;
    expect(Array.from(stored.images[0].data)).toEqual(Array.from(int16));
    expect(stored.images[0].affine).toEqual([
      -0.8, 0, 0, -5, 0, -0.8, 0, -6, 0, 0, 3, 7, 0, 0, 0, 1,
    ]);
    expect(stored.label).toBeDefined();

    const loose = await planImport(
      memorySource('scans', {
        'a.mha': mha(
          { DimSize: '4 3 2', ElementType: 'MET_SHORT', ElementDataFile: 'LOCAL' },
          bytesOf(int16),
        ),
        'b.nhdr': nrrd({ ...base, ...geom, 'data file': 'b.raw' }),
        'b.raw': bytesOf(int16),
        'c.mhd': mha({
          DimSize: '4 3 2',
          ElementType: 'MET_SHORT',
          ElementDataFile: 'c.zraw',
          CompressedData: 'True',
        }),
        'c.zraw': zlibSync(bytesOf(int16)),
      }),
    );
    expect(loose.kind).toBe('nifti-files');
    const r2 = await importDataset(db, loose.meta, loose.cases);
    expect((await listCases(db, r2.dataset.id)).map((c) => c.caseId)).toEqual(['a', 'b', 'c']);
    const b = (await loadCaseVolumes(db, r2.dataset.id, 'b'))!;
    expect(Array.from(b.images[0].data)).toEqual(Array.from(int16));
    expect(b.images[0].spacing).toEqual([0.8, 0.8, 3]);
  });
});
