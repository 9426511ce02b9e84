// FileSource over a local folder (Node only). Reads regular files only (a symlink to /dev/zero or
// a FIFO in a dataset folder is refused, not read forever), at most `maxBytes` each, and never
// outside the folder.
import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { basename, join, resolve, sep } from 'node:path';
import type { FileSource } from '../io/file-source.ts';
import { mib, readLimits, ReadLimitError } from '../io/read-limits.ts';

/**
 * The bytes of a regular file (symlinks followed), refusing devices, FIFOs, sockets and folders,
 * and files over `maxBytes` (checked on the opened file, so it cannot be swapped in between).
 */
export async function readRegularFile(
  path: string,
  maxBytes = readLimits().maxVolumeBytes,
  label = path,
): Promise<Uint8Array> {
  let fh;
  try {
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; it changes nothing for files.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new Error(`cannot read ${label}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile())
      throw new Error(
        `cannot read ${label}: not a regular file (${st.isDirectory() ? 'a folder' : 'a device, FIFO or socket'})`,
      );
    if (st.size > maxBytes)
      throw new ReadLimitError(
        `cannot read ${label}: ${mib(st.size)} is more than the ${mib(maxBytes)} read limit`,
      );
    const out = new Uint8Array(st.size);
    let at = 0;
    while (at < out.length) {
      const { bytesRead } = await fh.read(out, at, out.length - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    // A file that shrank while read is returned as it is now; one that grew is cut at the size checked.
    return at === out.length ? out : out.subarray(0, at);
  } finally {
    await fh.close();
  }
}

export function fsSource(root: string, maxBytes?: number): FileSource {
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
      const full = resolve(abs, path);
      if (!full.startsWith(abs + sep))
        throw new Error(`${basename(abs)}: refusing ${path}: outside the folder`);
      try {
        return await readRegularFile(full, maxBytes, path);
      } catch (e) {
        if (e instanceof ReadLimitError)
          throw new ReadLimitError(`${basename(abs)}: ${(e as Error).message}`);
        throw new Error(`${basename(abs)}: ${(e as Error).message}`);
      }
    },
  };
}
