// The model vector of a secure round: a site's clipped, weighted delta (plus its share of the DP
// noise) in fixed point, followed by its weight, as uint32 words. The relay only ever unmasks the
// sum of these vectors, so it learns Σ w_i·x_i and Σ w_i, never one site's x_i or w_i.
//
// Layout (the shared spec's order, which the relay sent to every site): for each tensor of the
// shared spec its elements, then one word holding the integer weight w_i. Length = params + 1.
//
// Element bound B (what `fracBits` is chosen for): without DP, w ≤ W (maxWeight, 1 under uniform
// weighting) and |x_k| ≤ ‖x‖ ≤ C, so |w·x_k| ≤ W·C. With DP (uniform weighting only), x_k plus
// Gaussian noise of std σC/√m is clamped to ±C(1 + 8σ/√m): a clamp beyond 8 standard deviations
// (probability < 1.3e-15 per element) that keeps the fixed-point sum from wrapping.
import type { FederationConfig, PrivacyConfig } from '../protocol.ts';
import { type NamedWeights, type WeightSpec } from '../../model/named-weights.ts';
import { prod } from '../../util/numeric.ts';
import { checkHeadroom } from './quantize.ts';

/** Sites whose noise shares make up σ·C: the fewest masked vectors a round may close with. */
export function noiseDivisor(
  config: Pick<FederationConfig, 'minSites'> & { privacy?: Pick<PrivacyConfig, 'threshold'> },
): number {
  return Math.max(config.privacy?.threshold ?? 1, config.minSites);
}

/** Largest |value| a site puts into one element of its vector (before the ×2^f scaling). */
export function elementBound(
  p: Pick<PrivacyConfig, 'clip' | 'maxWeight' | 'dp'>,
  weighting: FederationConfig['weighting'],
  divisor: number,
): number {
  if (p.dp) return p.clip * (1 + (8 * p.dp.noiseMultiplier) / Math.sqrt(divisor));
  return p.clip * (weighting === 'cases' ? p.maxWeight : 1);
}

/** The most fractional bits (at most 24) with which n sites' sums of |v| ≤ bound cannot overflow int32. */
export function chooseFracBits(n: number, bound: number): number {
  for (let f = 24; f >= 0; f--) {
    if (n * (bound * 2 ** f + 0.5) < 2 ** 31) return f;
  }
  throw new Error(
    `${n} sites with values up to ${bound} cannot be summed in 32-bit fixed point; lower the clip norm or the maximum weight`,
  );
}

export function vectorLength(spec: WeightSpec): number {
  return spec.reduce((a, e) => a + prod(e.shape), 0) + 1;
}

export interface SiteVectorOptions {
  clip: number;
  fracBits: number;
  /** Integer weight w ≥ 1 of this site. */
  weight: number;
  /** Largest |value| per element (clamp), from `elementBound`. */
  bound: number;
  /** Per-element Gaussian noise std added after clipping (DP), or 0. */
  noiseStd: number;
  /** Standard normal samples (DP): fills `out`. Injected so tests can count or seed them. */
  gaussian?: (out: Float64Array) => void;
}

/** q(w·(clip(x) + noise)) for the shared spec's tensors, then w. Returns the vector and ‖x‖. */
export function encodeSiteVector(
  delta: NamedWeights,
  spec: WeightSpec,
  o: SiteVectorOptions,
): { vector: Uint32Array; norm: number } {
  if (!Number.isInteger(o.weight) || o.weight < 1)
    throw new Error(`weight must be a positive integer, got ${o.weight}`);
  if (o.noiseStd > 0 && !o.gaussian) throw new Error('noise requested without a Gaussian source');
  let s = 0;
  for (const { name, shape } of spec) {
    const t = delta.get(name);
    if (!t || t.data.length !== prod(shape))
      throw new Error(`delta lacks '${name}' of shape [${shape}]`);
    for (let i = 0; i < t.data.length; i++) {
      const v = t.data[i];
      if (!Number.isFinite(v)) throw new Error(`'${name}' contains NaN or Inf`);
      s += v * v;
    }
  }
  const norm = Math.sqrt(s);
  const scale = (norm > o.clip ? o.clip / norm : 1) * o.weight;
  const k = 2 ** o.fracBits;
  const out = new Uint32Array(vectorLength(spec));
  const noise = new Float64Array(o.noiseStd > 0 ? 65536 : 0);
  let at = 0;
  let nAt = noise.length;
  for (const { name } of spec) {
    const d = delta.get(name)!.data;
    for (let i = 0; i < d.length; i++) {
      let v = d[i] * scale;
      if (o.noiseStd > 0) {
        if (nAt === noise.length) {
          o.gaussian!(noise);
          nAt = 0;
        }
        v += noise[nAt++] * o.noiseStd;
      }
      v = Math.min(o.bound, Math.max(-o.bound, v));
      out[at++] = Math.round(v * k) >>> 0;
    }
  }
  out[at] = o.weight;
  return { vector: out, norm };
}

/**
 * The relay's side: the unmasked sum → the weighted mean delta (float32 per tensor) and Σ w.
 * Each site's rounding is at most 2^-(f+1), so the mean is within n·2^-(f+1)/Σw of the exact
 * weighted mean of the clipped (noised) deltas, before the final float32 rounding.
 */
export function decodeSum(
  sum: Uint32Array,
  spec: WeightSpec,
  fracBits: number,
): { mean: NamedWeights; totalWeight: number } {
  if (sum.length !== vectorLength(spec))
    throw new Error(`sum of ${sum.length} words, the spec needs ${vectorLength(spec)}`);
  const totalWeight = sum[sum.length - 1];
  if (totalWeight < 1) throw new Error('the summed weight is zero: no site contributed');
  const k = 2 ** fracBits;
  const mean: NamedWeights = new Map();
  let at = 0;
  for (const { name, shape } of spec) {
    const data = new Float32Array(prod(shape));
    for (let i = 0; i < data.length; i++) data[i] = (sum[at++] | 0) / k / totalWeight;
    mean.set(name, { shape: [...shape], data });
  }
  return { mean, totalWeight };
}

/** Checks the config's quantisation against a round of n sites (each site does, before masking). */
export function checkRoundHeadroom(
  p: PrivacyConfig,
  weighting: FederationConfig['weighting'],
  divisor: number,
  n: number,
): void {
  const bound = elementBound(p, weighting, divisor);
  checkHeadroom({ fracBits: p.fracBits, clip: bound }, n);
}
