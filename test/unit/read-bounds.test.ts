// Readers bound their memory and stay inside their folder (issue 15, "Readers"). The amount of
// data inflated is counted by wrapping fflate (every sync and streaming inflater), so the bounds are
// asserted in bytes, not by timing or RSS. Each case fails on a reader that inflates whole files,
// follows any file type, ignores limits or accepts paths/geometry it should refuse.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { deflateSync, gzipSync } from 'fflate';
import { readDicomFiles, readDicomVolume } from '../../src/io/dicom.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import { validateRawDataset } from '../../src/io/raw-dataset.ts';
import type { FileSource } from '../../src/io/file-source.ts';
import { fsSource } from '../../src/node/fs-source.ts';

const inflated = vi.hoisted(() => ({ bytes: 0 }));
vi.mock('fflate', async (importOriginal) => {
  const f = await importOriginal<typeof import('fflate')>();
  type Fn = (...a: never[]) => Uint8Array;
  const sync = <T extends Fn>(fn: T) =>
    ((...a: Parameters<T>) => {
      const out = fn(...a);
      inflated.bytes += out.length;
      return out;
    }) as T;
  type Sink = (d: Uint8Array, final: boolean) => void;
  // fflate's constructors assign `this.ondata`; the accessor sees that and every later assignment.
  // (A plain property, not #private: the base constructor assigns before subclass fields exist.)
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const stream = <C extends new (...a: any[]) => object>(C: C) =>
    class extends C {
      declare sink?: Sink;
      get ondata(): Sink | undefined {
        return this.sink;
      }
      set ondata(fn: Sink | undefined) {
        this.sink =
          fn &&
          ((d, final) => {
            inflated.bytes += d.length;
            fn(d, final);
          });
      }
    };
  return {
    ...f,
    gunzipSync: sync(f.gunzipSync),
    inflateSync: sync(f.inflateSync),
    unzlibSync: sync(f.unzlibSync),
    decompressSync: sync(f.decompressSync),
    Gunzip: stream(f.Gunzip),
    Inflate: stream(f.Inflate),
    Unzlib: stream(f.Unzlib),
    Decompress: stream(f.Decompress),
  };
});

const MiB = 1024 * 1024;
beforeEach(() => {
  inflated.bytes = 0;
});

/** A NIfTI-1 file of `dims` uint8 voxels (all 7) with bytes patched by `edit`. */
function nifti(dims: [number, number, number], edit?: (dv: DataView) => void): Uint8Array {
  const n = dims[0] * dims[1] * dims[2];
  const b = writeNifti({
    data: new Uint8Array(n).fill(7),
    dims,
    channels: 1,
    spacing: [1, 1, 1],
    affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
    datatype: 'uint8',
  });
  if (edit) edit(new DataView(b.buffer, b.byteOffset, b.byteLength));
  return b;
}
const withTrailing = (b: Uint8Array, extra: number) => {
  const out = new Uint8Array(b.length + extra);
  out.set(b);
  return out;
};

describe('gzip is inflated header first, then at most the declared size', () => {
  it('a small .nii.gz whose header claims 4096³ int16 is refused before its data are inflated', () => {
    const header = nifti([1, 1, 1], (dv) => {
      for (let k = 1; k <= 3; k++) dv.setInt16(40 + 2 * k, 4096, true);
      dv.setInt16(70, 4, true); // int16
      dv.setInt16(72, 16, true);
    });
    const gz = gzipSync(withTrailing(header, 8 * MiB)); // ~8 KB on disk; a 1 MB file would inflate to 1 GB
    expect(gz.length).toBeLessThan(64 * 1024);
    inflated.bytes = 0;
    expect(() => readNifti(gz, 'bomb.nii.gz')).toThrow(
      /bomb\.nii\.gz: the header declares 131072 MiB of data, more than the 2048 MiB read limit/,
    );
    expect(inflated.bytes).toBeLessThanOrEqual(2 * MiB);
  });

  it('data beyond what the header declares are not inflated (past one bounded step)', () => {
    const gz = gzipSync(withTrailing(nifti([16, 16, 16]), 64 * MiB));
    inflated.bytes = 0;
    const v = readNifti(gz, 'padded.nii.gz');
    expect(v.dims).toEqual([16, 16, 16]);
    expect(v.data.every((x) => x === 7)).toBe(true);
    // One 16 KiB step of input inflates at most ~16.5 MB; the 64 MiB tail is never all inflated.
    expect(inflated.bytes).toBeLessThanOrEqual(17 * MiB);
  });

  it('the read limit is configurable: a 128³ volume is refused under a 100 kB limit, read under the default', () => {
    const gz = gzipSync(nifti([128, 128, 128]));
    inflated.bytes = 0;
    expect(() => readNifti(gz, 'big.nii.gz', 100_000)).toThrow(
      /big\.nii\.gz: the header declares 2 MiB of data, more than the 0\.095 MiB read limit/,
    );
    expect(inflated.bytes).toBeLessThan(200_000);
    expect(readNifti(gz, 'big.nii.gz').dims).toEqual([128, 128, 128]);
  });
});

