// A zip on disk as a FileSource (Node): only its directory is read up front; each entry is read
// by range when asked for, so a multi-GiB nnU-Net export zip is never held whole.
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { FileSource } from '../io/file-source.ts';
import type { ReadAt } from '../io/zip-archive.ts';
import { zipSource } from '../io/zip-source.ts';

export async function zipFileSource(path: string): Promise<FileSource> {
  const { size, readAt } = await fileReadAt(path);
  return zipSource(basename(path), size, readAt);
}

/** A regular file's size and a reader of byte ranges of it (each read opens and closes it). */
export async function fileReadAt(path: string): Promise<{ size: number; readAt: ReadAt }> {
  const st = await stat(path);
  if (!st.isFile()) throw new Error(`${path}: not a regular file`);
  const readAt: ReadAt = async (offset, length) => {
    const out = new Uint8Array(length);
    const f = await open(path, 'r');
    try {
      let at = 0;
      while (at < length) {
        const { bytesRead } = await f.read(out, at, length - at, offset + at);
        if (bytesRead === 0) throw new Error(`${path}: file ended early (changed while read?)`);
        at += bytesRead;
      }
    } finally {
      await f.close();
    }
    return out;
  };
  return { size: st.size, readAt };
}
