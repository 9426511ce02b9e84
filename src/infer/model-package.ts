// A model package as the user gives it: a model folder's files (at any depth: the shallowest
// folder holding model.json is used) or one .zip of it; and a file name for exporting one.
import { unzipSync } from 'fflate';
import { MODEL_FILES } from './model-dir.ts';
import type { DroppedFile } from './scan-files.ts';

const lower = (p: string) => p.toLowerCase();

/** The model-folder files of a dropped folder or zip, and the folder's name. */
export async function filesOfPackage(given: DroppedFile[]): Promise<{ files: Record<string, Uint8Array>; folder: string }> {
  const list = given.filter((f) => !f.path.split('/').pop()!.startsWith('.'));
  const zips = list.filter((f) => lower(f.path).endsWith('.zip'));
  let entries: Array<{ path: string; bytes: () => Promise<Uint8Array> }>;
  let folder: string;
  if (zips.length === 1 && list.length === 1) {
    const unz = unzipSync(new Uint8Array(await zips[0].file.arrayBuffer()));
    entries = Object.entries(unz).filter(([p]) => !p.endsWith('/')).map(([path, b]) => ({ path, bytes: async () => b }));
    folder = zips[0].path.split('/').pop()!.replace(/\.zip$/i, '');
  } else {
    entries = list.map((f) => ({ path: f.path.replace(/^\/+/, ''), bytes: async () => new Uint8Array(await f.file.arrayBuffer()) }));
    folder = list[0]?.path.split('/')[0] ?? 'model';
  }
  // The folder holding model.json (the shallowest one).
  const marks = entries.filter((e) => e.path.split('/').pop() === MODEL_FILES.model).sort((a, b) => a.path.split('/').length - b.path.split('/').length);
  if (marks.length === 0) throw new Error(`no ${MODEL_FILES.model} among the ${entries.length} file(s): choose the model folder written by \`fednnunet train\` (model.json, plans.json, dataset.json, weights.json, weights.bin) or a .zip of it`);
  const dir = marks[0].path.slice(0, -MODEL_FILES.model.length);
  if (dir) folder = dir.replace(/\/$/, '').split('/').pop()!;
  const files: Record<string, Uint8Array> = {};
  for (const e of entries) {
    if (!e.path.startsWith(dir)) continue;
    const rel = e.path.slice(dir.length);
    if ((Object.values(MODEL_FILES) as string[]).includes(rel)) files[rel] = await e.bytes();
  }
  return { files, folder };
}

/** A model name as a file name (letters, digits, '.', '-', '_'). */
export function safeName(s: string): string {
  return s.replace(/[^\w.-]+/g, '_').replace(/^_+|_+$/g, '') || 'model';
}