/** A minimal Deflated Explicit VR Little Endian DICOM file whose dataset holds `pixels` zero bytes. */
function deflatedDicom(pixels: number): Uint8Array {
  const enc = (s: string, padByte: number) => {
    const b = new TextEncoder().encode(s);
    if (b.length % 2 === 0) return b;
    const out = new Uint8Array(b.length + 1);
    out.set(b);
    out[b.length] = padByte;
    return out;
  };
  const el = (g: number, e: number, vr: string, value: Uint8Array) => {
    const long = ['OB', 'OW', 'UN', 'SQ', 'UT'].includes(vr);
    const h = new Uint8Array(long ? 12 : 8);
    const dv = new DataView(h.buffer);
    dv.setUint16(0, g, true);
    dv.setUint16(2, e, true);
    h[4] = vr.charCodeAt(0);
    h[5] = vr.charCodeAt(1);
    if (long) dv.setUint32(8, value.length, true);
    else dv.setUint16(6, value.length, true);
    const out = new Uint8Array(h.length + value.length);
    out.set(h);
    out.set(value, h.length);
    return out;
  };
  const cat = (...p: Uint8Array[]) => {
    const out = new Uint8Array(p.reduce((n, x) => n + x.length, 0));
    let o = 0;
    for (const x of p) {
      out.set(x, o);
      o += x.length;
    }
    return out;
  };
  const meta = cat(
    el(2, 1, 'OB', new Uint8Array([0, 1])),
    el(2, 0x10, 'UI', enc('1.2.840.10008.1.2.1.99', 0)),
  );
  const groupLength = new Uint8Array(4);
  new DataView(groupLength.buffer).setUint32(0, meta.length, true);
  const body = cat(
    el(8, 0x60, 'CS', enc('CT', 32)),
    el(0x20, 0x0e, 'UI', enc('1.2.3.4', 0)),
    el(0x7fe0, 0x10, 'OB', new Uint8Array(pixels)),
  );
  return cat(
    new Uint8Array(128),
    new TextEncoder().encode('DICM'),
    el(2, 0, 'UL', groupLength),
    meta,
    deflateSync(body),
  );
}

describe('deflated DICOM inflates at most the per-file limit', () => {
  it('a few-kB deflated file that expands to 8 MiB is refused at a 1 MiB limit after inflating no more than that', () => {
    const f = { name: 'bomb.dcm', bytes: deflatedDicom(8 * MiB) };
    expect(f.bytes.length).toBeLessThan(64 * 1024);
    // The file itself is valid: under the default limit it parses into a series.
    const ok = readDicomFiles([f]);
    expect(ok.skipped).toEqual([]);
    expect(ok.series.map((s) => s.seriesInstanceUID)).toEqual(['1.2.3.4']);
    inflated.bytes = 0;
    const { series, skipped } = readDicomFiles([f], { maxFileBytes: MiB });
    expect(series).toEqual([]);
    expect(skipped[0].reason).toMatch(
      /bomb\.dcm: decompresses to more than the 1\.000 MiB read limit|bomb\.dcm: decompresses to more than the 1 MiB read limit/,
    );
    expect(inflated.bytes).toBeLessThanOrEqual(2 * MiB);
  });
});

