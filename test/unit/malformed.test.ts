// Malformed inputs, made from the fixtures by byte surgery: each must fail with its own message.
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import dicomParser from 'dicom-parser';
import { describe, expect, it } from 'vitest';
import { readDicomFiles, readDicomVolume, type NamedBytes } from '../../src/io/dicom.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import { gunzip } from '../../src/io/gzip.ts';
import { memorySource } from '../../src/io/file-source.ts';
import { validateRawDataset } from '../../src/io/raw-dataset.ts';
import { REFERENCE, FIXTURES } from '../paths.ts';

const anatPath = resolve(FIXTURES, 'nifti/anatomical.nii'); // big-endian NIfTI-1, int16
const anat = () => new Uint8Array(readFileSync(anatPath));
const gzPath = resolve(FIXTURES, 'nifti/someones_anatomy.nii.gz');
const be = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

describe('malformed NIfTI', () => {
  it('truncated gzip', () => {
    const b = new Uint8Array(readFileSync(gzPath));
    expect(() => readNifti(b.subarray(0, b.length >> 1), 'x.nii.gz')).toThrow(
      'x.nii.gz: truncated or corrupt gzip data (unexpected EOF)',
    );
  });
  it('gzip CRC trailer does not match', () => {
    const b = new Uint8Array(readFileSync(gzPath));
    b[b.length - 8] ^= 0xff;
    expect(() => readNifti(b, 'x.nii.gz')).toThrow(
      'x.nii.gz: gzip check failed: the CRC-32/size trailer does not match the data',
    );
  });
  it('wrong magic', () => {
    const b = anat();
    b[346] = 0x33; // "n+3"
    expect(() => readNifti(b)).toThrow('wrong NIfTI-1 magic "n+3" (expected "n+1")');
  });
  it('header too short', () => {
    expect(() => readNifti(anat().subarray(0, 200))).toThrow(
      'header too short (200 bytes; NIfTI-1 needs 348)',
    );
  });
  it('not a NIfTI file (a DICOM file)', () => {
    const dcm = new Uint8Array(readFileSync(resolve(FIXTURES, 'dicom-misc/CT_small.dcm')));
    expect(() => readNifti(dcm)).toThrow(
      'not a NIfTI file: sizeof_hdr is 2771273 (expected 348 for NIfTI-1 or 540 for NIfTI-2)',
    );
  });
  it('dims do not match the byte count', () => {
    const b = anat();
    expect(() => readNifti(b.subarray(0, b.length - 2))).toThrow(
      'dims 33x41x25x1 of int16 need 67650 bytes of voxel data but the file has 67648 after vox_offset 352',
    );
  });
  it('vox_offset past the end', () => {
    const b = anat();
    be(b).setFloat32(108, 1e6, false);
    expect(() => readNifti(b)).toThrow(
      `vox_offset 1000000 is past the end of the file (${b.length} bytes)`,
    );
  });
  it('unsupported datatype', () => {
    const b = anat();
    be(b).setInt16(70, 128, false);
    expect(() => readNifti(b)).toThrow('unsupported NIfTI datatype 128 (RGB24)');
  });
  it('zero dimension', () => {
    const b = anat();
    be(b).setInt16(44, 0, false);
    expect(() => readNifti(b)).toThrow('dimension 2 is 0; every dimension must be >= 1');
  });
  it('negative dimension', () => {
    const b = anat();
    be(b).setInt16(46, -25, false);
    expect(() => readNifti(b)).toThrow('dimension 3 is -25; every dimension must be >= 1');
  });
  it('invalid dim[0]', () => {
    const b = anat();
    be(b).setInt16(40, 9, false);
    expect(() => readNifti(b)).toThrow('invalid dim[0] = 9 (number of dimensions must be 1..7)');
  });
  it('5-D with dim[5] > 1', () => {
    const b = anat();
    be(b).setInt16(40, 5, false);
    be(b).setInt16(50, 2, false);
    expect(() => readNifti(b)).toThrow('5-D NIfTI with dim[5] = 2 is not supported');
  });
  it('.hdr/.img pair magic', () => {
    const b = anat();
    b[345] = 0x69; // "ni1"
    expect(() => readNifti(b)).toThrow('a NIfTI-1 header/image pair (.hdr/.img) is not supported');
  });
  it('valid slope with infinite intercept', () => {
    const b = anat();
    be(b).setFloat32(112, 2, false);
    be(b).setFloat32(116, Infinity, false);
    expect(() => readNifti(b)).toThrow('valid scl_slope 2 but invalid scl_inter Infinity');
  });
  it('NaN-filled float data', () => {
    const v = readNifti(anat());
    const data = Float32Array.from(v.data);
    data.fill(NaN, 100, 110);
    const bytes = writeNifti({ ...v, data, datatype: 'float32' });
    expect(() => readNifti(bytes, 'nan.nii')).toThrow(
      'nan.nii: 10 voxel(s) are NaN or infinite (first at index 100); nnU-Net cannot use them',
    );
  });
  it('scaling that overflows float32 to infinity', () => {
    const v = readNifti(anat());
    const bytes = writeNifti({ ...v, data: Float32Array.from(v.data), datatype: 'float32' });
    new DataView(bytes.buffer).setFloat32(112, 3e38, true);
    expect(() => readNifti(bytes)).toThrow(/voxel\(s\) are NaN or infinite/);
  });
});

