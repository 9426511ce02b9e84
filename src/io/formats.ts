// The one place that knows which image formats exist: how to recognise a file (magic bytes first,
// the file name as a fallback), how to read it into a Volume, and which extensions file pickers
// and drop zones accept. Everything that opens a scan (raw dataset reader, browser import, Predict
// tab and worker, CLI info/predict/evaluate) goes through here.
//
// Adding a format touches two files: its reader (bytes -> Volume, see nrrd.ts) and the
// VOLUME_FORMATS table below. DICOM is the exception: a volume is a series of files, so it has
// its own entry points (`readDicomFiles`) and is tried when no single-file volume is present.
import { dirOf, pathInside, type FileSource } from './file-source.ts';
import { readDicomFiles } from './dicom.ts';
import { isGzip } from './gzip.ts';
import { isMetaImage, readMetaImage } from './metaimage.ts';
import { readNifti } from './nifti.ts';
import { isNrrd, readNrrd, type VolumeReadOptions } from './nrrd.ts';
import type { Volume } from './volume.ts';
import { classifySkippedFile, summariseImport, withDetails } from './import-summary.ts';

export type { VolumeReadOptions };
export type ReadVolume = Volume & { orientation: string };

export interface VolumeFormat {
  /** Short name for messages. */
  name: string;
  /** File name endings, lower case; a file with one of them is read as a volume of this format. */
  extensions: string[];
  /** Endings nnU-Net itself reads in a raw dataset (dataset.json file_ending; NibabelIO/SimpleITKIO). */
  datasetEndings: string[];
  /** Endings of data files a header of this format may name (listed so they are not taken as scans). */
  dataExtensions?: string[];
  /** Recognises the format by the file's first bytes (up to 1 KiB are given). */
  sniff(head: Uint8Array): boolean;
  read(bytes: Uint8Array, name: string, o: VolumeReadOptions): ReadVolume | Promise<ReadVolume>;
}

/** NIfTI by gzip magic (every .nii.gz) or a 348/540 sizeof_hdr in either byte order. */
function sniffNifti(b: Uint8Array): boolean {
  if (isGzip(b)) return true;
  if (b.length < 4) return false;
  const dv = new DataView(b.buffer, b.byteOffset, 4);
  return [348, 540].includes(dv.getInt32(0, true)) || [348, 540].includes(dv.getInt32(0, false));
}

export const VOLUME_FORMATS: readonly VolumeFormat[] = [
  {
    name: 'NIfTI',
    extensions: ['.nii.gz', '.nii'],
    datasetEndings: ['.nii.gz', '.nii'],
    sniff: sniffNifti,
    read: (b, name, o) => readNifti(b, name, o.maxBytes),
  },
  {
    name: 'NRRD',
    extensions: ['.nrrd', '.nhdr'],
    datasetEndings: ['.nrrd'],
    dataExtensions: ['.raw', '.raw.gz'],
    sniff: isNrrd,
    read: readNrrd,
  },
  {
    name: 'MetaImage',
    extensions: ['.mha', '.mhd'],
    datasetEndings: ['.mha'],
    dataExtensions: ['.raw', '.zraw'],
    sniff: isMetaImage,
    read: readMetaImage,
  },
];

/** Every single-file volume ending, e.g. for dataset.json's file_ending and messages. */
export const VOLUME_EXTENSIONS: readonly string[] = VOLUME_FORMATS.flatMap((f) => f.extensions);

/**
 * The `accept` attribute of file inputs. Browsers match only the last extension, so `.gz` stands
 * for `.nii.gz`; DICOM files often have no extension, so folders are picked separately.
 */
export const FILE_ACCEPT = [
  ...new Set([
    ...VOLUME_EXTENSIONS.map((e) => e.replace(/^.*(\.[^.]+)$/, '$1')),
    ...VOLUME_FORMATS.flatMap((f) => f.dataExtensions ?? []).map((e) =>
      e.replace(/^.*(\.[^.]+)$/, '$1'),
    ),
    '.dcm',
    'application/dicom',
  ]),
].join(',');

/** file_ending values of an nnU-Net raw dataset we accept (those nnU-Net accepts and we read). */
export const DATASET_ENDINGS: readonly string[] = VOLUME_FORMATS.flatMap((f) => f.datasetEndings);

/** Human list for messages: "NIfTI (.nii.gz, .nii), NRRD (.nrrd, .nhdr), ...". */
export const FORMAT_NAMES = VOLUME_FORMATS.map(
  (f) => `${f.name} (${f.extensions.join(', ')})`,
).join(', ');

const lower = (p: string) => p.toLowerCase();

