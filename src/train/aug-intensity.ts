// Image-only transforms of nnU-Net's training pipeline (spec §7.7 steps 4–10), per sample, in place
// on a (C, ...spatial) float32 array. Each `apply*` takes explicit parameters (testable, exact);
// each `random*` draws them the way batchgeneratorsv2 does and then applies.
import { resizeLinear, resizeNearestExact } from './resize.ts';
import { type Rng, as3d, gaussianPair, uniform } from './util.ts';
import { prod, roundHalfEven } from '../util/numeric.ts';

/** BGContrast(lo, hi): with p 0.5 (when lo < 1) U(lo, 1), else U(max(lo, 1), hi). */
export function bgContrast(rng: Rng, lo: number, hi: number): number {
  if (rng() < 0.5 && lo < 1) return uniform(rng, lo, 1);
  return uniform(rng, Math.max(lo, 1), hi);
}

// ---- Gaussian noise (p 0.1): one σ ~ U(0, 0.1) and one noise field shared by all channels ----

export function applyGaussianNoise(
  img: Float32Array,
  channels: number,
  sigma: number,
  rng: Rng,
): void {
  const vol = img.length / channels;
  const pair = new Float64Array(2);
  for (let v = 0; v < vol; v += 2) {
    gaussianPair(rng, pair);
    for (let k = 0; k < 2 && v + k < vol; k++) {
      const n = pair[k] * sigma;
      for (let c = 0; c < channels; c++) img[c * vol + v + k] += n;
    }
  }
}

export function randomGaussianNoise(img: Float32Array, channels: number, rng: Rng): void {
  applyGaussianNoise(img, channels, uniform(rng, 0, 0.1), rng);
}

// ---- Gaussian blur (p 0.2): each channel with p 0.5, σ per axis ~ U(0.5, 1) ----

/** Upstream _round_to_nearest_odd (round is half-to-even). */
function roundToNearestOdd(n: number): number {
  const r = roundHalfEven(n);
  if (Math.abs(r % 2) === 1) return r;
  return n - r >= 0 ? r + 1 : r - 1;
}

/** Normalised 1D Gaussian, size = nearest odd of round(σ·truncate + 0.5) (truncate 6 as upstream calls it). */
export function gaussianKernel(sigma: number, truncate = 6): Float64Array {
  const size = roundToNearestOdd(sigma * truncate + 0.5);
  const half = (size - 1) / 2;
  const k = new Float64Array(size);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const x = -half + i;
    k[i] = Math.exp(-0.5 * (x / sigma) ** 2);
    sum += k[i];
  }
  for (let i = 0; i < size; i++) k[i] /= sum;
  return k;
}

/** torch 'reflect' padding index (edge not repeated), folded again for pads longer than the axis. */
function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let j = ((i % period) + period) % period;
  if (j >= n) j = period - j;
  return j;
}

/** Convolves one channel (at `off`, shape (Z, Y, X)) along `axis` with reflect padding. */
export function blurAxis(
  img: Float32Array,
  off: number,
  shape: readonly [number, number, number],
  axis: number,
  kernel: Float64Array,
): void {
  const n = shape[axis];
  const stride = axis === 2 ? 1 : axis === 1 ? shape[2] : shape[1] * shape[2];
  const half = (kernel.length - 1) / 2;
  const k = kernel.length;
  const padded = new Float32Array(n + 2 * half);
  const src = new Int32Array(n + 2 * half); // reflected source offset of every padded position
  for (let i = 0; i < src.length; i++) src[i] = reflect(i - half, n) * stride;
  const outer = (shape[0] * shape[1] * shape[2]) / (n * stride);
  for (let a = 0; a < outer; a++) {
    for (let b = 0; b < stride; b++) {
      const base = off + a * n * stride + b;
      for (let i = 0; i < padded.length; i++) padded[i] = img[base + src[i]];
      for (let i = 0; i < n; i++) {
        let acc = 0;
        for (let t = 0; t < k; t++) acc += kernel[t] * padded[i + t];
        img[base + i * stride] = acc;
      }
    }
  }
}

export function applyGaussianBlur(
  img: Float32Array,
  channels: number,
  spatial: readonly number[],
  sigmas: (number[] | null)[],
): void {
  const s3 = as3d(spatial);
  const vol = prod(s3);
  const firstAxis = 3 - spatial.length; // 2D data: skip the padded Z axis
  for (let c = 0; c < channels; c++) {
    const sg = sigmas[c];
    if (!sg) continue;
    for (let d = 0; d < spatial.length; d++)
      blurAxis(img, c * vol, s3, firstAxis + d, gaussianKernel(sg[d]));
  }
}

export function randomGaussianBlur(
  img: Float32Array,
  channels: number,
  spatial: readonly number[],
  rng: Rng,
): void {
  const apply = Array.from({ length: channels }, () => rng() < 0.5);
  const sigmas = apply.map((a) => (a ? spatial.map(() => uniform(rng, 0.5, 1)) : null));
  applyGaussianBlur(img, channels, spatial, sigmas);
}

// ---- Multiplicative brightness (p 0.15) and contrast (p 0.15), per channel, BGContrast(0.75, 1.25) ----

