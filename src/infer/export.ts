// Logits at the configuration spacing → segmentation in the original image grid
// (nnU-Net convert_predicted_logits_to_segmentation_with_correct_shape, §8 step 8.1–8.4).
// Writing the file (spacing, origin, direction) belongs to io.

import { copyBox } from './tiles.ts';
import { prod } from '../util/numeric.ts';
import { fromHalfBits, toHalfBits } from '../util/float16.ts';

type Shape3 = [number, number, number];

/**
 * Resamples (K, Z, Y, X) logits, `fromShape` = [K, Z, Y, X], to the spatial `toShape`. nnU-Net
 * uses resample_data_or_seg_to_shape with order 1 and order_z 0 (separate-z rule): the predictor
 * should inject that (preprocess/resample.ts); `linearResampleLogits` is a simple stand-in.
 */
export type ResampleLogits = (
  logits: Float32Array,
  fromShape: readonly number[],
  toShape: readonly number[],
  fromSpacing: readonly number[],
  toSpacing: readonly number[],
) => Float32Array;

export interface ExportProperties {
  /** Reader spacing, (z, y, x) before transposition. */
  spacing: readonly number[];
  shape_before_cropping: readonly number[];
  /** Half-open [start, end) per axis, in the transposed frame (as shape_before_cropping). */
  bbox_used_for_cropping: readonly (readonly [number, number])[];
  shape_after_cropping_and_before_resampling: readonly number[];
}

export interface ExportOptions {
  /** Configuration spacing: 3 entries for 3d, 2 for 2d (axis 0 then keeps the case spacing). */
  configSpacing: readonly number[];
  transposeForward: readonly number[];
  transposeBackward: readonly number[];
  /** Defaults to linearResampleLogits (not nnU-Net's resampler: inject the real one). */
  resample?: ResampleLogits;
  /** Region training: channel i is region i; label regionsClassOrder[i] where sigmoid > 0.5, later wins. */
  regionsClassOrder?: readonly number[];
  /**
   * Store the resampled logits as fp16, as nnU-Net does (resample_data_or_seg keeps the dtype of
   * its input, and nnU-Net's blended logits are fp16). The float32 result is rounded once more to
   * fp16 (numpy rounds the float64 directly: the two differ only on exact fp16 ties).
   */
  fp16Resampled?: boolean;
  /**
   * Also return probabilities (softmax, or sigmoid for regions, in float32) in the original grid,
   * as nnU-Net's save_probabilities: background channel 1 outside the crop (0 for regions); the
   * segmentation is then the argmax of the probabilities, as nnU-Net computes it in that mode.
   */
  returnProbabilities?: boolean;
}

export interface Segmentation {
  data: Uint8Array | Uint16Array;
  /** (Z, Y, X) in the original (untransposed) numpy order. */
  shape: Shape3;
  /** (K, Z, Y, X) float32 probabilities, same order as `data` (only with returnProbabilities). */
  probabilities?: { data: Float32Array; shape: [number, number, number, number] };
}

/** Softmax over channels of (K, N) in place, per voxel: max-shifted exp, sum, divide (as torch). */
export function softmaxChannels(x: Float32Array, K: number, n: number): Float32Array {
  const e = new Float64Array(K);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let k = 0; k < K; k++) m = Math.max(m, x[k * n + i]);
    let sum = 0;
    for (let k = 0; k < K; k++) {
      e[k] = Math.fround(Math.exp(x[k * n + i] - m));
      sum += e[k];
    }
    sum = Math.fround(sum);
    for (let k = 0; k < K; k++) x[k * n + i] = e[k] / sum;
  }
  return x;
}

/** Argmax over channels of (K, N); ties go to the lowest index, as numpy. */
export function argmaxChannels(logits: Float32Array, K: number, n: number): Uint16Array {
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    let best = logits[i];
    let arg = 0;
    for (let k = 1; k < K; k++) {
      const v = logits[k * n + i];
      if (v > best || (Number.isNaN(v) && !Number.isNaN(best))) {
        best = v;
        arg = k;
        if (Number.isNaN(v)) break; // numpy's argmax returns the first NaN
      }
    }
    out[i] = arg;
  }
  return out;
}

