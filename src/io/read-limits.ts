// How many bytes a reader may read or inflate for one file. Hostile or broken inputs (a small
// .nii.gz whose header claims 4096³ voxels, a deflated DICOM that expands to gigabytes, a symlink
// to /dev/zero) are refused with a ReadLimitError before the memory is allocated.

export interface ReadLimits {
  /** Most bytes one volume file may hold once read and decompressed (header + voxel data). */
  maxVolumeBytes: number;
  /** Most bytes one DICOM file may inflate to (one slice: 4096² × 32 bits is 64 MiB). */
  maxDicomFileBytes: number;
}

export const DEFAULT_READ_LIMITS: Readonly<ReadLimits> = Object.freeze({
  // A 512×512×2000 float32 CT is 2 GiB, about the largest typed array a browser tab allocates.
  maxVolumeBytes: 2 * 1024 ** 3,
  maxDicomFileBytes: 64 * 1024 ** 2,
});

let current: ReadLimits = { ...DEFAULT_READ_LIMITS };

/** The limits in force (process- or worker-wide). */
export function readLimits(): Readonly<ReadLimits> {
  return current;
}

/** Changes the limits for this process or worker (e.g. the CLI's FEDNNUNET_MAX_VOLUME_BYTES); returns the old ones. */
export function setReadLimits(l: Partial<ReadLimits>): ReadLimits {
  const old = current;
  for (const [k, v] of Object.entries(l)) {
    if (v !== undefined && !(Number.isSafeInteger(v) && v > 0))
      throw new Error(`read limit ${k} must be a positive integer number of bytes, got ${v}`);
  }
  current = {
    ...current,
    ...Object.fromEntries(Object.entries(l).filter(([, v]) => v !== undefined)),
  };
  return old;
}

export class ReadLimitError extends Error {
  override name = 'ReadLimitError';
}

export function mib(n: number): string {
  return `${(n / 1024 ** 2).toFixed(n < 1024 ** 2 ? 3 : 0)} MiB`;
}
