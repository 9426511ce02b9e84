// A scan given as files (the Predict tab's drop): NIfTI files, one per channel in name order, or
// one DICOM series (of several, the one with most slices).
import { readDicomFiles } from '../io/dicom.ts';
import { readNifti } from '../io/nifti.ts';
import type { Volume } from '../io/volume.ts';

export interface DroppedFile {
  path: string;
  file: Blob;
}

const lower = (p: string) => p.toLowerCase();
const isNifti = (p: string) => lower(p).endsWith('.nii') || lower(p).endsWith('.nii.gz');

/** Reads a scan from files; hidden files (.DS_Store, …) are ignored. */
export async function readScanFiles(given: DroppedFile[]): Promise<{ name: string; images: Volume[] }> {
  const files = given.filter((f) => !f.path.split('/').pop()!.startsWith('.'));
  if (files.length === 0) throw new Error('no file was given');
  const nifti = files.filter((f) => isNifti(f.path)).sort((a, b) => (a.path < b.path ? -1 : 1));
  if (nifti.length) {
    const images = await Promise.all(nifti.map(async (f) => readNifti(new Uint8Array(await f.file.arrayBuffer()), f.path)));
    return { name: nifti[0].path.split('/').pop()!.replace(/(_0000)?\.nii(\.gz)?$/i, ''), images };
  }
  const named = await Promise.all(files.map(async (f) => ({ name: f.path, bytes: new Uint8Array(await f.file.arrayBuffer()) })));
  const { series, skipped } = readDicomFiles(named);
  const ok = series.filter((s) => s.volume);
  if (ok.length === 0) {
    const why = series[0]?.error ?? (skipped[0] ? `${skipped[0].name}: ${skipped[0].reason}` : 'no readable image');
    throw new Error(`these files are neither NIfTI (.nii, .nii.gz) nor a readable DICOM series (${why})`);
  }
  // Several series (e.g. a whole study): the one with most slices.
  const s = ok.sort((a, b) => b.files.length - a.files.length)[0];
  const top = files[0].path.includes('/') ? files[0].path.split('/')[0] : 'DICOM';
  return { name: s.seriesDescription ? `${top} (${s.seriesDescription})` : top, images: [s.volume!] };
}
