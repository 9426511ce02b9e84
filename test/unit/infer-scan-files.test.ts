// A scan dropped on the Predict tab as files (src/infer/scan-files.ts): NIfTI channels in name
// order, hidden files ignored, a clear error for anything else.
import { describe, expect, it } from 'vitest';
import { readScanFiles } from '../../src/infer/scan-files.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import type { Volume } from '../../src/io/volume.ts';

const vol = (fill: number): Volume => ({
  data: new Float32Array(8).fill(fill),
  dims: [2, 2, 2],
  channels: 1,
  spacing: [1, 1, 1],
  affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
  datatype: 'float32',
});

describe('scan files', () => {
  it('reads NIfTI channels in name order and names the scan without _0000', async () => {
    const r = await readScanFiles([
      {
        path: 'case_7_0001.nii.gz',
        file: new Blob([writeNifti(vol(2), { gzip: true }) as Uint8Array<ArrayBuffer>]),
      },
      { path: '.hidden.nii', file: new Blob([new Uint8Array(3)]) },
      { path: 'case_7_0000.nii', file: new Blob([writeNifti(vol(1)) as Uint8Array<ArrayBuffer>]) },
    ]);
    expect(r.name).toBe('case_7');
    expect(r.images.map((v) => v.data[0])).toEqual([1, 2]);
  });

  it('refuses no files, and files that are neither NIfTI nor DICOM', async () => {
    await expect(readScanFiles([{ path: '.DS_Store', file: new Blob(['x']) }])).rejects.toThrow(
      /no file was given/,
    );
    await expect(readScanFiles([{ path: 'notes.txt', file: new Blob(['hello']) }])).rejects.toThrow(
      /neither NIfTI, NRRD or MetaImage volumes .* nor a readable DICOM series/,
    );
  });
});
