// nnU-Net's LabelManager, the parts training, inference and evaluation need: how many output
// channels dataset.json's labels give the network, which labels are foreground or regions, the
// ignore label, and the input channel count. One copy for train, infer, eval and the model folder.

/** dataset.json fields read here (a full nnU-Net dataset.json satisfies it). */
export interface LabelsDatasetJson {
  labels: Record<string, number | number[]>;
  regions_class_order?: number[];
  channel_names?: Record<string, string>;
  modality?: Record<string, string>;
}

export interface LabelInfo {
  /** Network outputs: labels incl. background, or foreground regions. */
  numSegmentationHeads: number;
  hasRegions: boolean;
  /** Foreground labels, or regions (as label lists), the evaluator scores. */
  foreground: (number | number[])[];
  regionsClassOrder?: number[];
  ignoreLabel?: number;
}

/** nnU-Net's LabelManager sets: all label values, foreground labels or regions, the ignore label. */
export interface LabelSets {
  hasRegions: boolean;
  /** Every label value (background included, ignore excluded), ascending. */
  all: number[];
  /** Foreground labels (no regions), or regions as label lists (background skipped). */
  foreground: (number | number[])[];
  ignoreLabel?: number;
}

export function labelSets(dj: Pick<LabelsDatasetJson, 'labels'>): LabelSets {
  const entries = Object.entries(dj.labels).filter(([k]) => k !== 'ignore');
  const ignoreLabel = typeof dj.labels.ignore === 'number' ? dj.labels.ignore : undefined;
  const hasRegions = entries.some(([, v]) => Array.isArray(v) && v.length > 1);
  const all = [...new Set(entries.flatMap(([, v]) => (Array.isArray(v) ? v : [v])))].sort(
    (a, b) => a - b,
  );
  // LabelManager skips the background entry and any region that is only label 0.
  const foreground = hasRegions
    ? entries
        .filter(([k]) => k !== 'background')
        .map(([, v]) => (Array.isArray(v) ? v : [v]))
        .filter((r) => !(r.length === 1 && r[0] === 0))
    : all.filter((l) => l !== 0);
  return { hasRegions, all, foreground, ignoreLabel };
}

export function labelInfo(
  dj: Pick<LabelsDatasetJson, 'labels' | 'regions_class_order'>,
): LabelInfo {
  const { hasRegions, foreground, all, ignoreLabel } = labelSets(dj);
  if (hasRegions) {
    if (!dj.regions_class_order || dj.regions_class_order.length !== foreground.length) {
      throw new Error('dataset.json defines regions but no regions_class_order of matching length');
    }
    return {
      numSegmentationHeads: foreground.length,
      hasRegions,
      foreground,
      regionsClassOrder: dj.regions_class_order,
      ignoreLabel,
    };
  }
  return { numSegmentationHeads: all.length, hasRegions, foreground, ignoreLabel };
}

export function numInputChannels(dj: LabelsDatasetJson): number {
  const ch = dj.channel_names ?? dj.modality;
  if (!ch) throw new Error('dataset.json has neither channel_names nor modality');
  return Object.keys(ch).length;
}
