// Gaussian importance map for sliding-window blending (nnU-Net compute_gaussian, §8 step 4).
//
// nnU-Net blurs a delta at tile//2 with scipy.ndimage.gaussian_filter(sigma = tile/8, mode
// 'constant', truncate 4), scales it to max 10 in float64, casts to fp16 and replaces exact zeros
// by the smallest nonzero value. A blurred delta is separable: scipy's pass along axis a multiplies
// the running value by that axis' kernel weight (one nonzero term per output sum, so no rounding
// beyond the products), which is what we compute, in the same axis order, in float64.

import { numpySum } from '../util/numpy-sum.ts';

/** scipy's _gaussian_kernel1d(sigma, order 0, radius): normalised exp(-x²/2σ²) on [-radius, radius]. */
export function gaussianKernel1d(sigma: number, radius: number): number[] {
  const c = -0.5 / (sigma * sigma);
  const phi: number[] = [];
  for (let x = -radius; x <= radius; x++) phi.push(Math.exp(c * (x * x)));
  const s = numpySum(phi);
  return phi.map((v) => v / s);
}

/** scipy gaussian_filter1d's default radius: int(truncate·σ + 0.5). */
export function gaussianRadius(sigma: number, truncate = 4): number {
  return Math.trunc(truncate * sigma + 0.5);
}

/** Rounds a float64 to the nearest fp16 value (ties to even), directly, without a float32 step. */
export function roundToHalf(v: number): number {
  if (v === 0 || !Number.isFinite(v)) return v;
  const a = Math.abs(v);
  if (a >= 65520) return Math.sign(v) * Infinity; // halfway to 2^16 rounds up to Inf
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -14) - 10); // subnormals share the exponent -14 spacing
  const q = a / ulp; // exact: scaling by a power of two
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  return Math.sign(v) * r * ulp;
}

/** Weights of the blurred delta along one axis of length `tile` (zero beyond the kernel radius). */
function axisWeights(tile: number, sigmaScale: number): Float64Array {
  const sigma = tile * sigmaScale;
  const radius = gaussianRadius(sigma);
  const k = gaussianKernel1d(sigma, radius);
  const centre = Math.floor(tile / 2);
  const w = new Float64Array(tile);
  for (let i = 0; i < tile; i++) {
    const d = i - centre;
    if (Math.abs(d) <= radius) w[i] = k[d + radius];
  }
  return w;
}

/** The importance map (fp16 values held in a Float32Array, C-order over `tile`), uncached. */
export function computeGaussian(
  tile: readonly number[],
  sigmaScale = 1 / 8,
  valueScale = 10,
): Float32Array {
  if (tile.length === 0 || tile.some((t) => !(t >= 1)))
    throw new Error(`computeGaussian: bad tile ${tile}`);
  const ws = tile.map((t) => axisWeights(t, sigmaScale));
  const n = tile.reduce((a, b) => a * b, 1);
  const g = new Float64Array(n).fill(1);
  // Multiply axis by axis, axis 0 first, as the sequence of 1-D filter passes does.
  let inner = n;
  for (let a = 0; a < tile.length; a++) {
    inner /= tile[a];
    const w = ws[a];
    for (let i = 0; i < n; i++) g[i] *= w[Math.floor(i / inner) % tile[a]];
  }
  let max = 0;
  for (let i = 0; i < n; i++) if (g[i] > max) max = g[i];
  const out = new Float32Array(n);
  let minNonzero = Infinity;
  for (let i = 0; i < n; i++) {
    const h = roundToHalf((g[i] / max) * valueScale);
    out[i] = h;
    if (h !== 0 && h < minNonzero) minNonzero = h;
  }
  // A zero weight would give 0/0 where only that tile covers a voxel.
  for (let i = 0; i < n; i++) if (out[i] === 0) out[i] = minNonzero;
  return out;
}

// nnU-Net caches with lru_cache(maxsize=2); a few tile sizes per session is all we ever see.
const cache = new Map<string, Float32Array>();
const CACHE_SIZE = 4;

/** Cached importance map for a tile size. Callers must not modify the returned array. */
export function gaussianImportanceMap(tile: readonly number[]): Float32Array {
  const key = tile.join('x');
  let g = cache.get(key);
  if (g) {
    cache.delete(key); // refresh LRU position
  } else {
    g = computeGaussian(tile);
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  }
  cache.set(key, g);
  return g;
}
