// Per-case fingerprint (spec §2 steps 1–4): crop to nonzero, record shape/spacing/relative size, and
// summarise each channel's foreground intensities (label > 0 inside the crop) compactly enough to be
// merged later without keeping voxels (see dataset.ts for the equal-weight-per-case statistics).
import { nnunetView, type Volume } from '../io/volume.ts';
import { bboxOfMask, fillHoles, nonzeroMask, type Shape3 } from '../preprocess/crop.ts';

/** Distribution summary of one channel's foreground values in one case. */
export interface ForegroundSummary {
  n: number;
  /** float64 mean and sum of squared deviations (M2) of the float32 values. */
  mean: number;
  m2: number;
  min: number;
  max: number;
  /** Ascending values and the number of voxels <= each (cumulative). Exact when `exact`. */
  values: Float64Array;
  cumCounts: Float64Array;
  /**
   * false when the case had more distinct values than the budget: the summary then keeps the values at
   * evenly spaced ranks, so the case CDF is exact at those points and off by at most 1/budget between.
   */
  exact: boolean;
}

export interface CaseFingerprint {
  /** numpy (z, y, x) order, no transpose. */
  shape_after_crop: number[];
  spacing: number[];
  relative_size_after_cropping: number;
  /** One per channel. */
  foreground: ForegroundSummary[];
}

/** Default number of distinct values kept per case and channel (integer images stay exact). */
export const MAX_DISTINCT = 65536;

/** Summarises values (sorted in place). */
export function summarizeValues(v: Float32Array, maxDistinct = MAX_DISTINCT): ForegroundSummary {
  const n = v.length;
  v.sort();
  let s = 0;
  for (let i = 0; i < n; i++) s += v[i];
  const mean = n ? s / n : NaN;
  let m2 = 0;
  for (let i = 0; i < n; i++) {
    const d = v[i] - mean;
    m2 += d * d;
  }
  let distinct = 0;
  for (let i = 0; i < n; i++) if (i === n - 1 || v[i] !== v[i + 1]) distinct++;
  let values: Float64Array, cum: Float64Array;
  const exact = distinct <= maxDistinct;
  if (exact) {
    values = new Float64Array(distinct);
    cum = new Float64Array(distinct);
    for (let i = 0, j = 0; i < n; i++)
      if (i === n - 1 || v[i] !== v[i + 1]) {
        values[j] = v[i];
        cum[j++] = i + 1;
      }
  } else {
    // Value at rank ceil(k n / M) for k = 1..M, merged where equal.
    const vs: number[] = [],
      cs: number[] = [];
    for (let k = 1; k <= maxDistinct; k++) {
      const r = Math.ceil((k * n) / maxDistinct);
      const val = v[r - 1];
      if (vs.length && vs[vs.length - 1] === val) cs[cs.length - 1] = r;
      else {
        vs.push(val);
        cs.push(r);
      }
    }
    values = Float64Array.from(vs);
    cum = Float64Array.from(cs);
  }
  return {
    n,
    mean,
    m2,
    min: n ? v[0] : NaN,
    max: n ? v[n - 1] : NaN,
    values,
    cumCounts: cum,
    exact,
  };
}

/**
 * analyze_case on in-memory volumes: `image` holds all channels, `label` the segmentation (same dims).
 * Only the nonzero mask and foreground values are materialised, never a cropped image copy.
 */
export function caseFingerprint(
  image: Volume,
  label: Volume,
  opts: { maxDistinct?: number } = {},
): CaseFingerprint {
  if (label.dims.some((d, i) => d !== image.dims[i]))
    throw new Error(`label dims ${label.dims} differ from image dims ${image.dims}`);
  const v = nnunetView(image);
  const C = v.shape[0];
  const shape: Shape3 = [v.shape[1], v.shape[2], v.shape[3]];
  const mask = nonzeroMask(v.data, C, shape);
  fillHoles(mask, shape);
  const bbox = bboxOfMask(mask, shape);
  const cropShape = bbox.map(([a, b]) => b - a);
  const nvox = shape[0] * shape[1] * shape[2];
  const [, ny, nx] = shape;
  const seg = label.data;
  // Foreground = label > 0 inside the bbox (cropping only relabels 0 -> -1, never touches > 0).
  const scan = (fn: (i: number) => void) => {
    for (let z = bbox[0][0]; z < bbox[0][1]; z++)
      for (let y = bbox[1][0]; y < bbox[1][1]; y++) {
        const row = (z * ny + y) * nx;
        for (let x = bbox[2][0]; x < bbox[2][1]; x++) if (seg[row + x] > 0) fn(row + x);
      }
  };
  let nFg = 0;
  scan(() => nFg++);
  const fgIdx = new Int32Array(nFg);
  let k = 0;
  scan((i) => {
    fgIdx[k++] = i;
  });
  const foreground: ForegroundSummary[] = [];
  const vals = new Float32Array(fgIdx.length);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < fgIdx.length; i++) vals[i] = v.data[c * nvox + fgIdx[i]];
    foreground.push(summarizeValues(vals, opts.maxDistinct));
  }
  return {
    shape_after_crop: cropShape,
    spacing: [...v.spacing],
    relative_size_after_cropping: cropShape.reduce((a, b) => a * b, 1) / nvox,
    foreground,
  };
}
