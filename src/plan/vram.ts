// nnU-Net's static_estimate_VRAM_usage for PlainConvUNet: the number of elements of every conv
// output for one sample (deep supervision off), i.e. compute_conv_feature_map_size. Spec §4.5.4:
//   E = Σ_s 2·F_s·P_s  (two encoder convs per stage)
//     + Σ_{s<n-1} 3·F_s·P_s  (transposed conv + two decoder convs per decoder level)
//     + C·P_0  (the final seg head)
// with P_s the voxel count after the cumulative strides of stages 0..s.

export function estimateFeatureMapSize(
  patchSize: readonly number[],
  strides: readonly (readonly number[])[],
  featuresPerStage: readonly number[],
  numOutputChannels: number,
): number {
  const n = strides.length;
  const voxels: number[] = [];
  let size = [...patchSize];
  for (let s = 0; s < n; s++) {
    // Same padding: every conv output is input // stride per axis.
    size = size.map((v, i) => Math.floor(v / strides[s][i]));
    voxels.push(size.reduce((a, b) => a * b, 1));
  }
  let e = 0;
  for (let s = 0; s < n; s++) e += 2 * featuresPerStage[s] * voxels[s];
  for (let s = 0; s < n - 1; s++) e += 3 * featuresPerStage[s] * voxels[s];
  return e + numOutputChannels * voxels[0];
}
