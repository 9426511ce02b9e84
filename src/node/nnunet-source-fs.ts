// An nnU-Net model on disk as a FileSource (the Node adapter of infer/nnunet-folds.ts, the reader
// the browser uses too): a results folder, or the zip nnUNetv2_export_model_to_zip writes (read
// entry by entry, never whole).
import { statSync } from 'node:fs';
import type { FileSource } from '../io/file-source.ts';
import { fsSource } from './fs-source.ts';
import { zipFileSource } from './zip-file-source.ts';

export async function nnunetModelSource(path: string): Promise<FileSource> {
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return isFile ? zipFileSource(path) : fsSource(path);
}

/** True when `path` is an nnU-Net results folder or export zip (not this project's model folder). */
export async function isNnUNetModel(path: string, checkpoint?: string): Promise<boolean> {
  const { findNnUNetResultsDir, checkpointName } = await import('../infer/nnunet-folds.ts');
  let src: FileSource;
  try {
    src = await nnunetModelSource(path);
    const files = await src.list();
    if (files.some((f) => f.split('/').pop() === 'model.json')) return false;
  } catch {
    return false; // not readable as either: the model-folder reader reports it
  }
  try {
    await findNnUNetResultsDir(src, checkpointName(checkpoint));
    return true;
  } catch {
    // A results folder without this checkpoint still is one: let its reader say what is missing.
    return (await src.list()).some((f) => /(^|\/)fold_(\d+|all)\/[^/]+\.pth$/.test(f));
  }
}
