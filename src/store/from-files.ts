// What a user dropped → what gets imported. Three kinds of input:
// - an nnU-Net raw dataset folder (dataset.json at the root, or in the one folder dropped):
//   every case is read once, validated as nnU-Net does, and stored with its problems;
// - loose volume files (NIfTI, NRRD, MetaImage: see io/formats.ts): one unlabelled case per file;
// - DICOM files: one unlabelled case per series.
// Pure (no DOM): runs in the import worker and in Node tests.
import type { FileSource } from '../io/file-source.ts';
import { openRawDataset, readRawDatasetCases } from '../io/raw-dataset.ts';
import { isVolumePath, readVolumeFile, volumeBaseName } from '../io/formats.ts';
import { readDicomFiles } from '../io/dicom.ts';
import type { CaseInput, DatasetMeta } from './import-dataset.ts';
import { errorMessage } from '../util/errors.ts';
import {
  classifySkippedFile,
  summariseImport,
  withDetails,
  type ImportFilesReport,
  type SkippedFile,
} from '../io/import-summary.ts';

export interface SkippedCase {
  id: string;
  reason: string;
}

export interface ImportPlan {
  /** 'nifti-files': loose volume files of any single-file format (the name predates NRRD/MetaImage). */
  kind: 'raw-dataset' | 'nifti-files' | 'dicom-series';
  meta: DatasetMeta;
  casesTotal: number;
  /** Cases to store; reading happens lazily, one case at a time. */
  cases: AsyncIterable<CaseInput>;
  /** Cases that cannot be stored (no readable image), filled while `cases` is iterated. */
  skipped: SkippedCase[];
  /** Dataset-level warnings (not fatal). */
  warnings: string[];
  /** What was done with each file, for the plain summary (complete once `cases` is iterated). */
  report(): ImportFilesReport;
}

export class ImportInputError extends Error {}

export interface PlanOptions {
  name?: string;
  /**
   * Store cases with validation problems (marked, listed with the dataset) and skip unreadable ones.
   * Off by default: like nnU-Net's verify_dataset_integrity, any problem fails the import, every
   * problem of every case is reported, and nothing is stored.
   */
  allowProblems?: boolean;
}

/** Ends an import that met problems in strict mode (after every case was read, so all are listed). */
function failOnProblems(perCase: Array<{ id: string; problems: string[] }>, strict: boolean): void {
  const bad = perCase.filter((c) => c.problems.length);
  if (!strict || bad.length === 0) return;
  const lines = bad.map((c) => `${c.id}: ${c.problems.join('; ')}`);
  const ids = bad.map((c) => c.id);
  // The first line in plain words; each case's problems (readers' messages) as details.
  throw new ImportInputError(
    withDetails(
      `${bad.length} case(s) have problems (${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ', …' : ''}), nothing was imported. "Keep cases with problems" imports the others.`,
      lines,
    ),
  );
}

function ensureSome(stored: number, skipped: SkippedCase[]): void {
  if (stored === 0)
    throw new ImportInputError(
      `no case could be read${skipped.length ? `: ${skipped.map((s) => `${s.id}: ${s.reason}`).join('; ')}` : ''}`,
    );
}

/** A view of `src` below `prefix` ('' = the root). */
function subSource(src: FileSource, prefix: string): FileSource {
  if (!prefix) return src;
  return {
    name: prefix.replace(/\/$/, '').split('/').pop() || src.name,
    list: async () =>
      (await src.list()).filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length)),
    read: (p) => src.read(prefix + p),
  };
}

export async function planImport(src: FileSource, opts: PlanOptions = {}): Promise<ImportPlan> {
  const paths = await src.list();
  if (paths.length === 0)
    throw new ImportInputError(`${src.name}: nothing to import (the folder is empty)`);
  const jsons = paths
    .filter((p) => p === 'dataset.json' || p.endsWith('/dataset.json'))
    .sort((a, b) => a.length - b.length);
  if (jsons.length > 0)
    return planRawDataset(
      subSource(src, jsons[0].slice(0, -'dataset.json'.length)),
      opts,
      paths.length,
    );
  const volumes = paths.filter(isVolumePath);
  if (volumes.length > 0) {
    // Files beside the scans (a README, a screenshot) are not read: said in the summary.
    const others = paths
      .filter((p) => !isVolumePath(p))
      .map((p) => ({ path: p, reason: classifySkippedFile(p) }));
    return planVolumeFiles(src, volumes, others, opts);
  }
  return planDicom(src, paths, opts);
}

