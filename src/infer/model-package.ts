// A model package as the user gives it (dropped or picked files: a model folder at any depth, or
// one .zip of it; unpacking is model/model-folder.ts's), and a file name for exporting one.
import { unpackModelFolder } from '../model/model-folder.ts';
import type { DroppedFile } from './scan-files.ts';
import { blobReadAt } from '../io/zip-source.ts';

/** The model-folder files of a dropped folder or zip, and the folder's name. */
export function filesOfPackage(
  given: DroppedFile[],
): Promise<{ files: Record<string, Uint8Array>; folder: string }> {
  return unpackModelFolder(
    given.map((f) => ({
      path: f.path,
      bytes: async () => new Uint8Array(await f.file.arrayBuffer()),
      zip: { size: f.file.size, readAt: blobReadAt(f.path, f.file) },
    })),
  );
}

/** A model name as a file name (letters, digits, '.', '-', '_'). */
export function safeName(s: string): string {
  return s.replace(/[^\w.-]+/g, '_').replace(/^_+|_+$/g, '') || 'model';
}
