// FileSource over a local folder (Node only).
import { readdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { FileSource } from '../io/file-source.ts';

export function fsSource(root: string): FileSource {
  const abs = resolve(root);
  const walk = async (rel: string, out: string[]) => {
    for (const e of await readdir(join(abs, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(p, out);
      else if (e.isFile() || e.isSymbolicLink()) out.push(p);
    }
  };
  return {
    name: basename(abs),
    list: async () => {
      const out: string[] = [];
      await walk('', out);
      return out.sort();
    },
    read: async (path) => {
      try {
        return new Uint8Array(await readFile(join(abs, path)));
      } catch (e) {
        throw new Error(`${basename(abs)}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
    },
  };
}
