// nnU-Net's channel-name → normalization mapping (spec §4.2) and the use_mask_for_norm rule.
import type { DatasetJson } from './types.ts';

interface Scheme {
  name: string;
  /** Only schemes that leave outside-mask voxels at 0 may use the nonzero mask. */
  leavesOutsideMaskAtZero: boolean;
}

const SCHEMES: Record<string, Scheme> = {
  ct: { name: 'CTNormalization', leavesOutsideMaskAtZero: false },
  nonorm: { name: 'NoNormalization', leavesOutsideMaskAtZero: false },
  zscore: { name: 'ZScoreNormalization', leavesOutsideMaskAtZero: true },
  rescale_to_0_1: { name: 'RescaleTo01Normalization', leavesOutsideMaskAtZero: false },
  rgb_to_0_1: { name: 'RGBTo01Normalization', leavesOutsideMaskAtZero: false },
};
const DEFAULT_SCHEME = SCHEMES.zscore;

export function channelNames(dataset: DatasetJson): Record<string, string> {
  const names = dataset.channel_names ?? dataset.modality;
  if (!names) throw new Error('dataset.json has neither channel_names nor modality');
  return names;
}

/**
 * Per channel: the scheme's class name and whether the nonzero mask is used. The mask is used
 * when cropping removed more than a quarter of the image (median relative size < 0.75) or the
 * dataset.json asks for it, and only for schemes that keep outside voxels at zero.
 */
export function normalizationSchemes(
  dataset: DatasetJson,
  medianRelativeSizeAfterCropping: number,
): { schemes: string[]; useMask: boolean[] } {
  // toLowerCase stands in for Python's casefold; they differ only outside ASCII (e.g. 'ß').
  const schemes = Object.values(channelNames(dataset)).map(
    (n) => SCHEMES[n.toLowerCase()] ?? DEFAULT_SCHEME,
  );
  const mask = medianRelativeSizeAfterCropping < 3 / 4 || Boolean(dataset.use_mask_for_norm);
  return {
    schemes: schemes.map((s) => s.name),
    useMask: schemes.map((s) => mask && s.leavesOutsideMaskAtZero),
  };
}

/** nnU-Net's reader/writer choice when no image file is at hand: the override, else by file ending. */
export function imageReaderWriter(dataset: DatasetJson): string {
  if (dataset.overwrite_image_reader_writer) return dataset.overwrite_image_reader_writer;
  const ending = dataset.file_ending.toLowerCase();
  if (['.png', '.bmp', '.tif'].includes(ending)) return 'NaturalImage2DIO';
  if (['.nii.gz', '.nrrd', '.mha', '.gipl'].includes(ending)) return 'SimpleITKIO';
  if (ending === '.tiff') return 'Tiff3DIO';
  if (ending === '.nii') return 'NibabelIO';
  throw new Error(
    `no image reader/writer known for file ending ${dataset.file_ending}; set overwrite_image_reader_writer`,
  );
}
