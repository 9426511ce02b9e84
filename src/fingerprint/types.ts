// nnU-Net's dataset_fingerprint.json, key for key. Axis order is nnU-Net's (z, y, x), before
// any transpose; spacings are the reader's float32 pixdims widened to double.

/** Foreground intensity statistics of one channel (nnU-Net samples them; see spec §2). */
export interface ChannelIntensityProperties {
  max: number;
  mean: number;
  median: number;
  min: number;
  percentile_00_5: number;
  percentile_99_5: number;
  std: number;
}

export interface DatasetFingerprint {
  /** Keyed by the channel index as a string: "0", "1", ... */
  foreground_intensity_properties_per_channel: Record<string, ChannelIntensityProperties>;
  median_relative_size_after_cropping: number;
  /** One [z, y, x] per training case. */
  shapes_after_crop: number[][];
  /** One [sz, sy, sx] per training case. */
  spacings: number[][];
}