/** Replaces a string element's value (explicit VR, short length field), resizing the file. */
function setString(bytes: Uint8Array, tag: string, value: string): Uint8Array {
  const el = dicomParser.parseDicom(bytes).elements[tag];
  const pad = value.length % 2 ? (el.vr === 'UI' ? '\0' : ' ') : '';
  const v = new TextEncoder().encode(value + pad);
  const out = new Uint8Array(bytes.length - el.length + v.length);
  out.set(bytes.subarray(0, el.dataOffset));
  out.set(v, el.dataOffset);
  out.set(bytes.subarray(el.dataOffset + el.length), el.dataOffset + v.length);
  new DataView(out.buffer).setUint16(el.dataOffset - 2, v.length, true);
  return out;
}
const phantom = (): NamedBytes[] => {
  const d = resolve(FIXTURES, 'dicom-ct-phantom');
  return readdirSync(d)
    .sort()
    .map((name) => ({ name, bytes: new Uint8Array(readFileSync(resolve(d, name))) }));
};
const UID = 'DICOM series 1.2.826.0.1.3680043.8.498.12633348447994181093085561602449342214';
/** The phantom's files in slice order (read once with the reader under test is fine: its order is checked in dicom.test.ts). */
const order = () => readDicomVolume(phantom()).source!.files as string[];

