// Every malformed input, dropped as a user would drop it, fails the import with its own message
// and leaves the store (already holding a dataset) exactly as it was.
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import dicomParser from 'dicom-parser';
import { beforeAll, describe, expect, it } from 'vitest';
import { dump, freshStore, makeCase, meta } from './store-helpers.ts';
import { importDataset } from '../../src/store/datasets.ts';
import { planImport } from '../../src/store/from-files.ts';
import { memorySource } from '../../src/io/file-source.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import type { StoreDB } from '../../src/store/db.ts';
import { REFERENCE, FIXTURES } from '../paths.ts';

type Files = Record<string, Uint8Array>;
const read = (p: string) => new Uint8Array(readFileSync(p));
const anat = () => read(resolve(FIXTURES, 'nifti/anatomical.nii'));
const gz = () => read(resolve(FIXTURES, 'nifti/someones_anatomy.nii.gz'));
const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const withBytes = (f: (b: Uint8Array) => void, base = anat()) => (f(base), base);
const enc = (o: unknown) => new TextEncoder().encode(typeof o === 'string' ? o : JSON.stringify(o));

function phantom(): Files {
  const d = resolve(FIXTURES, 'dicom-ct-phantom');
  return Object.fromEntries(
    readdirSync(d)
      .sort()
      .map((n) => [n, read(resolve(d, n))]),
  );
}
function ds803(): Files {
  const root = resolve(REFERENCE, 'raw/Dataset803_PhantomMR2ch');
  const files: Files = { 'dataset.json': read(resolve(root, 'dataset.json')) };
  for (const d of ['imagesTr', 'labelsTr'])
    for (const n of readdirSync(resolve(root, d))) files[`${d}/${n}`] = read(resolve(root, d, n));
  return files;
}
const json803 = () => JSON.parse(new TextDecoder().decode(ds803()['dataset.json']));
function labelWith(value: number): Uint8Array {
  const v = readNifti(ds803()['labelsTr/mp_001.nii.gz']);
  const data = Uint8Array.from(v.data as Uint8Array);
  data[data.length >> 1] = value;
  return writeNifti({ ...v, data, datatype: 'uint8' });
}