/** The format a file name says, if any. */
export function formatOfPath(path: string): VolumeFormat | undefined {
  const p = lower(path);
  return VOLUME_FORMATS.find((f) => f.extensions.some((e) => p.endsWith(e)));
}

/** True for a file that holds (or heads) one volume: .nii(.gz), .nrrd/.nhdr, .mha/.mhd. */
export function isVolumePath(path: string): boolean {
  return formatOfPath(path) !== undefined;
}

/** The file name without its folder and volume extension ('case_0000.nii.gz' -> 'case_0000'). */
export function volumeBaseName(path: string): string {
  const base = path.split('/').pop()!;
  const f = formatOfPath(base);
  const e = f?.extensions.find((x) => lower(base).endsWith(x));
  return e ? base.slice(0, -e.length) : base;
}

/** The format of some bytes by their magic, if any. */
export function sniffVolume(bytes: Uint8Array): VolumeFormat | undefined {
  const head = bytes.subarray(0, 1024);
  return VOLUME_FORMATS.find((f) => f.sniff(head));
}

/**
 * Reads one volume file from `src`. The bytes decide the format (a misnamed file still reads);
 * the name is the fallback, so a damaged .nrrd gets the NRRD reader's message. A header naming a
 * data file (.nhdr, .mhd) reads it from the same folder, never outside `src`.
 */
export async function readVolumeFile(
  src: FileSource,
  path: string,
  o: Pick<VolumeReadOptions, 'maxBytes'> = {},
): Promise<ReadVolume> {
  const bytes = await src.read(path);
  const dir = dirOf(path);
  const readRelative = (rel: string) => {
    const p = pathInside(dir, rel);
    if (!p)
      throw new Error(`${path}: refusing data file ${JSON.stringify(rel)} outside the folder`);
    return src.read(p);
  };
  return readVolumeBytes(bytes, path, { ...o, readRelative });
}

/** Reads the bytes of one volume file; `name` labels messages and is the format fallback. */
export async function readVolumeBytes(
  bytes: Uint8Array,
  name: string,
  o: VolumeReadOptions = {},
): Promise<ReadVolume> {
  const format = sniffVolume(bytes) ?? formatOfPath(name);
  if (!format)
    throw new Error(
      `${name}: not a NIfTI, NRRD or MetaImage file (supported: ${FORMAT_NAMES}; DICOM as a folder of slices)`,
    );
  return format.read(bytes, name, o);
}

/**
 * One scan from a set of files: the volume files (one per channel, in name order) when there are
 * any, else a DICOM series (the one with most slices when several are given, e.g. a whole study).
 * Hidden files (.DS_Store) are ignored; data files named by headers are read through them.
 */
export async function readScan(src: FileSource): Promise<{ name: string; images: ReadVolume[] }> {
  const paths = (await src.list()).filter((p) => !p.split('/').pop()!.startsWith('.'));
  if (paths.length === 0) throw new Error('no file was given');
  const volumes = paths.filter(isVolumePath).sort();
  if (volumes.length) {
    const images: ReadVolume[] = [];
    for (const p of volumes) images.push(await readVolumeFile(src, p));
    return { name: volumeBaseName(volumes[0]).replace(/_0000$/, ''), images };
  }
  const files = [];
  for (const p of paths) files.push({ name: p, bytes: await src.read(p) });
  const { series, skipped } = readDicomFiles(files);
  const ok = series.filter((s) => s.volume);
  if (ok.length === 0) {
    // One plain sentence (what the files are, by name); the readers' messages as details.
    const text = summariseImport({
      kind: 'dicom-series',
      files: paths.length,
      filesRead: 0,
      cases: 0,
      skippedFiles: [
        ...skipped.map((f) => ({
          path: f.name,
          reason: classifySkippedFile(f.name, f.reason, /SeriesInstanceUID/.test(f.reason)),
          detail: f.reason,
        })),
        ...series.flatMap((x) =>
          x.files.map((path) => ({ path, reason: 'damaged' as const, detail: x.error })),
        ),
      ],
    });
    throw new Error(
      withDetails(
        `these files are neither NIfTI, NRRD or MetaImage volumes (${VOLUME_EXTENSIONS.join(', ')}) nor a readable DICOM series: ${text.headline}`,
        text.details,
      ),
    );
  }
  const s = ok.sort((a, b) => b.files.length - a.files.length)[0];
  const top = paths[0].includes('/') ? paths[0].split('/')[0] : 'DICOM';
  return {
    name: s.seriesDescription ? `${top} (${s.seriesDescription})` : top,
    images: [s.volume!],
  };
}
