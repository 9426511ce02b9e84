// Test convenience: one case of an nnUNet_raw folder through the real readers (src/io).
import { readFileSync } from 'node:fs';
import { readNifti } from '../../../src/io/nifti.ts';
import { stackChannels } from '../../../src/io/raw-dataset.ts';
import type { Volume } from '../../../src/io/volume.ts';

export function loadNifti(path: string): Volume {
  return readNifti(new Uint8Array(readFileSync(path)), path);
}

/** Images of one case (channels stacked, each a full block) and its label. */
export function loadRawCase(
  datasetDir: string,
  caseId: string,
  nChannels: number,
): { image: Volume; label: Volume } {
  const chans = Array.from({ length: nChannels }, (_, c) =>
    loadNifti(`${datasetDir}/imagesTr/${caseId}_${String(c).padStart(4, '0')}.nii.gz`),
  );
  return {
    image: stackChannels(chans),
    label: loadNifti(`${datasetDir}/labelsTr/${caseId}.nii.gz`),
  };
}