async function planRawDataset(
  src: FileSource,
  { name, allowProblems = false }: PlanOptions,
  fileCount: number,
): Promise<ImportPlan> {
  const ds = await openRawDataset(src);
  if (!ds.json || ds.problems.length) {
    throw new ImportInputError(
      `${src.name} is not a valid nnU-Net dataset: ${ds.problems.join('; ') || 'dataset.json is unreadable'}`,
    );
  }
  const json = ds.json;
  const names = json.channel_names ?? json.modality ?? {};
  const skipped: SkippedCase[] = [];
  async function* cases(): AsyncGenerator<CaseInput> {
    const seen: Array<{ id: string; problems: string[] }> = [];
    let stored = 0;
    for await (const c of readRawDatasetCases(src, ds)) {
      seen.push({ id: c.report.id, problems: c.report.problems });
      if (c.images.length !== ds.channels.length) {
        skipped.push({ id: c.report.id, reason: c.report.problems.join('; ') });
        continue;
      }
      stored++;
      yield {
        caseId: c.report.id,
        images: c.images,
        label: c.label,
        problems: [...c.report.problems, ...c.report.warnings.map((w) => `warning: ${w}`)],
      };
    }
    failOnProblems(seen, !allowProblems);
    ensureSome(stored, skipped);
  }
  return {
    kind: 'raw-dataset',
    meta: {
      name: name ?? src.name,
      datasetJson: json,
      channelNames: ds.channels.map((k) => String(names[k] ?? k)),
      labels: json.labels,
    },
    casesTotal: ds.cases.length,
    cases: cases(),
    skipped,
    warnings: ds.warnings,
    report: () => ({
      kind: 'raw-dataset',
      files: fileCount,
      // The dataset's files are read case by case; a case left out is listed as a case.
      filesRead: fileCount,
      cases: ds.cases.length - skipped.length,
      skippedFiles: [],
      skippedCases: skipped,
      warnings: ds.warnings,
    }),
  };
}

function caseIdOf(path: string): string {
  return volumeBaseName(path);
}

async function planVolumeFiles(
  src: FileSource,
  files: string[],
  others: SkippedFile[],
  { name, allowProblems = false }: PlanOptions,
): Promise<ImportPlan> {
  const ids = files.map(caseIdOf);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new ImportInputError(`two files would both become case '${dup}'; rename one`);
  const skipped: SkippedCase[] = [];
  const unread: SkippedFile[] = [];
  async function* cases(): AsyncGenerator<CaseInput> {
    let stored = 0;
    for (const [i, p] of files.entries()) {
      let v;
      try {
        v = await readVolumeFile(src, p);
      } catch (e) {
        skipped.push({ id: ids[i], reason: errorMessage(e) });
        unread.push({ path: p, reason: 'damaged', detail: errorMessage(e) });
        continue;
      }
      stored++;
      yield { caseId: ids[i], images: [v], problems: [] };
    }
    failOnProblems(
      skipped.map((k) => ({ id: k.id, problems: [k.reason] })),
      !allowProblems,
    );
    ensureSome(stored, skipped);
  }
  return {
    kind: 'nifti-files',
    meta: { name: name ?? src.name, channelNames: ['image'], labels: { background: 0 } },
    casesTotal: files.length,
    cases: cases(),
    skipped,
    warnings: [],
    report: () => ({
      kind: 'nifti-files',
      files: files.length + others.length,
      filesRead: files.length - unread.length,
      cases: files.length - unread.length,
      skippedFiles: [...unread, ...others],
    }),
  };
}

async function planDicom(
  src: FileSource,
  paths: string[],
  { name, allowProblems = false }: PlanOptions,
): Promise<ImportPlan> {
  // DICOM series need every file of a series before a volume exists, so files are read up front.
  const files = await Promise.all(paths.map(async (p) => ({ name: p, bytes: await src.read(p) })));
  const { series, skipped: notDicom } = readDicomFiles(files);
  const skippedFiles: SkippedFile[] = notDicom.map((f) => ({
    path: f.name,
    reason: classifySkippedFile(f.name, f.reason, /SeriesInstanceUID/.test(f.reason)),
    detail: f.reason,
  }));
  const report = (): ImportFilesReport => {
    const bad = new Set(series.filter((s) => !s.volume).flatMap((s) => s.files));
    return {
      kind: 'dicom-series',
      files: paths.length,
      filesRead: series.filter((s) => s.volume).reduce((n, s) => n + s.files.length, 0),
      cases: series.filter((s) => s.volume).length,
      skippedFiles: [
        ...skippedFiles,
        ...series
          .filter((s) => !s.volume)
          .flatMap((s) =>
            s.files.map((f) => ({
              path: f,
              reason: 'damaged' as const,
              detail: s.error ?? 'unreadable series',
            })),
          )
          .filter((f) => bad.has(f.path)),
      ],
    };
  };
  if (series.length === 0) {
    // One plain sentence first; the readers' messages only in the details.
    const text = summariseImport(report());
    throw new ImportInputError(
      withDetails(
        `${src.name}: nothing to import: no dataset.json, no NIfTI file and no readable DICOM series (nor an NRRD or MetaImage file). ${text.headline}.`,
        text.details,
      ),
    );
  }
  const skipped: SkippedCase[] = [];
  const warnings: string[] = [];
  async function* cases(): AsyncGenerator<CaseInput> {
    let stored = 0;
    for (const [i, s] of series.entries()) {
      const id = `series_${String(i).padStart(3, '0')}`;
      if (!s.volume) {
        skipped.push({ id, reason: s.error ?? 'unreadable series' });
        continue;
      }
      stored++;
      yield { caseId: id, images: [s.volume], problems: [] };
    }
    failOnProblems(
      skipped.map((k) => ({ id: k.id, problems: [k.reason] })),
      !allowProblems,
    );
    ensureSome(stored, skipped);
  }
  return {
    kind: 'dicom-series',
    meta: { name: name ?? src.name, channelNames: ['image'], labels: { background: 0 } },
    casesTotal: series.length,
    cases: cases(),
    skipped,
    warnings,
    report,
  };
}
