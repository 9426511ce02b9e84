// A zip as a FileSource, read entry by entry through its central directory (zip-archive.ts): only
// the directory is read up front, each entry is read (and inflated, into a buffer of its declared
// size, CRC-checked) when asked for, and an entry that declares more than the read limit is
// refused before any memory is allocated. Per-platform adapters give the bytes: a zip file on disk
// by range (src/node/zip-file-source.ts) or a picked/dropped Blob (blobZipSource, givenFilesSource).
import { pathFilesSource, type FileSource } from './file-source.ts';
import { mib, readLimits, ReadLimitError } from './read-limits.ts';
import { openZip, type ReadAt } from './zip-archive.ts';

export function zipSource(name: string, size: number, readAt: ReadAt): FileSource {
  const zip = openZip(size, readAt, name);
  const byPath = new Map(
    zip.entries.filter((e) => !e.name.endsWith('/')).map((e) => [e.name.replace(/^\/+/, ''), e]),
  );
  return {
    name,
    list: async () => [...byPath.keys()].sort(),
    size: (p) => byPath.get(p)?.size,
    read: async (p) => {
      const e = byPath.get(p);
      if (!e) throw new Error(`${name}: no file ${p}`);
      const max = readLimits().maxVolumeBytes;
      if (e.size > max)
        throw new ReadLimitError(
          `${name}: ${p} declares ${mib(e.size)}, more than the ${mib(max)} read limit`,
        );
      return zip.read(e, { maxBytes: max });
    },
  };
}

/**
 * A picked or dropped .zip. Its compressed bytes are held (bounded by the read limit) and entries
 * are views of them (STORED, as nnU-Net's export writes) or inflated one at a time: a Blob cannot
 * be read by range synchronously outside a worker, and zip-archive's reader is synchronous.
 */
export async function blobZipSource(name: string, zip: Blob): Promise<FileSource> {
  const max = readLimits().maxVolumeBytes;
  if (zip.size > max)
    throw new ReadLimitError(`${name}: ${mib(zip.size)} is more than the ${mib(max)} read limit`);
  return zipBytesSource(name, new Uint8Array(await zip.arrayBuffer()));
}

/** A zip held in memory (STORED entries come back as views, no copy). */
export function zipBytesSource(name: string, bytes: Uint8Array): FileSource {
  return zipSource(name, bytes.length, (o, n) => {
    if (o < 0 || o + n > bytes.length) throw new Error(`${name}: read past the end`);
    return bytes.subarray(o, o + n);
  });
}

/**
 * What a user gave (one .zip, or a picked/dropped folder's files with paths that start at the
 * folder's name) as one source; hidden files (.DS_Store, …) are left out.
 */
export async function givenFilesSource(
  given: ReadonlyArray<{ path: string; file: Blob }>,
): Promise<FileSource> {
  const files = given.filter((f) => !f.path.split('/').pop()!.startsWith('.'));
  if (files.length === 0) throw new Error('no files were given');
  if (files.length === 1 && /\.zip$/i.test(files[0].path))
    return blobZipSource(files[0].path.split('/').pop()!, files[0].file);
  return pathFilesSource(files[0].path.split('/')[0] || 'model', files);
}
