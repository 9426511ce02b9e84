// Deep-supervision targets and loss weights (spec §7.4; nnUNetTrainer._get_deep_supervision_scales,
// DownsampleSegForDSTransform, the DeepSupervisionWrapper weights).
import { resizeNearestExact } from './resize.ts';
import { type SegArray, as3d, newSegLike, prod, roundHalfEven } from './util.ts';

/**
 * Per-output, per-axis target scales: 1 / cumprod(strides) over the stages, without the last
 * (bottleneck) entry. E.g. strides [[1,1,1],[2,2,2],[2,2,1]] → [[1,1,1],[0.5,0.5,0.5]].
 */
export function deepSupervisionScales(strides: readonly (readonly number[])[]): number[][] {
  const out: number[][] = [];
  const acc = strides[0].map(() => 1);
  for (const s of strides) {
    for (let d = 0; d < acc.length; d++) acc[d] *= s[d];
    out.push(acc.map((a) => 1 / a));
  }
  return out.slice(0, -1);
}

/** w_k = 1/2^k, the last (lowest-resolution) set to 0, normalised to sum 1. 5 → [0.5333, 0.2667, 0.1333, 0.0667, 0]. */
export function deepSupervisionWeights(numOutputs: number): number[] {
  const w = Array.from({ length: numOutputs }, (_, k) => 1 / 2 ** k);
  w[numOutputs - 1] = 0;
  const sum = w.reduce((a, b) => a + b, 0);
  return sum > 0 ? w.map((x) => x / sum) : w; // one output: weight 0 upstream too (nan-free here)
}

export interface DsTarget {
  /** (B, 1, ...shape) */
  seg: SegArray;
  shape: number[];
}

/**
 * Targets for every deep-supervision output: nearest-exact to round(shape·scale) per sample. A scale
 * of all ones returns the input array itself (no copy), as upstream.
 */
export function deepSupervisionTargets(
  seg: SegArray,
  batchSize: number,
  spatial: readonly number[],
  scales: readonly (readonly number[])[],
): DsTarget[] {
  const s3 = as3d(spatial);
  return scales.map((sc) => {
    if (sc.length !== spatial.length) throw new Error(`scale has ${sc.length} axes, patch has ${spatial.length}`);
    if (sc.every((v) => v === 1)) return { seg, shape: [...spatial] };
    const shape = spatial.map((s, d) => roundHalfEven(s * sc[d]));
    const o3 = as3d(shape);
    const out = newSegLike(seg, batchSize * prod(shape));
    // Batch and the single seg channel fold into the channel loop.
    resizeNearestExact(seg, batchSize, s3, o3, out);
    return { seg: out, shape };
  });
}