export function applyBrightness(
  img: Float32Array,
  channels: number,
  multipliers: readonly number[],
): void {
  const vol = img.length / channels;
  for (let c = 0; c < channels; c++) {
    const m = multipliers[c];
    for (let i = c * vol; i < (c + 1) * vol; i++) img[i] *= m;
  }
}

export function randomBrightness(img: Float32Array, channels: number, rng: Rng): void {
  applyBrightness(
    img,
    channels,
    Array.from({ length: channels }, () => bgContrast(rng, 0.75, 1.25)),
  );
}

/** x = (x − mean)·f + mean, clamped to the channel's original [min, max] (preserve_range). */
export function applyContrast(
  img: Float32Array,
  channels: number,
  factors: readonly number[],
): void {
  const vol = img.length / channels;
  for (let c = 0; c < channels; c++) {
    let sum = 0,
      mn = Infinity,
      mx = -Infinity;
    for (let i = c * vol; i < (c + 1) * vol; i++) {
      const v = img[i];
      sum += v;
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    const mean = sum / vol;
    const f = factors[c];
    for (let i = c * vol; i < (c + 1) * vol; i++)
      img[i] = Math.min(mx, Math.max(mn, (img[i] - mean) * f + mean));
  }
}

export function randomContrast(img: Float32Array, channels: number, rng: Rng): void {
  applyContrast(
    img,
    channels,
    Array.from({ length: channels }, () => bgContrast(rng, 0.75, 1.25)),
  );
}

// ---- Simulate low resolution (p 0.25): each channel with p 0.5, one scale U(0.5, 1) for all axes ----

/**
 * Nearest-exact down to round(shape·scale) then (bi/tri)linear back up. `ignoreAxes` (spatial
 * indices) keep their size: dummy-2D passes [0].
 */
export function applyLowResolution(
  img: Float32Array,
  channels: number,
  spatial: readonly number[],
  scales: (number | null)[],
  ignoreAxes: readonly number[] = [],
): void {
  const s3 = as3d(spatial);
  const vol = prod(s3);
  const lead = 3 - spatial.length;
  for (let c = 0; c < channels; c++) {
    const sc = scales[c];
    if (sc === null) continue;
    const small = s3.map((s, d) =>
      d < lead || ignoreAxes.includes(d - lead) ? s : Math.max(1, roundHalfEven(s * sc)),
    ) as [number, number, number];
    const chan = img.subarray(c * vol, (c + 1) * vol);
    const down = resizeNearestExact(chan, 1, s3, small, new Float32Array(prod(small)));
    resizeLinear(down, 0, small, s3, img, c * vol);
  }
}

export function randomLowResolution(
  img: Float32Array,
  channels: number,
  spatial: readonly number[],
  rng: Rng,
  ignoreAxes: readonly number[] = [],
): void {
  const apply = Array.from({ length: channels }, () => rng() < 0.5);
  applyLowResolution(
    img,
    channels,
    spatial,
    apply.map((a) => (a ? uniform(rng, 0.5, 1) : null)),
    ignoreAxes,
  );
}

// ---- Gamma (p 0.1 with inversion, p 0.3 without): γ by BGContrast(0.7, 1.5), stats retained ----

/** Mean and torch's unbiased (ddof 1) std of img[from, to). */
function meanStd(img: Float32Array, from: number, to: number): [number, number] {
  const n = to - from;
  let sum = 0;
  for (let i = from; i < to; i++) sum += img[i];
  const mean = sum / n;
  let ss = 0;
  for (let i = from; i < to; i++) {
    const d = img[i] - mean;
    ss += d * d;
  }
  return [mean, n > 1 ? Math.sqrt(ss / (n - 1)) : NaN];
}

export function applyGamma(
  img: Float32Array,
  channels: number,
  gammas: readonly number[],
  invert: boolean,
): void {
  const vol = img.length / channels;
  for (let c = 0; c < channels; c++) {
    const a = c * vol,
      b = (c + 1) * vol;
    const g = gammas[c];
    if (invert) for (let i = a; i < b; i++) img[i] = -img[i];
    const [mean, std] = meanStd(img, a, b);
    let mn = Infinity,
      mx = -Infinity;
    for (let i = a; i < b; i++) {
      if (img[i] < mn) mn = img[i];
      if (img[i] > mx) mx = img[i];
    }
    const range = mx - mn;
    const denom = Math.max(range, 1e-7);
    for (let i = a; i < b; i++) img[i] = ((img[i] - mn) / denom) ** g * range + mn;
    const [mHere, sHere] = meanStd(img, a, b);
    const k = std / Math.max(sHere, 1e-7);
    for (let i = a; i < b; i++) img[i] = (img[i] - mHere) * k + mean;
    if (invert) for (let i = a; i < b; i++) img[i] = -img[i];
  }
}

export function randomGamma(img: Float32Array, channels: number, invert: boolean, rng: Rng): void {
  applyGamma(
    img,
    channels,
    Array.from({ length: channels }, () => bgContrast(rng, 0.7, 1.5)),
    invert,
  );
}
