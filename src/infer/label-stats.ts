// What the Predict tab reports of a segmentation: each label's name (dataset.json), voxels and
// volume in millilitres.
import { labelInfo } from '../model/labels.ts';
import type { PredictorDatasetJson } from './predictor.ts';

export interface LabelVolume {
  value: number;
  name: string;
  voxels: number;
  ml: number;
}

/** Label value → name, background included. With regions, the value is the region's place in regions_class_order. */
export function labelNamesOf(dj: PredictorDatasetJson): Record<number, string> {
  const info = labelInfo(dj);
  const out: Record<number, string> = { 0: 'background' };
  const entries = Object.entries(dj.labels).filter(([k]) => k !== 'ignore' && k !== 'background');
  if (info.hasRegions) {
    entries.forEach(([name], i) => (out[info.regionsClassOrder![i]] = name));
  } else {
    for (const [name, v] of entries) out[v as number] = name;
  }
  return out;
}

/** Per label (background excluded; named labels even when absent, unnamed ones when present): voxels and ml. */
export function labelVolumes(
  labels: ArrayLike<number>,
  spacing: readonly number[],
  names: Record<number, string>,
): LabelVolume[] {
  const counts = new Map<number, number>();
  for (let i = 0; i < labels.length; i++) counts.set(labels[i], (counts.get(labels[i]) ?? 0) + 1);
  const voxelMl = (spacing[0] * spacing[1] * spacing[2]) / 1000;
  const values = [...new Set([...Object.keys(names).map(Number), ...counts.keys()])]
    .filter((v) => v !== 0)
    .sort((a, b) => a - b);
  return values.map((value) => ({
    value,
    name: names[value] ?? `label ${value}`,
    voxels: counts.get(value) ?? 0,
    ml: (counts.get(value) ?? 0) * voxelMl,
  }));
}
