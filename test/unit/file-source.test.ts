// The browser-side FileSources (folder picker File list, directory handle) list and read like fs.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  directoryHandleSource,
  fileListSource,
  type DirectoryHandleLike,
} from '../../src/io/file-source.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { openRawDataset } from '../../src/io/raw-dataset.ts';
import { REFERENCE } from '../paths.ts';

const ROOT = resolve(REFERENCE, 'raw/Dataset803_PhantomMR2ch');

async function asFiles(): Promise<File[]> {
  const paths = await fsSource(ROOT).list();
  return paths.map((p) => {
    const f = new File([readFileSync(resolve(ROOT, p))], p.split('/').pop()!);
    Object.defineProperty(f, 'webkitRelativePath', { value: `Dataset803_PhantomMR2ch/${p}` });
    return f;
  });
}

function asHandle(name: string, files: File[], prefix = ''): DirectoryHandleLike {
  const here = files.filter((f) =>
    f.webkitRelativePath.startsWith(`Dataset803_PhantomMR2ch/${prefix}`),
  );
  return {
    name,
    kind: 'directory',
    async *entries() {
      const dirs = new Set<string>();
      for (const f of here) {
        const rest = f.webkitRelativePath
          .slice(`Dataset803_PhantomMR2ch/${prefix}`.length)
          .split('/');
        if (rest.length > 1) dirs.add(rest[0]);
        else yield [rest[0], { kind: 'file' as const, name: rest[0], getFile: async () => f }];
      }
      for (const d of dirs) yield [d, asHandle(d, files, `${prefix}${d}/`)];
    },
  };
}

describe('browser FileSources', () => {
  it('fileListSource and directoryHandleSource list the same paths and bytes as fsSource', async () => {
    const files = await asFiles();
    const fs = fsSource(ROOT);
    const paths = await fs.list();
    expect(paths).toHaveLength(10); // dataset.json + 6 images + 3 labels
    for (const src of [
      fileListSource(files),
      directoryHandleSource(asHandle('Dataset803_PhantomMR2ch', files)),
    ]) {
      expect(src.name).toBe('Dataset803_PhantomMR2ch');
      expect(await src.list()).toEqual(paths);
      expect(await src.read('labelsTr/mp_001.nii.gz')).toEqual(
        await fs.read('labelsTr/mp_001.nii.gz'),
      );
      await expect(src.read('nope')).rejects.toThrow('Dataset803_PhantomMR2ch: no file nope');
      expect((await openRawDataset(src)).cases.map((c) => c.id)).toEqual([
        'mp_000',
        'mp_001',
        'mp_002',
      ]);
    }
  });
});
