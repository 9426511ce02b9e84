// Dataset worker: imports dropped files into IndexedDB (parsing, validation, storing happen here,
// off the page's thread), lists and deletes datasets. Exposed with comlink.
import * as Comlink from 'comlink';
import { openStore, type StoreDB } from '../src/store/db.ts';
import { deleteDataset, importDataset, listCases, listDatasets, loadCaseVolumes, storageUsage } from '../src/store/datasets.ts';
import { planImport, type SkippedCase } from '../src/store/from-files.ts';
import { directoryHandleSource, pathFilesSource, type DirectoryHandleLike } from '../src/io/file-source.ts';
import type { CaseInput } from '../src/store/import-dataset.ts';

export interface ImportInput {
  /** Files with paths relative to what was dropped (folder name first), or a picked directory. */
  files?: Array<{ path: string; file: File }>;
  dir?: FileSystemDirectoryHandle;
  name?: string;
  /** Keep cases with validation problems (marked) instead of refusing the whole import. */
  allowProblems?: boolean;
}

export interface ImportEvent {
  phase: 'reading' | 'storing' | 'committing' | 'done' | 'rolling-back';
  casesDone: number;
  casesTotal: number;
  bytesWritten: number;
  caseId?: string;
}

export interface ImportSummary {
  datasetId: string;
  name: string;
  kind: string;
  numCases: number;
  casesWithProblems: number;
  skipped: SkippedCase[];
  warnings: string[];
  replaced: boolean;
}

let dbPromise: Promise<StoreDB> | undefined;
const db = () => (dbPromise ??= openStore());
let current: AbortController | undefined;

async function sha256(bytes: ArrayBufferView): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

const api = {
  async importFiles(input: ImportInput, onEvent: (e: ImportEvent) => void): Promise<ImportSummary> {
    if (current) throw new Error('an import is already running; cancel it first');
    const ctrl = new AbortController();
    current = ctrl;
    try {
      const src = input.dir
        ? directoryHandleSource(input.dir as unknown as DirectoryHandleLike)
        : pathFilesSource(input.files?.[0]?.path.split('/')[0] || 'files', input.files ?? []);
      const plan = await planImport(src, { name: input.name, allowProblems: input.allowProblems });
      const total = plan.casesTotal;
      let bytes = 0;
      let done = 0;
      // Report each case as it is read (parsing is most of the time for compressed files).
      async function* reading(): AsyncGenerator<CaseInput> {
        for await (const c of plan.cases) {
          onEvent({ phase: 'reading', casesDone: done, casesTotal: total, bytesWritten: bytes, caseId: c.caseId });
          yield c;
        }
      }
      const r = await importDataset(await db(), plan.meta, reading(), {
        casesTotal: total,
        signal: ctrl.signal,
        onProgress: (p) => {
          bytes = p.bytesWritten;
          done = p.casesDone;
          const phase = p.phase === 'staging' ? 'storing' : p.phase;
          onEvent({ phase, casesDone: p.casesDone, casesTotal: total, bytesWritten: p.bytesWritten });
        },
      });
      return {
        datasetId: r.dataset.id,
        name: r.dataset.name,
        kind: plan.kind,
        numCases: r.dataset.numCases,
        casesWithProblems: r.dataset.casesWithProblems,
        skipped: plan.skipped,
        warnings: plan.warnings,
        replaced: r.replacedId !== undefined,
      };
    } finally {
      current = undefined;
    }
  },

  cancelImport(): void {
    current?.abort();
  },

  async datasets() {
    const d = await db();
    const all = await listDatasets(d);
    return Promise.all(all.map(async (ds) => ({
      id: ds.id,
      name: ds.name,
      numCases: ds.numCases,
      casesWithProblems: ds.casesWithProblems,
      bytes: ds.bytes,
      channelNames: ds.channelNames,
      labels: ds.labels,
      cases: (await listCases(d, ds.id)).map((c) => ({ caseId: c.caseId, problems: c.problems, dims: c.images[0]?.dims, spacing: c.images[0]?.spacing, hasLabel: !!c.label })),
    })));
  },

  async remove(datasetId: string): Promise<boolean> {
    return deleteDataset(await db(), datasetId);
  },

  async usage() {
    return storageUsage(await db());
  },

  /** SHA-256 of each stored volume's voxel bytes (integrity checks; used by tests). */
  async caseDigests(datasetId: string, caseId: string): Promise<{ images: string[]; label?: string } | undefined> {
    const v = await loadCaseVolumes(await db(), datasetId, caseId);
    if (!v) return undefined;
    return { images: await Promise.all(v.images.map((x) => sha256(x.data))), label: v.label ? await sha256(v.label.data) : undefined };
  },
};


export type DataApi = typeof api;
Comlink.expose(api);