describe('malformed DICOM', () => {
  it('no pixel data', () => {
    const files = phantom();
    const f = files[3];
    const el = dicomParser.parseDicom(f.bytes).elements.x7fe00010;
    new DataView(f.bytes.buffer, f.bytes.byteOffset).setUint16(el.dataOffset - 10, 0x0011, true); // (7FE0,0010) -> (7FE0,0011)
    expect(() => readDicomVolume(files)).toThrow(`${UID}: ${f.name} has no pixel data`);
  });
  it('compressed transfer syntax', () => {
    const files = phantom();
    files[0] = {
      name: files[0].name,
      bytes: setString(files[0].bytes, 'x00020010', '1.2.840.10008.1.2.4.50'),
    };
    expect(() => readDicomVolume(files)).toThrow(
      `${UID}: transfer syntax 1.2.840.10008.1.2.4.50 (JPEG Baseline) is compressed or unknown and cannot be decoded here (${files[0].name})`,
    );
  });
  it('uneven slice gaps', () => {
    const names = order();
    const files = phantom().map((f) => {
      if (f.name !== names[5]) return f;
      const ipp = dicomParser.parseDicom(f.bytes).string('x00200032')!.split('\\').map(Number);
      return {
        name: f.name,
        bytes: setString(f.bytes, 'x00200032', [ipp[0], ipp[1], ipp[2] + 1.5].join('\\')),
      };
    });
    expect(() => readDicomVolume(files)).toThrow(
      `${UID}: uneven slice spacing: gap 5.500 mm between ${names[4]} and ${names[5]}, median 4.000 mm (tolerance 0.040 mm)`,
    );
  });
  it('a missing slice', () => {
    const names = order();
    const files = phantom().filter((f) => f.name !== names[10]);
    expect(() => readDicomVolume(files)).toThrow(
      `${UID}: 1 missing slice(s) between ${names[9]} and ${names[11]}: gap 8.000 mm where the slice spacing is 4.000 mm`,
    );
  });
  it('two slices at the same position', () => {
    const files = phantom();
    files.push({ name: 'copy.dcm', bytes: files[0].bytes });
    expect(() => readDicomVolume(files)).toThrow(
      /are at the same position .* several acquisitions or echoes in one series are not supported/,
    );
  });
  it('mixed orientations', () => {
    const files = phantom();
    files[2] = {
      name: files[2].name,
      bytes: setString(files[2].bytes, 'x00200037', '1\\0\\0\\0\\0.8\\0.6'),
    };
    expect(() => readDicomVolume(files)).toThrow(
      `${UID}: mixed orientations: ImageOrientationPatient 1\\0\\0\\0\\1\\0 in ${files[0].name} but 1\\0\\0\\0\\0.8\\0.6 in ${files[2].name}`,
    );
  });
  it('inconsistent rows/columns', () => {
    const files = phantom();
    const el = dicomParser.parseDicom(files[1].bytes).elements.x00280010;
    new DataView(files[1].bytes.buffer, files[1].bytes.byteOffset).setUint16(
      el.dataOffset,
      93,
      true,
    );
    expect(() => readDicomVolume(files)).toThrow(
      `${UID}: inconsistent Rows/Columns: 94x99 in ${files[0].name} but 93x99 in ${files[1].name}`,
    );
  });
  it('no DICOM at all', () => {
    expect(() =>
      readDicomVolume([{ name: 'notes.txt', bytes: new TextEncoder().encode('hello') }]),
    ).toThrow(/^no DICOM image series found in 1 file\(s\): notes.txt: not a readable DICOM file/);
  });
  it('an unreadable file among a good series is skipped, not fatal', () => {
    const r = readDicomFiles([
      ...phantom(),
      { name: 'README', bytes: new TextEncoder().encode('x') },
    ]);
    expect(r.series[0].volume?.dims).toEqual([99, 94, 26]);
    expect(r.skipped.map((s) => s.name)).toEqual(['README']);
  });
});

/** Dataset803 (3 cases, 2 channels) in memory, to cut and patch. */
function ds803(): Record<string, Uint8Array> {
  const root = resolve(REFERENCE, 'raw/Dataset803_PhantomMR2ch');
  const files: Record<string, Uint8Array> = {
    'dataset.json': new Uint8Array(readFileSync(resolve(root, 'dataset.json'))),
  };
  for (const d of ['imagesTr', 'labelsTr'])
    for (const n of readdirSync(resolve(root, d)))
      files[`${d}/${n}`] = new Uint8Array(readFileSync(resolve(root, d, n)));
  return files;
}
const json803 = () =>
  JSON.parse(
    readFileSync(resolve(REFERENCE, 'raw/Dataset803_PhantomMR2ch/dataset.json'), 'utf8'),
  ) as Record<string, unknown>;
const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
const validate = (files: Record<string, Uint8Array>) =>
  validateRawDataset(memorySource('D803', files));
const problemsOf = async (files: Record<string, Uint8Array>) => {
  const r = await validate(files);
  return {
    dataset: r.problems,
    cases: Object.fromEntries(r.cases.map((c) => [c.id, c.problems])),
    ok: r.ok,
  };
};

