import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ALPHAS,
  epsilon,
  gaussianRdp,
  noiseMultiplier,
  siteNoiseStd,
} from '../../src/fed/secagg/dp.ts';

const closedForm = (sigma: number, rounds: number, delta: number) => {
  const rho = rounds / (2 * sigma * sigma);
  return rho + 2 * Math.sqrt(rho * Math.log(1 / delta));
};

describe('secagg DP accountant (Gaussian, RDP, sampling rate 1)', () => {
  it('matches hand-computed values', () => {
    expect(gaussianRdp(1, 1, 2)).toBe(1); // α/(2σ²) = 2/2
    expect(gaussianRdp(2, 10, 4)).toBe(5); // 10·4/(2·4)
    // σ = 1, R = 1, δ = 1e-5, α = 2 only: 1 + ln(1e5) = 12.5129…
    expect(epsilon(1, 1, 1e-5, [2]).epsilon).toBeCloseTo(1 + Math.log(1e5), 10);
    expect(epsilon(1, 1, 1e-5, [2]).epsilon).toBeCloseTo(12.51293, 4);
    // σ = 1, R = 1, δ = 1e-5 over the grid: closed form 0.5 + 2·√(0.5·11.5129) = 5.29853, α* = 5.80
    const e = epsilon(1, 1, 1e-5);
    expect(e.alpha).toBeCloseTo(5.8, 5);
    expect(e.epsilon).toBeGreaterThanOrEqual(closedForm(1, 1, 1e-5));
    expect(e.epsilon).toBeCloseTo(5.29853, 3);
    // σ = 10, R = 100, δ = 1e-5: ρ = 0.5, same ε as above (ε depends on R/σ² only).
    expect(epsilon(10, 100, 1e-5).epsilon).toBeCloseTo(e.epsilon, 10);
  });

  it('the grid stays within 1% of the continuous optimum over a range of settings', () => {
    for (const [sigma, rounds, delta] of [
      [0.8, 50, 1e-5],
      [2, 200, 1e-6],
      [5, 10, 1e-3],
    ] as const) {
      const exact = closedForm(sigma, rounds, delta);
      const got = epsilon(sigma, rounds, delta).epsilon;
      expect(got).toBeGreaterThanOrEqual(exact - 1e-12);
      expect(got / exact).toBeLessThan(1.01);
    }
  });

  it('noiseMultiplier inverts epsilon and grows with the number of rounds', () => {
    const s = noiseMultiplier(5.29853, 1e-5, 1);
    expect(s).toBeCloseTo(1, 3);
    const s100 = noiseMultiplier(8, 1e-5, 100);
    expect(epsilon(s100, 100, 1e-5).epsilon).toBeLessThanOrEqual(8);
    expect(epsilon(s100 * 0.999, 100, 1e-5).epsilon).toBeGreaterThan(8);
    expect(noiseMultiplier(8, 1e-5, 400)).toBeGreaterThan(s100);
    // ε depends on R/σ²: 4× the rounds needs 2× the noise (up to the grid).
    expect(noiseMultiplier(8, 1e-5, 400) / s100).toBeCloseTo(2, 1);
    expect(DEFAULT_ALPHAS.every((a) => a > 1)).toBe(true);
  });

  it('splits the noise across sites so the sum has std σ·C', () => {
    const per = siteNoiseStd(1.5, 2, 9);
    expect(per).toBeCloseTo(1, 12);
    expect(Math.sqrt(9 * per * per)).toBeCloseTo(1.5 * 2, 12);
    expect(() => epsilon(0, 1, 1e-5)).toThrow();
    expect(() => noiseMultiplier(1, 2, 1)).toThrow();
  });
});
