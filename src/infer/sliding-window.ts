// Sliding-window prediction with Gaussian blending (nnU-Net predict_sliding_window_return_logits).
//
// Deviation (documented): nnU-Net accumulates logits and weights in fp16 buffers; by default we
// accumulate in fp32 (more exact, and memory is per case, not per batch). `fp16Accumulation: true`
// emulates the fp16 buffers by rounding every buffer update and the final division to fp16.

import { axisCombinations, flipAxes } from './flip.ts';
import { gaussianImportanceMap } from './gaussian.ts';
import { padArray, paddingFor, slidingWindowSteps, unpadArray } from './tiles.ts';
import { toHalfBits, fromHalfBits } from '../util/float16.ts';

export { tilePositions, slidingWindowSteps, paddingFor, padArray, unpadArray } from './tiles.ts';
export { gaussianImportanceMap, computeGaussian } from './gaussian.ts';

export interface Tensor4 {
  data: Float32Array;
  /** (C, Z, Y, X), C-order. */
  shape: [number, number, number, number];
}

/**
 * Runs the network on `n` tiles laid out (n, C, ...patch) and resolves to logits (n, K, ...patch).
 * The batch buffer is reused by the caller after the promise settles.
 */
export type PredictTiles = (batch: Float32Array, n: number) => Promise<Float32Array>;