const CASES: Array<[string, () => Files, RegExp]> = [
  // Loose NIfTI files
  [
    'truncated gzip',
    () => ({ 'a.nii.gz': gz().subarray(0, 5000) }),
    /a\.nii\.gz: truncated or corrupt gzip data/,
  ],
  [
    'gzip CRC mismatch',
    () => ({ 'a.nii.gz': withBytes((b) => (b[b.length - 8] ^= 0xff), gz()) }),
    /gzip check failed/,
  ],
  [
    'wrong magic',
    () => ({ 'a.nii': withBytes((b) => (b[346] = 0x33)) }),
    /wrong NIfTI-1 magic "n\+3"/,
  ],
  [
    'header too short',
    () => ({ 'a.nii': anat().subarray(0, 200) }),
    /header too short \(200 bytes/,
  ],
  [
    'dims do not match the byte count',
    () => ({ 'a.nii': anat().subarray(0, anat().length - 2) }),
    /need 67650 bytes of voxel data but the file has 67648/,
  ],
  [
    'vox_offset past the end',
    () => ({ 'a.nii': withBytes((b) => dv(b).setFloat32(108, 1e6, false)) }),
    /vox_offset 1000000 is past the end/,
  ],
  [
    'unsupported datatype',
    () => ({ 'a.nii': withBytes((b) => dv(b).setInt16(70, 128, false)) }),
    /unsupported NIfTI datatype 128/,
  ],
  [
    'zero dimension',
    () => ({ 'a.nii': withBytes((b) => dv(b).setInt16(44, 0, false)) }),
    /dimension 2 is 0/,
  ],
  [
    'NaN-filled float data',
    () => {
      const v = readNifti(anat());
      const data = Float32Array.from(v.data);
      data.fill(NaN, 0, 50);
      return { 'a.nii': writeNifti({ ...v, data, datatype: 'float32' }) };
    },
    /NaN/,
  ],
  [
    'a good file next to a corrupt one',
    () => ({ 'good.nii': anat(), 'bad.nii.gz': gz().subarray(0, 900) }),
    /1 case\(s\) have problems[\s\S]*\nbad: /,
  ],
  // DICOM folders
  [
    'DICOM without pixel data',
    () => {
      const files = phantom();
      const name = Object.keys(files)[3];
      const el = dicomParser.parseDicom(files[name]).elements.x7fe00010;
      files[name] = files[name].slice(0, el.dataOffset - 12); // cut the pixel data element off
      return files;
    },
    /pixel data|PixelData/i,
  ],
  [
    'DICOM series with a missing slice',
    () => {
      const files = phantom();
      // Remove a slice from the middle of the sorted series: positions are sorted by the reader.
      const names = Object.keys(files);
      const ipp = (n: string) =>
        Number(dicomParser.parseDicom(files[n]).string('x00200032')!.split('\\')[2]);
      const sorted = [...names].sort((a, b) => ipp(a) - ipp(b));
      delete files[sorted[10]];
      return files;
    },
    /missing slice/i,
  ],
  [
    'DICOM slices at the same position',
    () => {
      const files = phantom();
      const names = Object.keys(files);
      files['copy.dcm'] = files[names[4]];
      return files;
    },
    /same position|duplicate/i,
  ],
  [
    'DICOM series of mixed orientations',
    () => {
      const d = resolve(FIXTURES, 'dicom-mr-series');
      return Object.fromEntries(readdirSync(d).map((n) => [n, read(resolve(d, n))]));
    },
    /mixed orientations/,
  ],
  [
    'a folder with no scan at all',
    () => ({ 'notes.txt': enc('hello'), 'img.png': new Uint8Array([0x89, 0x50, 0x4e, 0x47]) }),
    /no dataset\.json, no NIfTI file and no readable DICOM series/,
  ],
  ['an empty folder', () => ({}), /empty/],
  // nnU-Net raw datasets
  [
    'dataset.json is not JSON',
    () => ({ ...ds803(), 'dataset.json': enc('{"labels": ') }),
    /not a valid nnU-Net dataset: .*dataset\.json/,
  ],
  [
    'dataset.json lacks file_ending',
    () => {
      const j = json803();
      delete j.file_ending;
      return { ...ds803(), 'dataset.json': enc(j) };
    },
    /file_ending/,
  ],
  [
    'labels are not consecutive',
    () => ({
      ...ds803(),
      'dataset.json': enc({ ...json803(), labels: { background: 0, gland: 1, lesion: 3 } }),
    }),
    /consecutive/,
  ],
  [
    'a channel file is missing',
    () => {
      const f = ds803();
      delete f['imagesTr/mp_001_0001.nii.gz'];
      return f;
    },
    /mp_001: missing channel file imagesTr\/mp_001_0001\.nii\.gz/,
  ],
  [
    'a label file is missing',
    () => {
      const f = ds803();
      delete f['labelsTr/mp_002.nii.gz'];
      return f;
    },
    /mp_002: .*missing label file labelsTr\/mp_002\.nii\.gz/,
  ],
  [
    'label and image shapes differ',
    () => ({ ...ds803(), 'labelsTr/mp_000.nii.gz': ds803()['labelsTr/mp_001.nii.gz'] }),
    /mp_000: .*shape mismatch/,
  ],
  [
    'undeclared label value',
    () => ({ ...ds803(), 'labelsTr/mp_001.nii.gz': labelWith(7) }),
    /mp_001: .*label value\(s\) 7 not declared/,
  ],
  [
    'numTraining does not match',
    () => ({ ...ds803(), 'dataset.json': enc({ ...json803(), numTraining: 9 }) }),
    /numTraining/,
  ],
];

describe('malformed drops leave the store unchanged', () => {
  let db: StoreDB;
  let before: unknown;
  beforeAll(async () => {
    db = (await freshStore()).db;
    async function* one() {
      yield makeCase(1);
    }
    await importDataset(db, meta('existing'), one());
    before = await dump(db);
  });

  it(`covers at least 20 kinds of bad input (${CASES.length})`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(20);
  });

  for (const [what, files, message] of CASES) {
    it(what, async () => {
      const run = async () => {
        const plan = await planImport(memorySource('drop', files()));
        await importDataset(db, plan.meta, plan.cases, { casesTotal: plan.casesTotal });
      };
      await expect(run()).rejects.toThrow(message);
      expect(await dump(db)).toEqual(before);
    });
  }
});