/** Region segmentation: for each region channel in order, write its label where sigmoid(logit) > 0.5. */
export function regionsToSegmentation(
  logits: Float32Array,
  order: readonly number[],
  n: number,
): Uint16Array {
  const out = new Uint16Array(n);
  order.forEach((label, i) => {
    for (let v = 0; v < n; v++) {
      // Sigmoid in float32 as torch: a tiny positive logit gives exactly 0.5, which is not > 0.5.
      if (Math.fround(1 / (1 + Math.exp(-logits[i * n + v]))) > 0.5) out[v] = label;
    }
  });
  return out;
}

/** Transposes a 3-D C-order array: out.shape[i] = shape[perm[i]] (numpy's a.transpose(perm)). */
export function transpose3<T extends Uint8Array | Uint16Array | Float32Array>(
  src: T,
  shape: readonly number[],
  perm: readonly number[],
): { data: T; shape: Shape3 } {
  const outShape: Shape3 = [shape[perm[0]], shape[perm[1]], shape[perm[2]]];
  if (perm[0] === 0 && perm[1] === 1 && perm[2] === 2) return { data: src, shape: outShape };
  const inStride = [shape[1] * shape[2], shape[2], 1];
  const s0 = inStride[perm[0]],
    s1 = inStride[perm[1]],
    s2 = inStride[perm[2]];
  const out = new (src.constructor as new (n: number) => T)(src.length);
  let o = 0;
  for (let a = 0; a < outShape[0]; a++) {
    for (let b = 0; b < outShape[1]; b++) {
      const base = a * s0 + b * s1;
      for (let c = 0; c < outShape[2]; c++) out[o++] = src[base + c * s2];
    }
  }
  return { data: out, shape: outShape };
}

/**
 * Logits (K, Z, Y, X) at the configuration spacing → segmentation of the original image:
 * resample the logits, argmax (or regions), put into a background array of shape_before_cropping
 * at the bbox, transpose back. uint8 unless a label ≥ 255 is present (SimpleITKIO.write_seg).
 */
export function logitsToSegmentation(
  logits: Float32Array,
  logitsShape: readonly number[],
  props: ExportProperties,
  opts: ExportOptions,
): Segmentation {
  const [K, ...spatial] = logitsShape;
  if (spatial.length !== 3 || logits.length !== prod(logitsShape))
    throw new Error('logitsToSegmentation: logits must be (K, Z, Y, X)');
  const fwd = opts.transposeForward;
  const targetSpacing = fwd.map((i) => props.spacing[i]);
  const fromSpacing =
    opts.configSpacing.length === 3
      ? [...opts.configSpacing]
      : [targetSpacing[0], ...opts.configSpacing];
  const cropShape = [...props.shape_after_cropping_and_before_resampling];
  const resample = opts.resample ?? linearResampleLogits;
  const same = cropShape.every((s, i) => s === spatial[i]);
  let res = same ? logits : resample(logits, logitsShape, cropShape, fromSpacing, targetSpacing);
  const n = prod(cropShape);
  if (res.length !== K * n)
    throw new Error(`resample returned ${res.length} values, expected ${K}·${n}`);
  if (opts.fp16Resampled && !same) {
    for (let i = 0; i < res.length; i++) res[i] = fromHalfBits(toHalfBits(res[i]));
  }

  let probs: Float32Array | null = null;
  if (opts.returnProbabilities) {
    probs = res === logits ? Float32Array.from(res) : res;
    if (opts.regionsClassOrder) {
      for (let i = 0; i < probs.length; i++) probs[i] = 1 / (1 + Math.exp(-probs[i]));
    } else softmaxChannels(probs, K, n);
    res = probs;
  }
  const seg = opts.regionsClassOrder
    ? probs
      ? regionsFromProbabilities(probs, opts.regionsClassOrder, n)
      : regionsToSegmentation(res, opts.regionsClassOrder, n)
    : argmaxChannels(res, K, n);

  const full = props.shape_before_cropping;
  const bbox = props.bbox_used_for_cropping;
  bbox.forEach(([lo, hi], i) => {
    if (hi - lo !== cropShape[i] || lo < 0 || hi > full[i])
      throw new Error(`bbox ${JSON.stringify(bbox)} does not fit the crop ${cropShape} in ${full}`);
  });
  const uncropped = new Float32Array(prod(full)); // labels < 2^16 are exact in float32
  copyBox(
    Float32Array.from(seg),
    cropShape,
    [0, 0, 0],
    uncropped,
    full,
    bbox.map(([lo]) => lo),
    cropShape,
  );

  let max = 0;
  for (const v of seg) if (v > max) max = v;
  const typed = max < 255 ? Uint8Array.from(uncropped) : Uint16Array.from(uncropped);
  const t = transpose3(typed, full, opts.transposeBackward);
  if (!probs) return { data: t.data, shape: t.shape };

  // revert_cropping_on_probabilities, then the transpose back, channel by channel
  const nFull = prod(full);
  const out = new Float32Array(K * nFull);
  for (let k = 0; k < K; k++) {
    const ch = new Float32Array(nFull);
    if (k === 0 && !opts.regionsClassOrder) ch.fill(1);
    copyBox(
      probs.subarray(k * n, (k + 1) * n),
      cropShape,
      [0, 0, 0],
      ch,
      full,
      bbox.map(([lo]) => lo),
      cropShape,
    );
    out.set(transpose3(ch, full, opts.transposeBackward).data, k * nFull);
  }
  return {
    data: t.data,
    shape: t.shape,
    probabilities: { data: out, shape: [K, ...t.shape] },
  };
}

