// `fednnunet info FILE_OR_DIR`: geometry and value range of a volume file (NIfTI, NRRD, MetaImage), the DICOM series of a
// file or folder, or every case (plus validation problems) of an nnU-Net raw dataset folder, as JSON.
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { fsSource } from '../../node/fs-source.ts';
import { readDicomFiles, type DicomSeries } from '../../io/dicom.ts';
import { formatOfPath, isVolumePath, readVolumeFile, sniffVolume } from '../../io/formats.ts';
import { validateRawDataset } from '../../io/raw-dataset.ts';
import type { Volume } from '../../io/volume.ts';

export function volumeInfo(v: Volume & { orientation?: string }) {
  let min = Infinity,
    max = -Infinity;
  for (let i = 0; i < v.data.length; i++) {
    const x = v.data[i];
    if (x < min) min = x;
    if (x > max) max = x;
  }
  return {
    shape: v.dims,
    channels: v.channels,
    spacing: v.spacing,
    affine: [0, 1, 2, 3].map((r) => v.affine.slice(r * 4, r * 4 + 4)),
    orientation: v.orientation,
    datatype: v.datatype,
    storedDatatype: v.storedDatatype,
    min,
    max,
  };
}

function seriesInfo(s: DicomSeries) {
  return {
    seriesInstanceUID: s.seriesInstanceUID,
    seriesDescription: s.seriesDescription,
    modality: s.modality,
    files: s.files.length,
    ...(s.volume ? volumeInfo(s.volume) : { error: s.error }),
  };
}

async function dicomReport(files: { name: string; bytes: Uint8Array }[], where: string) {
  const { series, skipped } = readDicomFiles(files);
  if (series.length === 0)
    throw new Error(
      `${where}: no NIfTI, NRRD, MetaImage or DICOM images found${skipped.length ? ` (${skipped[0].name}: ${skipped[0].reason})` : ''}`,
    );
  if (series.every((s) => s.error)) throw new Error(series[0].error);
  return {
    report: { type: 'dicom', series: series.map(seriesInfo), skipped },
    ok: series.every((s) => !s.error),
  };
}

async function info(path: string): Promise<{ report: unknown; ok: boolean }> {
  const st = await stat(path).catch(() => null);
  if (!st) throw new Error(`${path}: no such file or folder`);
  if (!st.isDirectory()) {
    // Read through the file's folder, so a detached header finds its data file (and only regular files are read).
    const dir = fsSource(dirname(path));
    const bytes = await dir.read(basename(path));
    const format = sniffVolume(bytes) ?? formatOfPath(path);
    if (format)
      return {
        report: {
          type: format.name.toLowerCase(),
          file: path,
          ...volumeInfo(await readVolumeFile(dir, basename(path))),
        },
        ok: true,
      };
    return dicomReport([{ name: basename(path), bytes }], path);
  }
  const src = fsSource(path);
  const paths = await src.list();
  if (paths.length === 0) throw new Error(`${path}: the folder is empty`);
  if (paths.includes('dataset.json')) {
    const r = await validateRawDataset(src);
    const { datasetJson, name, ...rest } = r;
    return {
      report: {
        type: 'nnunet-raw',
        folder: path,
        name: (datasetJson?.name as string | undefined) ?? name,
        numTraining: datasetJson?.numTraining,
        channel_names: datasetJson?.channel_names ?? datasetJson?.modality,
        labels: datasetJson?.labels,
        ...rest,
      },
      ok: r.ok,
    };
  }
  const volumes = paths.filter(isVolumePath);
  if (volumes.length) {
    const files = [];
    for (const p of volumes) files.push({ file: p, ...volumeInfo(await readVolumeFile(src, p)) });
    return { report: { type: 'volume-folder', files }, ok: true };
  }
  const files = [];
  for (const p of paths) files.push({ name: p, bytes: await src.read(p) });
  return dicomReport(files, path);
}

const command: Command = {
  summary:
    'print shape, spacing, affine, orientation and value range of a NIfTI/NRRD/MetaImage file, DICOM folder or nnU-Net raw dataset (JSON)',
  async run(argv) {
    const { values, positionals } = parse(argv, { help: { type: 'boolean' } });
    if (values.help) {
      console.log(
        'fednnunet info FILE_OR_DIR\n  NIfTI (.nii/.nii.gz), NRRD (.nrrd/.nhdr), MetaImage (.mha/.mhd), a DICOM file or folder, or an nnU-Net raw dataset folder (with dataset.json).\n  Exits 1 when the input is bad or a dataset has validation problems.',
      );
      return 0;
    }
    if (positionals.length !== 1)
      throw new UsageError('expected one FILE_OR_DIR (see fednnunet info --help)');
    const { report, ok } = await info(positionals[0]);
    console.log(JSON.stringify(report, null, 2));
    return ok ? 0 : 1;
  },
};
export default command;
