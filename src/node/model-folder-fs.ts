// Model folders on disk (Node): the fs side of src/model/model-folder.ts.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { memorySource, type FileSource } from '../io/file-source.ts';
import { fileReadAt } from './zip-file-source.ts';
import {
  decodeModelFolder,
  encodeModelFolder,
  unpackModelFolder,
  type DecodedModelFolder,
  type ModelFolder,
} from '../model/model-folder.ts';

/** Reads and checks the model folder at `dir` (its top-level files only), or a .zip of one. */
export async function readModelFolder(dir: string): Promise<DecodedModelFolder> {
  if (dir.toLowerCase().endsWith('.zip')) {
    let zip;
    try {
      zip = await fileReadAt(dir);
    } catch (e) {
      throw new Error(`cannot read ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    const bytes = async () => new Uint8Array(await readFile(dir));
    const { files } = await unpackModelFolder([{ path: basename(dir), bytes, zip }]);
    return decodeModelFolder(memorySource(dir, files));
  }
  const root = resolve(dir);
  const src: FileSource = {
    name: dir,
    list: async () => {
      try {
        return (await readdir(root)).sort();
      } catch (e) {
        throw new Error(
          `${dir}: cannot read model folder: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        );
      }
    },
    read: async (p) => new Uint8Array(await readFile(join(root, p))),
  };
  return decodeModelFolder(src);
}

/** Writes a model folder: creates it if needed, overwrites the model files, leaves others. */
export async function writeModelFolder(dir: string, m: ModelFolder<object>): Promise<void> {
  const files = encodeModelFolder(m);
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(dir, name), bytes);
}
