// A zip on disk as a FileSource (Node): only its directory is read up front; each entry is read
// by range when asked for, so a multi-GiB nnU-Net export zip is never held whole.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import type { FileSource } from '../io/file-source.ts';
import { zipSource } from '../io/zip-source.ts';

export function zipFileSource(path: string): FileSource {
  let size: number;
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path}: not a regular file`);
    size = st.size;
  } finally {
    closeSync(fd);
  }
  const readAt = (offset: number, length: number): Uint8Array => {
    const out = new Uint8Array(length);
    const f = openSync(path, 'r');
    try {
      let at = 0;
      while (at < length) {
        const n = readSync(f, out, at, length - at, offset + at);
        if (n === 0) throw new Error(`${path}: file ended early (changed while read?)`);
        at += n;
      }
    } finally {
      closeSync(f);
    }
    return out;
  };
  return zipSource(basename(path), size, readAt);
}
