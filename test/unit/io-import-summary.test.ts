// The plain import summary (issue 19, item 7): one sentence that says what was read and what was
// skipped and why, readers' messages only in the details. Through planImport on real files.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { memorySource } from '../../src/io/file-source.ts';
import { readScan } from '../../src/io/formats.ts';
import { ImportInputError, planImport } from '../../src/store/from-files.ts';
import { classifySkippedFile, splitDetails, summariseImport } from '../../src/io/import-summary.ts';
import { FIXTURES } from '../paths.ts';

const DICOM = join(FIXTURES, 'dicom-ct-phantom');
const text = (s: string) => new TextEncoder().encode(s);

async function drain(cases: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of cases) void _;
}

describe('import summary', () => {
  it('a DICOM folder with a photo and a note: one sentence, parser messages only in the details', async () => {
    const files: Record<string, Uint8Array> = {};
    for (const f of readdirSync(DICOM))
      files[`scan/${f}`] = new Uint8Array(readFileSync(join(DICOM, f)));
    const n = Object.keys(files).length;
    files['scan/holiday.png'] = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    files['scan/notes.txt'] = text('remember the milk');
    const plan = await planImport(memorySource('scan', files));
    await drain(plan.cases);
    const s = summariseImport(plan.report());
    expect(s.headline).toBe(
      `${n + 2} files: ${n} read as a DICOM series, 2 skipped: not medical images (holiday.png, notes.txt)`,
    );
    expect(s.headline).not.toMatch(/dicomParser|DICM|location/);
    // The reader's own words are kept for whoever opens the details.
    expect(s.details.join('\n')).toMatch(
      /holiday\.png: not medical images \(not a readable DICOM file \(dicomParser/,
    );
  });

  it('loose scans with a broken one and a README beside them', async () => {
    const nii = new Uint8Array(readFileSync(join(FIXTURES, 'nifti', 'anatomical.nii')));
    const plan = await planImport(
      memorySource('x', {
        'a.nii': nii,
        'b.nii.gz': nii.slice(0, 100),
        'README.md': text('hi'),
        '.DS_Store': text('x'),
      }),
      { allowProblems: true },
    );
    await drain(plan.cases);
    expect(summariseImport(plan.report()).headline).toBe(
      '4 files: 1 read as one scan, 3 skipped: 1 damaged or unreadable (b.nii.gz); 1 system files (.DS_Store); 1 not medical images (README.md)',
    );
  });

  it('nothing readable: the error starts with one plain line, the details follow', async () => {
    const err = await planImport(
      memorySource('junk', { 'holiday.png': text('png'), 'notes.txt': text('hello') }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImportInputError);
    const { headline, details } = splitDetails((err as Error).message);
    expect(headline).toBe(
      'junk: nothing to import: no dataset.json, no NIfTI file and no readable DICOM series (nor an NRRD or MetaImage file). 2 files: none could be read, 2 skipped: not medical images (holiday.png, notes.txt).',
    );
    expect(details).toHaveLength(2);
    expect(details[0]).toMatch(/^holiday\.png: not medical images \(not a readable DICOM file/);
  });

  it("the Predict tab's scan reader refuses non-images in the same plain words", async () => {
    const err = await readScan(
      memorySource('x', { 'notes.txt': text('hello'), 'holiday.png': text('png') }),
    ).catch((e: unknown) => e as Error);
    const { headline, details } = splitDetails((err as Error).message);
    expect(headline).toMatch(
      /nor a readable DICOM series: 2 files: none could be read, 2 skipped: not medical images \(holiday\.png, notes\.txt\)$/,
    );
    expect(headline).not.toMatch(/dicomParser/);
    expect(details.join('\n')).toMatch(/dicomParser/);
  });

  it('classifies by what the reader found, then by extension; long lists are cut', () => {
    expect(classifySkippedFile('DICOMDIR', 'no SeriesInstanceUID', true)).toBe('no-image');
    expect(classifySkippedFile('a/Thumbs.db')).toBe('system-file');
    expect(classifySkippedFile('IM0001', 'not a readable DICOM file (DICM prefix not found)')).toBe(
      'not-medical',
    );
    expect(classifySkippedFile('x.dcm', 'not a readable DICOM file (DICM prefix not found)')).toBe(
      'damaged',
    );
    const s = summariseImport({
      kind: 'dicom-series',
      files: 7,
      filesRead: 2,
      cases: 2,
      skippedFiles: ['a.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt'].map((path) => ({
        path,
        reason: 'not-medical' as const,
      })),
    });
    expect(s.headline).toBe(
      '7 files: 2 read as 2 DICOM series, 5 skipped: not medical images (a.txt, b.txt, c.txt and 2 more)',
    );
  });
});
