// A scan given as files (the Predict tab's drop): volume files (NIfTI, NRRD, MetaImage), one per
// channel in name order, or one DICOM series (of several, the one with most slices). How each
// format is recognised and read is io/formats.ts's concern; this only adapts dropped files.
import { pathFilesSource } from '../io/file-source.ts';
import { readScan, type ReadVolume } from '../io/formats.ts';

export interface DroppedFile {
  path: string;
  file: Blob;
}

/** Reads a scan from files; hidden files (.DS_Store, …) are ignored. */
export function readScanFiles(
  given: DroppedFile[],
): Promise<{ name: string; images: ReadVolume[] }> {
  return readScan(pathFilesSource('scan', given));
}
