// A read-only tree of files, so dataset code works the same on Node's fs, a browser folder picker
// (File with webkitRelativePath), a FileSystemDirectoryHandle, or bytes in memory (tests).
import { mib, readLimits, ReadLimitError } from './read-limits.ts';

export interface FileSource {
  /** A label for messages, e.g. the folder name. */
  readonly name: string;
  /** Every file path below the root, '/'-separated, relative, sorted. */
  list(): Promise<string[]>;
  /** Bytes of one listed path; rejects with a message naming the path when it is missing. */
  read(path: string): Promise<Uint8Array>;
  /** A listed file's size in bytes, where known without reading it (for progress by bytes). */
  size?(path: string): number | undefined;
}

export function memorySource(name: string, files: Record<string, Uint8Array>): FileSource {
  return {
    name,
    list: async () => Object.keys(files).sort(),
    size: (path) => files[path]?.byteLength,
    read: async (path) => {
      const b = files[path];
      if (!b) throw new Error(`${name}: no file ${path}`);
      return b;
    },
  };
}

/**
 * Files from `<input type=file webkitdirectory>`: paths are `webkitRelativePath` without the
 * picked folder's own name.
 */
export function fileListSource(files: ArrayLike<File>): FileSource {
  let name = 'files';
  const entries = Array.from(files, (f) => {
    const parts = (f.webkitRelativePath || f.name).split('/');
    if (parts.length > 1) name = parts[0];
    return { path: parts.length > 1 ? parts.slice(1).join('/') : parts[0], file: f };
  });
  return pathFilesSource(name, entries);
}

/** The part of FileSystemDirectoryHandle we use (typed here: not every TS DOM lib has its iterators). */
export interface DirectoryHandleLike {
  readonly name: string;
  readonly kind: 'directory';
  entries(): AsyncIterable<
    [string, DirectoryHandleLike | { kind: 'file'; name: string; getFile(): Promise<File> }]
  >;
}

export function directoryHandleSource(root: DirectoryHandleLike): FileSource {
  let files: Map<string, () => Promise<File>> | undefined;
  const walk = async (
    dir: DirectoryHandleLike,
    prefix: string,
    out: Map<string, () => Promise<File>>,
  ) => {
    for await (const [name, h] of dir.entries()) {
      if (h.kind === 'directory') await walk(h as DirectoryHandleLike, `${prefix}${name}/`, out);
      else out.set(prefix + name, () => (h as { getFile(): Promise<File> }).getFile());
    }
  };
  const index = async () => {
    if (!files) {
      files = new Map();
      await walk(root, '', files);
    }
    return files;
  };
  return {
    name: root.name,
    list: async () => [...(await index()).keys()].sort(),
    read: async (path) => {
      const get = (await index()).get(path);
      if (!get) throw new Error(`${root.name}: no file ${path}`);
      return blobBytes(await get(), `${root.name}: ${path}`);
    },
  };
}

/** Files with explicit relative paths (what a drag-and-drop of folders yields after walking entries). */
export function pathFilesSource(
  name: string,
  entries: ReadonlyArray<{ path: string; file: Blob }>,
): FileSource {
  const map = new Map(entries.map((e) => [e.path.replace(/^\/+/, ''), e.file]));
  return {
    name,
    list: async () => [...map.keys()].sort(),
    size: (path) => map.get(path)?.size,
    read: async (path) => {
      const f = map.get(path);
      if (!f) throw new Error(`${name}: no file ${path}`);
      return blobBytes(f, `${name}: ${path}`);
    },
  };
}

/**
 * `rel` resolved against the folder `dir` of a FileSource ('' = its root), '/'-separated and
 * normalised; undefined when it is absolute or climbs out of the root (`../../etc/passwd`), so
 * paths written inside files (dataset.json, a detached header's data file) cannot reach elsewhere.
 */
export function pathInside(dir: string, rel: string): string | undefined {
  if (typeof rel !== 'string' || rel === '' || rel.includes('\0') || /^([a-zA-Z]:)?[\\/]/.test(rel))
    return undefined;
  const out: string[] = dir ? dir.split('/').filter(Boolean) : [];
  for (const part of rel.split(/[\\/]/)) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) return undefined;
      out.pop();
    } else out.push(part);
  }
  return out.length ? out.join('/') : undefined;
}

/** The folder part of a FileSource path ('' at the root). */
export function dirOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/** A picked/dropped file's bytes, refused (before reading) when over the read limit. */
async function blobBytes(f: Blob, what: string): Promise<Uint8Array> {
  const max = readLimits().maxVolumeBytes;
  if (f.size > max)
    throw new ReadLimitError(`${what}: ${mib(f.size)} is more than the ${mib(max)} read limit`);
  return new Uint8Array(await f.arrayBuffer());
}
