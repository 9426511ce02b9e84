// One plain sentence for what an import did with the files it was given ("12 files: 10 read as a
// DICOM series, 2 skipped: not medical images (holiday.png, notes.txt)"), with the readers' own
// messages kept for a folded "details" list. A person dropping a folder wants to know what was
// used and what was not, in words; parser internals ("DICM prefix not found at location 132")
// never belong in the headline. Pure (no DOM): used by the import worker and tested in Node.

/** Why a file was not used, in categories a person understands. */
export type SkipReason = 'not-medical' | 'system-file' | 'no-image' | 'damaged';

export interface SkippedFile {
  path: string;
  reason: SkipReason;
  /** The reader's own message, for the details. */
  detail?: string;
}

export interface ImportFilesReport {
  kind: 'raw-dataset' | 'nifti-files' | 'dicom-series';
  /** Files looked at (every file dropped or picked). */
  files: number;
  /** Files that became part of a case. */
  filesRead: number;
  /** Cases (series, volumes or dataset cases) the files were read as. */
  cases: number;
  skippedFiles: SkippedFile[];
  /** Whole cases not stored, with the reader's or validator's reason (details only). */
  skippedCases?: Array<{ id: string; reason: string }>;
  /** Dataset-level warnings (details only). */
  warnings?: string[];
}

export interface ImportSummaryText {
  headline: string;
  details: string[];
}

const REASON_WORDS: Record<SkipReason, string> = {
  'not-medical': 'not medical images',
  'system-file': 'system files',
  'no-image': 'DICOM files without an image (e.g. a DICOMDIR or a report)',
  damaged: 'damaged or unreadable',
};

// Extensions that are certainly not scans: named "not medical images" rather than "damaged".
const NOT_MEDICAL =
  /\.(png|jpe?g|gif|bmp|tiff?|webp|heic|svg|txt|md|csv|tsv|json|xml|html?|pdf|docx?|xlsx?|pptx?|odt|rtf|zip|7z|rar|tar|mp4|mov|avi|mp3|wav|exe|dll|py|js|sh)$/i;
const SYSTEM = /(^|\/)(\.DS_Store|Thumbs\.db|desktop\.ini|\._[^/]*|\.[^/]*)$/i;

const baseName = (p: string) => p.split('/').pop() || p;

/**
 * Classifies a file a reader refused. `looksLikeDicom`: the reader found a DICOM header (so the
 * file is DICOM but holds no image) — otherwise the extension decides between "not a medical image"
 * and "damaged".
 */
export function classifySkippedFile(path: string, detail = '', looksLikeDicom = false): SkipReason {
  if (SYSTEM.test(path)) return 'system-file';
  if (looksLikeDicom) return 'no-image';
  if (NOT_MEDICAL.test(path)) return 'not-medical';
  // A file with no DICOM preamble and no scan extension is not a scan of any kind we read.
  if (/DICM prefix not found|not a readable DICOM file/i.test(detail) && !/\.dcm$/i.test(path))
    return 'not-medical';
  return 'damaged';
}

function names(files: SkippedFile[], max = 3): string {
  const shown = files.slice(0, max).map((f) => baseName(f.path));
  return files.length > max
    ? `${shown.join(', ')} and ${files.length - max} more`
    : shown.join(', ');
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function readAs(r: ImportFilesReport): string {
  switch (r.kind) {
    case 'dicom-series':
      return r.cases === 1 ? 'a DICOM series' : `${r.cases} DICOM series`;
    case 'nifti-files':
      return r.cases === 1 ? 'one scan' : `${r.cases} scans`;
    case 'raw-dataset':
      return `an nnU-Net dataset of ${plural(r.cases, 'case')}`;
  }
}

/** The headline and the folded details for an import's report. */
export function summariseImport(r: ImportFilesReport): ImportSummaryText {
  const parts: string[] = [];
  if (r.filesRead > 0) parts.push(`${r.filesRead} read as ${readAs(r)}`);
  else parts.push('none could be read');
  const byReason = new Map<SkipReason, SkippedFile[]>();
  for (const f of r.skippedFiles) byReason.set(f.reason, [...(byReason.get(f.reason) ?? []), f]);
  if (r.skippedFiles.length) {
    const groups = [...byReason].map(([why, fs]) =>
      byReason.size > 1
        ? `${fs.length} ${REASON_WORDS[why]} (${names(fs)})`
        : `${REASON_WORDS[why]} (${names(fs)})`,
    );
    parts.push(`${r.skippedFiles.length} skipped: ${groups.join('; ')}`);
  }
  const cases = r.skippedCases ?? [];
  if (cases.length) parts.push(`${plural(cases.length, 'case')} left out (see details)`);
  const headline = `${plural(r.files, 'file')}: ${parts.join(', ')}`;
  const details = [
    ...cases.map((c) => `case ${c.id} left out: ${c.reason}`),
    ...r.skippedFiles.map(
      (f) => `${f.path}: ${REASON_WORDS[f.reason]}${f.detail ? ` (${f.detail})` : ''}`,
    ),
    ...(r.warnings ?? []),
  ];
  return { headline, details };
}

/**
 * Errors cross the worker boundary as a message only: the first line is what a person reads, the
 * lines after it are details to fold away. These two helpers keep that convention in one place.
 */
export function withDetails(headline: string, details: string[]): string {
  return details.length ? `${headline}\n${details.join('\n')}` : headline;
}

export function splitDetails(message: string): ImportSummaryText {
  const [headline, ...details] = message.split('\n');
  return { headline, details: details.filter((d) => d.trim() !== '') };
}
