// Where an nnU-Net v2 trained model comes from, as files: a dropped/picked folder (relative paths)
// or the zip `nnUNetv2_export_model_to_zip` writes (entries `DatasetXXX/<Trainer>__<Plans>__<cfg>/…`).
// Both become one FileSource, read lazily: a folder reads one file at a time; a zip is held as its
// compressed bytes and each entry is inflated only when read (fflate's filter), so a 5-fold model
// never has all of its checkpoints inflated at once. `findNnUNetModels` lists the results folders
// inside (several when the zip holds several configurations).
//
// Shared with the CLI's reader of the same zip (h-export's work) once both are in: keep one.
import { unzipSync } from 'fflate';
import type { FileSource } from '../io/file-source.ts';
import { mib, readLimits, ReadLimitError } from '../io/read-limits.ts';
import { errorMessage } from '../util/errors.ts';

/** A file given by the user: its relative path (folder name first) and contents. */
export interface GivenFile {
  path: string;
  file: Blob;
}

/** A FileSource that also knows each file's size (for a progress bar by bytes). */
export interface SizedSource extends FileSource {
  size(path: string): number;
}

export class NnUNetSourceError extends Error {
  override name = 'NnUNetSourceError';
}

/** Largest entry a zip may declare (a bigger one is a forged or hostile header). */
const MAX_ENTRY_BYTES = () => readLimits().maxVolumeBytes;

async function blobBytes(f: Blob, what: string): Promise<Uint8Array> {
  const max = MAX_ENTRY_BYTES();
  if (f.size > max)
    throw new ReadLimitError(`${what}: ${mib(f.size)} is more than the ${mib(max)} read limit`);
  return new Uint8Array(await f.arrayBuffer());
}

/** A zip's entries, inflated one at a time on read. */
export function zipSource(name: string, zip: Uint8Array): SizedSource {
  const sizes = new Map<string, number>();
  try {
    // A listing pass: the filter sees every entry's header and inflates none.
    unzipSync(zip, {
      filter: (f) => {
        if (!f.name.endsWith('/')) sizes.set(f.name.replace(/^\/+/, ''), f.originalSize);
        return false;
      },
    });
  } catch (e) {
    throw new NnUNetSourceError(`${name}: not a readable .zip (${errorMessage(e)})`);
  }
  return {
    name,
    list: async () => [...sizes.keys()].sort(),
    size: (p) => sizes.get(p) ?? 0,
    read: async (path) => {
      const declared = sizes.get(path);
      if (declared === undefined) throw new NnUNetSourceError(`${name}: no file ${path}`);
      if (declared > MAX_ENTRY_BYTES())
        throw new ReadLimitError(
          `${name}: ${path} declares ${mib(declared)}, more than the ${mib(MAX_ENTRY_BYTES())} read limit`,
        );
      let out: Uint8Array | undefined;
      try {
        const r = unzipSync(zip, { filter: (f) => f.name.replace(/^\/+/, '') === path });
        out = Object.values(r)[0];
      } catch (e) {
        throw new NnUNetSourceError(`${name}: ${path} could not be unpacked (${errorMessage(e)})`);
      }
      if (!out || out.length !== declared)
        throw new NnUNetSourceError(`${name}: ${path} unpacked to a different size than declared`);
      return out;
    },
  };
}

/** Files with relative paths (a picked or dropped folder). */
export function filesSource(name: string, files: readonly GivenFile[]): SizedSource {
  const map = new Map(files.map((f) => [f.path.replace(/^\/+/, ''), f.file]));
  return {
    name,
    list: async () => [...map.keys()].sort(),
    size: (p) => map.get(p)?.size ?? 0,
    read: async (path) => {
      const f = map.get(path);
      if (!f) throw new NnUNetSourceError(`${name}: no file ${path}`);
      return blobBytes(f, `${name}: ${path}`);
    },
  };
}

