// `fednnunet info FILE_OR_DIR`: geometry and value range of a NIfTI file, the DICOM series of a
// file or folder, or every case (plus validation problems) of an nnU-Net raw dataset folder, as JSON.
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { fsSource } from '../../node/fs-source.ts';
import { readDicomFiles, type DicomSeries } from '../../io/dicom.ts';
import { isGzip } from '../../io/gzip.ts';
import { readNifti } from '../../io/nifti.ts';
import { validateRawDataset } from '../../io/raw-dataset.ts';
import type { Volume } from '../../io/volume.ts';

export function volumeInfo(v: Volume & { orientation?: string }) {
  let min = Infinity, max = -Infinity;
  for (let i = 0; i < v.data.length; i++) {
    const x = v.data[i];
    if (x < min) min = x;
    if (x > max) max = x;
  }
  return {
    shape: v.dims, channels: v.channels, spacing: v.spacing,
    affine: [0, 1, 2, 3].map((r) => v.affine.slice(r * 4, r * 4 + 4)),
    orientation: v.orientation, datatype: v.datatype, storedDatatype: v.storedDatatype, min, max,
  };
}

/** NIfTI by its first bytes: gzip, or a 348/540 sizeof_hdr in either byte order. */
function looksLikeNifti(b: Uint8Array): boolean {
  if (isGzip(b)) return true;
  if (b.length < 4) return false;
  const dv = new DataView(b.buffer, b.byteOffset, 4);
  return [348, 540].includes(dv.getInt32(0, true)) || [348, 540].includes(dv.getInt32(0, false));
}

function seriesInfo(s: DicomSeries) {
  return { seriesInstanceUID: s.seriesInstanceUID, seriesDescription: s.seriesDescription, modality: s.modality, files: s.files.length, ...(s.volume ? volumeInfo(s.volume) : { error: s.error }) };
}

async function dicomReport(files: { name: string; bytes: Uint8Array }[], where: string) {
  const { series, skipped } = readDicomFiles(files);
  if (series.length === 0) throw new Error(`${where}: no NIfTI or DICOM images found${skipped.length ? ` (${skipped[0].name}: ${skipped[0].reason})` : ''}`);
  if (series.every((s) => s.error)) throw new Error(series[0].error);
  return { report: { type: 'dicom', series: series.map(seriesInfo), skipped }, ok: series.every((s) => !s.error) };
}

async function info(path: string): Promise<{ report: unknown; ok: boolean }> {
  const st = await stat(path).catch(() => null);
  if (!st) throw new Error(`${path}: no such file or folder`);
  if (st.isFile()) {
    const bytes = new Uint8Array(await readFile(path));
    if (looksLikeNifti(bytes)) return { report: { type: 'nifti', file: path, ...volumeInfo(readNifti(bytes, basename(path))) }, ok: true };
    return dicomReport([{ name: basename(path), bytes }], path);
  }
  const src = fsSource(path);
  const paths = await src.list();
  if (paths.length === 0) throw new Error(`${path}: the folder is empty`);
  if (paths.includes('dataset.json')) {
    const r = await validateRawDataset(src);
    const { datasetJson, name, ...rest } = r;
    return { report: { type: 'nnunet-raw', folder: path, name: (datasetJson?.name as string | undefined) ?? name, numTraining: datasetJson?.numTraining, channel_names: datasetJson?.channel_names ?? datasetJson?.modality, labels: datasetJson?.labels, ...rest }, ok: r.ok };
  }
  const files = await Promise.all(paths.map(async (p) => ({ name: p, bytes: await src.read(p) })));
  const nifti = files.filter((f) => looksLikeNifti(f.bytes));
  if (nifti.length) return { report: { type: 'nifti-folder', files: nifti.map((f) => ({ file: f.name, ...volumeInfo(readNifti(f.bytes, f.name)) })) }, ok: true };
  return dicomReport(files, path);
}

const command: Command = {
  summary: 'print shape, spacing, affine, orientation and value range of a NIfTI file, DICOM folder or nnU-Net raw dataset (JSON)',
  async run(argv) {
    const { values, positionals } = parse(argv, { help: { type: 'boolean' } });
    if (values.help) {
      console.log('fednnunet info FILE_OR_DIR\n  NIfTI (.nii/.nii.gz), a DICOM file or folder, or an nnU-Net raw dataset folder (with dataset.json).\n  Exits 1 when the input is bad or a dataset has validation problems.');
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError('expected one FILE_OR_DIR (see fednnunet info --help)');
    const { report, ok } = await info(positionals[0]);
    console.log(JSON.stringify(report, null, 2));
    return ok ? 0 : 1;
  },
};
export default command;