/** Region segmentation from probabilities: label where p > 0.5, later regions win (nnU-Net). */
function regionsFromProbabilities(
  probs: Float32Array,
  order: readonly number[],
  n: number,
): Uint16Array {
  const out = new Uint16Array(n);
  order.forEach((label, i) => {
    for (let v = 0; v < n; v++) if (probs[i * n + v] > 0.5) out[v] = label;
  });
  return out;
}

/**
 * Stand-in resampler: per-channel trilinear with pixel-centre alignment (as skimage resize
 * order 1 with edge clamping). Not nnU-Net's: no separate-z handling.
 */
export const linearResampleLogits: ResampleLogits = (logits, fromShape, toShape) => {
  const [K, Z, Y, X] = fromShape;
  const [z2, y2, x2] = toShape;
  const axis = (nIn: number, nOut: number): { i0: Int32Array; i1: Int32Array; w: Float64Array } => {
    const i0 = new Int32Array(nOut),
      i1 = new Int32Array(nOut),
      w = new Float64Array(nOut);
    for (let o = 0; o < nOut; o++) {
      const p = Math.min(Math.max((o + 0.5) * (nIn / nOut) - 0.5, 0), nIn - 1);
      i0[o] = Math.floor(p);
      i1[o] = Math.min(i0[o] + 1, nIn - 1);
      w[o] = p - i0[o];
    }
    return { i0, i1, w };
  };
  const az = axis(Z, z2),
    ay = axis(Y, y2),
    ax = axis(X, x2);
  const nIn = Z * Y * X,
    nOut = z2 * y2 * x2;
  const out = new Float32Array(K * nOut);
  const at = (k: number, z: number, y: number, x: number): number =>
    logits[k * nIn + (z * Y + y) * X + x];
  for (let k = 0; k < K; k++) {
    let o = k * nOut;
    for (let z = 0; z < z2; z++) {
      const za = az.i0[z],
        zb = az.i1[z],
        wz = az.w[z];
      for (let y = 0; y < y2; y++) {
        const ya = ay.i0[y],
          yb = ay.i1[y],
          wy = ay.w[y];
        for (let x = 0; x < x2; x++) {
          const xa = ax.i0[x],
            xb = ax.i1[x],
            wx = ax.w[x];
          const lerpX = (zz: number, yy: number): number =>
            at(k, zz, yy, xa) * (1 - wx) + at(k, zz, yy, xb) * wx;
          const lerpY = (zz: number): number => lerpX(zz, ya) * (1 - wy) + lerpX(zz, yb) * wy;
          out[o++] = lerpY(za) * (1 - wz) + lerpY(zb) * wz;
        }
      }
    }
  }
  return out;
};