describe('local folders: regular files only, with a size cap, never outside the folder', () => {
  const root = mkdtempSync(join(tmpdir(), 'fednnunet-read-bounds-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'ds', 'imagesTr'), { recursive: true });
  writeFileSync(join(root, 'outside.txt'), 'secret');
  writeFileSync(join(root, 'ds', 'big.bin'), new Uint8Array(10_000));

  it('a file over the cap is refused (checked on the opened file, before reading it)', async () => {
    await expect(fsSource(join(root, 'ds'), 4096).read('big.bin')).rejects.toThrow(
      /ds: cannot read big\.bin: .* more than the .* read limit/,
    );
    expect((await fsSource(join(root, 'ds')).read('big.bin')).length).toBe(10_000);
  });

  it('a symlink to /dev/zero is refused as not a regular file', async () => {
    symlinkSync('/dev/zero', join(root, 'ds', 'imagesTr', 'zero_0000.nii'));
    await expect(fsSource(join(root, 'ds')).read('imagesTr/zero_0000.nii')).rejects.toThrow(
      /not a regular file \(a device, FIFO or socket\)/,
    );
    rmSync(join(root, 'ds', 'imagesTr', 'zero_0000.nii'));
  });

  it('a path climbing out of the folder is refused', async () => {
    await expect(fsSource(join(root, 'ds')).read('../outside.txt')).rejects.toThrow(
      /refusing \.\.\/outside\.txt: outside the folder/,
    );
  });

  it("dataset.json paths stay inside the dataset folder: '../../../../etc/passwd' is a problem and never read", async () => {
    writeFileSync(
      join(root, 'ds', 'dataset.json'),
      JSON.stringify({
        channel_names: { 0: 'CT' },
        labels: { background: 0, organ: 1 },
        numTraining: 1,
        file_ending: '.nii.gz',
        dataset: { evil: { images: ['../../../../etc/passwd'], label: '../outside.txt' } },
      }),
    );
    const inner = fsSource(join(root, 'ds'));
    const reads: string[] = [];
    const src: FileSource = {
      name: inner.name,
      list: inner.list,
      read: (p) => (reads.push(p), inner.read(p)),
    };
    const report = await validateRawDataset(src);
    expect(report.problems.join(' | ')).toMatch(
      /case "evil": path "..\/..\/..\/..\/etc\/passwd" is not a relative path inside the dataset folder/,
    );
    expect(report.problems.join(' | ')).toMatch(
      /path "..\/outside.txt" is not a relative path inside/,
    );
    expect(reads).toEqual(['dataset.json']);
  });
});

describe('geometry no computation can use is refused', () => {
  it('NIfTI: zero spacing, NaN vox_offset, NaN srow', () => {
    expect(() =>
      readNifti(
        nifti([4, 4, 4], (dv) => dv.setFloat32(76 + 8, 0, true)),
        'z.nii',
      ),
    ).toThrow(/z\.nii: invalid voxel spacing 1 x 0 x 1/);
    expect(() =>
      readNifti(
        nifti([4, 4, 4], (dv) => dv.setFloat32(76 + 4, NaN, true)),
        'n.nii',
      ),
    ).toThrow(/n\.nii: invalid voxel spacing NaN x 1 x 1/);
    expect(() =>
      readNifti(
        nifti([4, 4, 4], (dv) => dv.setFloat32(108, NaN, true)),
        'o.nii',
      ),
    ).toThrow(/o\.nii: invalid vox_offset NaN/);
    expect(() =>
      readNifti(
        nifti([4, 4, 4], (dv) => (dv.setInt16(254, 1, true), dv.setFloat32(280, NaN, true))),
        's.nii',
      ),
    ).toThrow(/s\.nii: sform \(srow_x\/y\/z\) has NaN or infinite entries/);
    expect(() =>
      readNifti(
        nifti(
          [4, 4, 4],
          (dv) => (
            dv.setInt16(254, 1, true),
            [280, 284, 288].forEach((o) => dv.setFloat32(o, 0, true))
          ),
        ),
        'd.nii',
      ),
    ).toThrow(/d\.nii: degenerate orientation/);
  });

  const ct = () =>
    new Uint8Array(
      readFileSync(resolve(import.meta.dirname, '../fixtures/dicom-misc/CT_small.dcm')),
    );
  const replace = (b: Uint8Array, from: string, to: string) => {
    expect(to.length).toBe(from.length);
    const s = Buffer.from(b).toString('latin1');
    const i = s.indexOf(from);
    expect(i).toBeGreaterThan(0);
    b.set(new TextEncoder().encode(to), i);
    return b;
  };

  it('DICOM: PixelSpacing 0 or negative (which flipped LPS to RAS) and an all-zero ImageOrientationPatient', () => {
    expect(readDicomVolume([{ name: 'ok.dcm', bytes: ct() }]).spacing[0]).toBeCloseTo(0.661468);
    expect(() =>
      readDicomVolume([
        { name: 'zero.dcm', bytes: replace(ct(), '0.661468\\0.661468', '0.000000\\0.661468') },
      ]),
    ).toThrow(/zero\.dcm has PixelSpacing 0\\0\.661468; both values must be > 0/);
    expect(() =>
      readDicomVolume([
        { name: 'neg.dcm', bytes: replace(ct(), '0.661468\\0.661468', '-0.66146\\0.661468') },
      ]),
    ).toThrow(/neg\.dcm has PixelSpacing -0\.66146\\0\.661468/);
    const iop = '1.000000\\0.000000\\0.000000\\0.000000\\1.000000\\0.000000';
    expect(() =>
      readDicomVolume([{ name: 'iop.dcm', bytes: replace(ct(), iop, iop.replace(/1/g, '0')) }]),
    ).toThrow(/iop\.dcm has a degenerate ImageOrientationPatient/);
  });
});