/** What the user gave (one .zip, or a folder's files) as one source; hidden files are left out. */
export async function sourceOfGivenFiles(given: readonly GivenFile[]): Promise<SizedSource> {
  const files = given.filter((f) => !f.path.split('/').pop()!.startsWith('.'));
  if (files.length === 0) throw new NnUNetSourceError('no files were given');
  if (files.length === 1 && /\.zip$/i.test(files[0].path)) {
    const name = files[0].path.split('/').pop()!;
    return zipSource(name, await blobBytes(files[0].file, name));
  }
  return filesSource(files[0].path.split('/')[0] || 'model', files);
}

/** The part of `src` under folder `dir` ('' = all of it), paths relative to it. */
export function subSource(src: SizedSource, dir: string): SizedSource {
  if (!dir) return src;
  const pre = `${dir.replace(/\/+$/, '')}/`;
  return {
    name: `${src.name}/${dir}`,
    list: async () =>
      (await src.list()).filter((p) => p.startsWith(pre)).map((p) => p.slice(pre.length)),
    size: (p) => src.size(pre + p),
    read: (p) => src.read(pre + p),
  };
}

export const NNUNET_CHECKPOINTS = ['checkpoint_final.pth', 'checkpoint_best.pth'] as const;
export type NnUNetCheckpointName = (typeof NNUNET_CHECKPOINTS)[number];

/** One nnU-Net results folder found in a source. */
export interface FoundNnUNetModel {
  /** Its folder inside the source ('' = the root), e.g. `Dataset801_X/nnUNetTrainer__nnUNetPlans__3d_fullres`. */
  dir: string;
  /** The folder name: `<Trainer>__<Plans>__<configuration>` in nnU-Net's layout. */
  name: string;
  folds: Array<{ fold: number; checkpoints: Array<{ name: NnUNetCheckpointName; bytes: number }> }>;
}

/**
 * The nnU-Net results folders in `src`: folders holding plans.json, dataset.json and at least one
 * fold_K/checkpoint_{final,best}.pth. Throws, saying what is missing, when there is none.
 */
export async function findNnUNetModels(src: SizedSource): Promise<FoundNnUNetModel[]> {
  const files = await src.list();
  const set = new Set(files);
  const byDir = new Map<string, FoundNnUNetModel>();
  for (const f of files) {
    const m = /^(?:(.*)\/)?fold_(\d+)\/(checkpoint_(?:final|best)\.pth)$/.exec(f);
    if (!m) continue;
    const dir = m[1] ?? '';
    const at = (n: string) => (dir ? `${dir}/${n}` : n);
    if (!set.has(at('plans.json')) || !set.has(at('dataset.json'))) continue;
    let found = byDir.get(dir);
    if (!found) {
      found = { dir, name: dir.split('/').pop() || src.name.replace(/\.zip$/i, ''), folds: [] };
      byDir.set(dir, found);
    }
    const fold = Number(m[2]);
    let entry = found.folds.find((x) => x.fold === fold);
    if (!entry) found.folds.push((entry = { fold, checkpoints: [] }));
    entry.checkpoints.push({ name: m[3] as NnUNetCheckpointName, bytes: src.size(f) });
  }
  if (byDir.size === 0) {
    const hasPlans = files.some((f) => f.split('/').pop() === 'plans.json');
    const hasFold = files.some((f) => /(^|\/)fold_\d+\//.test(f));
    throw new NnUNetSourceError(
      `${src.name} is not an nnU-Net v2 results folder: ${
        !hasPlans
          ? 'no plans.json'
          : !hasFold
            ? 'no fold_K/ folder'
            : 'no fold_K/checkpoint_final.pth (or checkpoint_best.pth) beside plans.json and dataset.json'
      }. Choose the <Trainer>__<Plans>__<configuration> folder (or its Dataset folder, or the zip nnUNetv2_export_model_to_zip writes)`,
    );
  }
  const out = [...byDir.values()].sort((a, b) => a.dir.localeCompare(b.dir));
  for (const m of out) {
    m.folds.sort((a, b) => a.fold - b.fold);
    for (const f of m.folds) f.checkpoints.sort((a, b) => a.name.localeCompare(b.name)).reverse();
  }
  return out;
}