describe('malformed raw dataset folders', () => {
  it('empty folder', async () => {
    expect((await problemsOf({})).dataset).toEqual(['D803 is empty']);
  });
  it('no dataset.json', async () => {
    const f = ds803();
    delete f['dataset.json'];
    expect((await problemsOf(f)).dataset).toEqual(['D803 has no dataset.json']);
  });
  it('dataset.json is not JSON', async () => {
    const f = ds803();
    f['dataset.json'] = new TextEncoder().encode('{"labels": {');
    expect((await problemsOf(f)).dataset[0]).toMatch(/^dataset.json is not valid JSON: /);
  });
  it('missing required keys', async () => {
    const j = json803();
    delete j.numTraining;
    delete j.file_ending;
    expect((await problemsOf({ ...ds803(), 'dataset.json': enc(j) })).dataset).toEqual([
      'dataset.json lacks required key(s): numTraining, file_ending',
    ]);
  });
  it('numTraining does not match', async () => {
    const r = await problemsOf({
      ...ds803(),
      'dataset.json': enc({ ...json803(), numTraining: 4 }),
    });
    expect(r.dataset).toEqual(['numTraining is 4 but 3 training case(s) were found']);
    expect(r.ok).toBe(false);
  });
  it('labels not consecutive', async () => {
    const r = await problemsOf({
      ...ds803(),
      'dataset.json': enc({ ...json803(), labels: { background: 0, gland: 1, lesion: 3 } }),
    });
    expect(r.dataset).toEqual([
      'labels must be consecutive (0, 1, 2, ...); 3 do(es) not follow the previous value',
    ]);
  });
  it('missing channel file and missing label, every case reported', async () => {
    const f = ds803();
    delete f['imagesTr/mp_000_0001.nii.gz'];
    delete f['labelsTr/mp_002.nii.gz'];
    const r = await problemsOf(f);
    expect(r.dataset).toEqual([]);
    expect(r.cases).toEqual({
      mp_000: ['missing channel file imagesTr/mp_000_0001.nii.gz (channel 1: "ADC")'],
      mp_001: [],
      mp_002: ['missing label file labelsTr/mp_002.nii.gz'],
    });
  });
  it('label/image shape mismatch', async () => {
    const f = ds803();
    f['labelsTr/mp_001.nii.gz'] = f['labelsTr/mp_000.nii.gz'];
    expect((await problemsOf(f)).cases.mp_001).toEqual([
      'shape mismatch: labelsTr/mp_001.nii.gz is 59x55x60 but imagesTr/mp_001_0000.nii.gz is 60x58x52',
    ]);
  });
  it('channel spacing mismatch', async () => {
    const f = ds803();
    const b = gunzip(f['imagesTr/mp_002_0001.nii.gz']);
    new DataView(b.buffer, b.byteOffset).setFloat32(88, 1.6, true); // pixdim[3]
    f['imagesTr/mp_002_0001.nii.gz'] = b;
    expect((await problemsOf(f)).cases.mp_002).toEqual([
      `spacing mismatch: imagesTr/mp_002_0001.nii.gz has 1.5, 1.5, ${Math.fround(1.6)} but imagesTr/mp_002_0000.nii.gz has 1.5, 1.5, 1.5`,
    ]);
  });
  it('undeclared label values', async () => {
    const r = await problemsOf({
      ...ds803(),
      'dataset.json': enc({ ...json803(), labels: { background: 0, gland: 1 } }),
    });
    for (const id of ['mp_000', 'mp_001', 'mp_002'])
      expect(r.cases[id]).toEqual([
        `labelsTr/${id}.nii.gz: label value(s) 2 not declared in dataset.json labels (declared: 0, 1)`,
      ]);
  });
  it('a corrupt image is one problem of its case', async () => {
    const f = ds803();
    f['imagesTr/mp_001_0000.nii.gz'] = f['imagesTr/mp_001_0000.nii.gz'].subarray(0, 1000);
    expect((await problemsOf(f)).cases.mp_001).toEqual([
      'imagesTr/mp_001_0000.nii.gz: truncated or corrupt gzip data (unexpected EOF)',
    ]);
  });
  it('image file without a channel suffix', async () => {
    const f = ds803();
    f['imagesTr/extra.nii.gz'] = f['imagesTr/mp_000_0000.nii.gz'];
    expect((await problemsOf(f)).dataset).toEqual([
      'imagesTr/extra.nii.gz: name does not end in _XXXX.nii.gz (4-digit channel index)',
    ]);
  });
});