export interface SlidingWindowOptions {
  /** Tiles per predictTiles call (memory bound). Default 1. */
  tileBatch?: number;
  /** Tile overlap step as a fraction of the patch (nnU-Net default 0.5). */
  stepSize?: number;
  /** Gaussian blending (default true); false weights every tile voxel 1. */
  useGaussian?: boolean;
  /** Patch axes (0-based over the patch's own axes) to mirror for TTA; empty/undefined: none. */
  mirrorAxes?: readonly number[];
  /** Emulate nnU-Net's fp16 accumulation buffers (see file header). */
  fp16Accumulation?: boolean;
  /** Called after each batch with tiles done and total tiles. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

const half = (v: number): number => fromHalfBits(toHalfBits(v));

/** Tile origins (z, y, x) over the padded volume, in nnU-Net's order (axis 0 outermost). */
function tileOrigins(
  padded: readonly number[],
  box: readonly number[],
  twoD: boolean,
  stepSize: number,
): number[][] {
  const origins: number[][] = [];
  if (twoD) {
    const [ys, xs] = slidingWindowSteps(padded.slice(1), box.slice(1), stepSize);
    for (let z = 0; z < padded[0]; z++)
      for (const y of ys) for (const x of xs) origins.push([z, y, x]);
  } else {
    const [zs, ys, xs] = slidingWindowSteps(padded, box, stepSize);
    for (const z of zs) for (const y of ys) for (const x of xs) origins.push([z, y, x]);
  }
  return origins;
}

/**
 * Gaussian-weighted sliding-window logits for one preprocessed case. `patch` has 3 entries (3d
 * configurations) or 2 (2d: every slice of axis 0 is tiled in Y, X). Returns (K, Z, Y, X) logits
 * at the input's shape (padding removed).
 */
export async function slidingWindowPredict(
  volume: Tensor4,
  patch: readonly number[],
  numClasses: number,
  predictTiles: PredictTiles,
  opts: SlidingWindowOptions = {},
): Promise<Tensor4> {
  const {
    tileBatch = 1,
    stepSize = 0.5,
    useGaussian = true,
    fp16Accumulation = false,
    signal,
    onProgress,
  } = opts;
  const mirrorAxes = opts.mirrorAxes ?? [];
  const [C, Z, Y, X] = volume.shape;
  if (volume.data.length !== C * Z * Y * X)
    throw new Error('slidingWindowPredict: data length does not match shape');
  if (patch.length !== 2 && patch.length !== 3)
    throw new Error(`slidingWindowPredict: patch must have 2 or 3 axes, got ${patch.length}`);
  if (!(tileBatch >= 1) || !Number.isInteger(tileBatch))
    throw new Error(`slidingWindowPredict: bad tileBatch ${tileBatch}`);
  if (
    mirrorAxes.some((a) => !Number.isInteger(a) || a < 0 || a >= patch.length) ||
    new Set(mirrorAxes).size !== mirrorAxes.length
  ) {
    throw new Error(
      `slidingWindowPredict: mirror axes ${mirrorAxes} invalid for a ${patch.length}-d patch`,
    );
  }
  signal?.throwIfAborted();
  const twoD = patch.length === 2;
  const K = numClasses;

  // Pad the spatial axes the patch covers up to at least the patch.
  const pad = paddingFor(volume.shape, patch);
  const data = padArray(volume.data, volume.shape, pad);
  const [, Zp, Yp, Xp] = pad.shape;
  const box = twoD ? [1, patch[0], patch[1]] : [...patch]; // tile extent in (z, y, x)
  const [tz, ty, tx] = box;
  const tileVox = tz * ty * tx;
  const gauss = useGaussian ? gaussianImportanceMap(patch) : new Float32Array(tileVox).fill(1);

  const origins = tileOrigins([Zp, Yp, Xp], box, twoD, stepSize);
  const total = origins.length;
  const vox = Zp * Yp * Xp;
  const logits = new Float32Array(K * vox);
  const weights = new Float32Array(vox);
  const combos = axisCombinations(mirrorAxes);
  const batchIn = new Float32Array(Math.min(tileBatch, total) * C * tileVox);

  const run = async (input: Float32Array, n: number): Promise<Float32Array> => {
    signal?.throwIfAborted();
    const out = await predictTiles(input, n);
    if (out.length !== n * K * tileVox) {
      throw new Error(`predictTiles returned ${out.length} values, expected ${n}·${K}·${tileVox}`);
    }
    return out;
  };

  let done = 0;
  for (let b0 = 0; b0 < total; b0 += tileBatch) {
    const n = Math.min(tileBatch, total - b0);
    const input = batchIn.subarray(0, n * C * tileVox);
    for (let t = 0; t < n; t++) {
      const [oz, oy, ox] = origins[b0 + t];
      for (let c = 0; c < C; c++) {
        for (let z = 0; z < tz; z++) {
          for (let y = 0; y < ty; y++) {
            const src = ((c * Zp + oz + z) * Yp + oy + y) * Xp + ox;
            input.set(data.subarray(src, src + tx), ((t * C + c) * tz + z) * ty * tx + y * tx);
          }
        }
      }
    }
    // Plain prediction plus every mirrored one, flipped back, averaged as logits.
    const pred = Float32Array.from(await run(input, n));
    if (combos.length > 0) {
      for (const axes of combos) {
        const flipped = await run(flipAxes(input, n * C, patch, axes), n);
        const back = flipAxes(flipped, n * K, patch, axes);
        for (let i = 0; i < pred.length; i++) pred[i] += back[i];
      }
      const div = combos.length + 1;
      for (let i = 0; i < pred.length; i++) pred[i] /= div;
    }
    for (let t = 0; t < n; t++) {
      const [oz, oy, ox] = origins[b0 + t];
      for (let z = 0; z < tz; z++) {
        for (let y = 0; y < ty; y++) {
          const dst = ((oz + z) * Yp + oy + y) * Xp + ox;
          const g0 = (z * ty + y) * tx;
          for (let k = 0; k < K; k++) {
            const src = ((t * K + k) * tz + z) * ty * tx + y * tx;
            const base = k * vox + dst;
            if (fp16Accumulation) {
              for (let x = 0; x < tx; x++)
                logits[base + x] = half(
                  logits[base + x] + Math.fround(pred[src + x] * gauss[g0 + x]),
                );
            } else {
              for (let x = 0; x < tx; x++) logits[base + x] += pred[src + x] * gauss[g0 + x];
            }
          }
          if (fp16Accumulation)
            for (let x = 0; x < tx; x++) weights[dst + x] = half(weights[dst + x] + gauss[g0 + x]);
          else for (let x = 0; x < tx; x++) weights[dst + x] += gauss[g0 + x];
        }
      }
    }
    done += n;
    onProgress?.(done, total);
  }

  for (let k = 0; k < K; k++) {
    const base = k * vox;
    for (let i = 0; i < vox; i++) {
      const v = logits[base + i] / weights[i];
      logits[base + i] = fp16Accumulation ? half(v) : v;
      if (!Number.isFinite(logits[base + i])) {
        // As nnU-Net: an inf here means the fp16 buffers overflowed (or the net returned inf/NaN).
        throw new Error('slidingWindowPredict: non-finite value in the blended logits');
      }
    }
  }
  const outPaddedShape = [K, Zp, Yp, Xp];
  const slicer: [number, number][] = [[0, K], pad.slicer[1], pad.slicer[2], pad.slicer[3]];
  return { data: unpadArray(logits, outPaddedShape, slicer), shape: [K, Z, Y, X] };
}
