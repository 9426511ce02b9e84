// Deep-supervision targets (spec §7.4; nnUNetTrainer._get_deep_supervision_scales +
// DownsampleSegForDSTransform): the label map resized with torch's 'nearest-exact' to
// round(shape · scale_k), scale_k = 1 / cumprod(strides)[k], k = 0 .. n_stages − 2.
// The loss weights live in loss.ts (deepSupervisionWeights); the resize kernel in resize.ts.
import { roundHalfEven } from '../util/numeric.ts';
import { resizeNearestExact } from './resize.ts';
import { type SegArray, as3d, newSegLike } from './util.ts';
import { prod } from '../util/numeric.ts';

/** Output shapes of the deep-supervision targets, highest resolution first (n_stages − 1 of them). */
export function dsTargetShapes(
  spatial: readonly number[],
  strides: readonly (readonly number[])[],
): number[][] {
  const out: number[][] = [];
  const cum = spatial.map(() => 1);
  for (let k = 0; k < strides.length - 1; k++) {
    if (strides[k].length !== spatial.length)
      throw new Error(
        `stride ${strides[k]} has ${strides[k].length} axes, patch has ${spatial.length}`,
      );
    strides[k].forEach((s, i) => (cum[i] *= s));
    out.push(spatial.map((n, i) => roundHalfEven(n / cum[i])));
  }
  return out;
}

export interface DsTarget {
  /** (B, 1, ...shape) labels */
  seg: SegArray;
  shape: number[];
}

/**
 * Targets for every deep-supervision output from a batch of labels (B, 1, ...spatial), each
 * sample resized separately. A full-resolution entry returns the input array itself (no copy),
 * as upstream.
 */
export function deepSupervisionTargets(
  seg: SegArray,
  batchSize: number,
  spatial: readonly number[],
  strides: readonly (readonly number[])[],
): DsTarget[] {
  const s3 = as3d(spatial);
  return dsTargetShapes(spatial, strides).map((shape) => {
    if (shape.every((v, i) => v === spatial[i])) return { seg, shape };
    const out = newSegLike(seg, batchSize * prod(shape));
    // Batch and the single seg channel fold into resizeNearestExact's channel loop.
    resizeNearestExact(seg, batchSize, s3, as3d(shape), out);
    return { seg: out, shape };
  });
}
