// A zip as a FileSource, read entry by entry through its central directory (zip-archive.ts): only
// the directory is read up front, each entry is read by range (and inflated, into a buffer of its
// declared size, CRC-checked) when asked for, and an entry that declares more than the read limit
// is refused before any of it is read. Per-platform adapters give the bytes by range: a zip file on
// disk (src/node/zip-file-source.ts) or a picked/dropped Blob (blobZipSource, givenFilesSource).
import { pathFilesSource, type FileSource } from './file-source.ts';
import { mib, readLimits, ReadLimitError } from './read-limits.ts';
import {
  openZip,
  openZipBytes,
  type ReadAt,
  type ZipEntry,
  type ZipReadOptions,
} from './zip-archive.ts';

/** A zip of `size` bytes read through `readAt`; rejects when its directory is malformed. */
export async function zipSource(name: string, size: number, readAt: ReadAt): Promise<FileSource> {
  return readerSource(name, await openZip(size, readAt, name));
}

/**
 * A picked or dropped .zip, read by slices of the Blob: the directory when opened, then one entry
 * (30-byte local header + its data) per read — the archive is never held whole, so a zip larger
 * than the read limit imports as long as each of its files is within it.
 */
export function blobZipSource(name: string, zip: Blob): Promise<FileSource> {
  return zipSource(name, zip.size, blobReadAt(name, zip));
}

/** Reads a Blob by range (a File is read from disk, a slice at a time). */
export function blobReadAt(name: string, blob: Blob): ReadAt {
  return async (o, n) => {
    if (o < 0 || n < 0 || o + n > blob.size) throw new Error(`${name}: read past the end`);
    let b: ArrayBuffer;
    try {
      b = await blob.slice(o, o + n).arrayBuffer();
    } catch (e) {
      throw new Error(
        `${name}: cannot read bytes ${o}–${o + n} (${(e as Error)?.message ?? String(e)}; was the file changed or removed?)`,
      );
    }
    return new Uint8Array(b);
  };
}

/** A zip held in memory (STORED entries come back as views, no copy). */
export function zipBytesSource(name: string, bytes: Uint8Array): FileSource {
  return readerSource(name, openZipBytes(bytes, name));
}

function readerSource(
  name: string,
  zip: {
    entries: ZipEntry[];
    read(e: ZipEntry, opts: ZipReadOptions): Uint8Array | Promise<Uint8Array>;
  },
): FileSource {
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
