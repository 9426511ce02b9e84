// Gaussian-mechanism accounting for federated rounds with Rényi DP (Mironov 2017).
// Setting: every site takes part every round (sampling rate 1, no amplification), each site's
// update is clipped to L2 norm C, and the aggregate gets Gaussian noise of std σ·C (σ is the
// noise multiplier). With secure aggregation the noise can be split across n sites, each adding
// N(0, σ²C²/n), so the sum carries N(0, σ²C²) while no single party sees an un-noised update
// (`siteNoiseStd`). Caveat: noise added before fixed-point rounding is not exactly the continuous
// Gaussian mechanism; a formal guarantee for the quantised pipeline needs the discrete Gaussian.
//
// One round: RDP_α = α / (2σ²) (sensitivity C, noise σC). R rounds compose additively:
// R·α/(2σ²). Conversion to (ε, δ): ε = min_α [R·α/(2σ²) + log(1/δ)/(α − 1)].
// For reference, over continuous α the minimum is ε* = ρ + 2√(ρ·log(1/δ)), ρ = R/(2σ²), at
// α* = 1 + √(log(1/δ)/ρ); a grid minimum is never below it.

/** Orders α: Opacus' default grid (1.1..10.9 by 0.1, then 12..63) extended to large α. */
export const DEFAULT_ALPHAS: readonly number[] = [
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 52 }, (_, i) => 12 + i),
  128,
  256,
  512,
  1024,
];

function checkArgs(sigma: number, rounds: number, delta: number): void {
  if (!(sigma > 0) || !Number.isFinite(sigma))
    throw new Error(`noise multiplier must be positive, got ${sigma}`);
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new Error(`rounds must be a positive integer, got ${rounds}`);
  if (!(delta > 0 && delta < 1)) throw new Error(`delta must be in (0, 1), got ${delta}`);
}

/** RDP of R rounds of the Gaussian mechanism with noise multiplier σ at order α. */
export function gaussianRdp(sigma: number, rounds: number, alpha: number): number {
  return (rounds * alpha) / (2 * sigma * sigma);
}

/** (ε, best α) for R rounds at noise multiplier σ and the given δ, minimised over `alphas`. */
export function epsilon(
  sigma: number,
  rounds: number,
  delta: number,
  alphas: readonly number[] = DEFAULT_ALPHAS,
): { epsilon: number; alpha: number } {
  checkArgs(sigma, rounds, delta);
  let best = { epsilon: Infinity, alpha: Number.NaN };
  for (const a of alphas) {
    if (!(a > 1)) continue;
    const e = gaussianRdp(sigma, rounds, a) + Math.log(1 / delta) / (a - 1);
    if (e < best.epsilon) best = { epsilon: e, alpha: a };
  }
  return best;
}

/**
 * (ε, best α) after rounds with different noise multipliers σ_r (a round where more sites than
 * the noise divisor survived carries more noise): RDP Σ_r α/(2σ_r²), the same conversion.
 */
export function epsilonOfRounds(
  sigmas: readonly number[],
  delta: number,
  alphas: readonly number[] = DEFAULT_ALPHAS,
): { epsilon: number; alpha: number } {
  if (sigmas.length === 0) return { epsilon: 0, alpha: Number.NaN };
  for (const s of sigmas) checkArgs(s, 1, delta);
  const rho = sigmas.reduce((a, s) => a + 1 / (2 * s * s), 0);
  let best = { epsilon: Infinity, alpha: Number.NaN };
  for (const a of alphas) {
    if (!(a > 1)) continue;
    const e = rho * a + Math.log(1 / delta) / (a - 1);
    if (e < best.epsilon) best = { epsilon: e, alpha: a };
  }
  return best;
}

/**
 * Smallest noise multiplier σ (to relative precision `tol`) whose ε over R rounds at δ is at
 * most `targetEpsilon`. ε is decreasing in σ, so bisection on σ.
 */
export function noiseMultiplier(
  targetEpsilon: number,
  delta: number,
  rounds: number,
  alphas: readonly number[] = DEFAULT_ALPHAS,
  tol = 1e-6,
): number {
  if (!(targetEpsilon > 0) || !Number.isFinite(targetEpsilon))
    throw new Error(`target epsilon must be positive, got ${targetEpsilon}`);
  checkArgs(1, rounds, delta);
  let lo = 1e-3;
  let hi = 1;
  while (epsilon(hi, rounds, delta, alphas).epsilon > targetEpsilon) {
    hi *= 2;
    if (hi > 1e9) throw new Error('target epsilon unreachable');
  }
  if (epsilon(lo, rounds, delta, alphas).epsilon <= targetEpsilon) return lo;
  while ((hi - lo) / hi > tol) {
    const mid = (lo + hi) / 2;
    if (epsilon(mid, rounds, delta, alphas).epsilon <= targetEpsilon) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** Per-site Gaussian std so that the sum over n sites has std σ·C. */
export function siteNoiseStd(sigma: number, clip: number, n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new Error(`n must be a positive integer, got ${n}`);
  return (sigma * clip) / Math.sqrt(n);
}
