// Model packages as dropped on the Predict tab (src/infer/model-package.ts): a folder at any depth
// or one zip; only model-folder files kept; a clear error without model.json.
import { describe, expect, it } from 'vitest';
import { zipSync } from 'fflate';
import { filesOfPackage, safeName } from '../../src/infer/model-package.ts';

const blob = (s: string) => new Blob([s]);
const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);

describe('model package files', () => {
  it('finds the shallowest folder holding model.json, keeps only model-folder files', async () => {
    const r = await filesOfPackage([
      { path: 'out/run1/model.json', file: blob('{"m":1}') },
      { path: 'out/run1/weights.bin', file: blob('W') },
      { path: 'out/run1/notes.txt', file: blob('x') },
      { path: 'out/run1/.DS_Store', file: blob('x') },
      { path: 'out/run1/old/model.json', file: blob('{"m":2}') },
    ]);
    expect(r.folder).toBe('run1');
    expect(Object.keys(r.files).sort()).toEqual(['model.json', 'weights.bin']);
    expect(text(r.files['model.json'])).toBe('{"m":1}');
  });

  it('reads a single zip (folder inside, or files at its root)', async () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    const nested = zipSync({
      'M/model.json': enc('{}'),
      'M/plans.json': enc('{"p":1}'),
      'M/': new Uint8Array(),
    });
    const a = await filesOfPackage([
      { path: 'pkg.zip', file: new Blob([nested as Uint8Array<ArrayBuffer>]) },
    ]);
    expect(a.folder).toBe('M');
    expect(text(a.files['plans.json'])).toBe('{"p":1}');
    const flat = zipSync({ 'model.json': enc('{}') });
    const b = await filesOfPackage([
      { path: 'dl/My model.zip', file: new Blob([flat as Uint8Array<ArrayBuffer>]) },
    ]);
    expect(b.folder).toBe('My model');
    expect(Object.keys(b.files)).toEqual(['model.json']);
  });

  it('says what to choose when there is no model.json', async () => {
    await expect(filesOfPackage([{ path: 'x/a.nii.gz', file: blob('') }])).rejects.toThrow(
      /no model.json among the 1 file\(s\).*fednnunet train/,
    );
  });

  it('makes file names safe', () => {
    expect(safeName('Liver · federation (3 rounds)')).toBe('Liver_federation_3_rounds');
    expect(safeName('///')).toBe('model');
  });
});
