// Writes a file given as parts (zip/torch writers return parts so that a large checkpoint is never
// copied into one buffer).
import { closeSync, openSync, writeSync } from 'node:fs';

export function writeParts(path: string, parts: readonly Uint8Array[]): number {
  const fd = openSync(path, 'w');
  let n = 0;
  try {
    for (const p of parts) {
      let at = 0;
      while (at < p.byteLength) at += writeSync(fd, p, at, p.byteLength - at);
      n += p.byteLength;
    }
  } finally {
    closeSync(fd);
  }
  return n;
}
