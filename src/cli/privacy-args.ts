// The secure-aggregation / DP options shared by `fednnunet relay` and `fednnunet simulate`.
import { UsageError } from './args.ts';
import type { FederationConfig, PrivacyConfig } from '../fed/protocol.ts';
import { defaultThreshold, privacyConfig } from '../fed/secagg/config.ts';
import { errorMessage } from '../util/errors.ts';

export interface PrivacyArgs {
  'secure-agg'?: boolean;
  threshold?: string;
  clip?: string;
  'phase-deadline-s'?: string;
  'dp-epsilon'?: string;
  'dp-delta'?: string;
  'allow-minority-threshold'?: boolean;
}

/** Their parseArgs declarations, spread into each command's options. */
export const PRIVACY_OPTIONS = {
  'secure-agg': { type: 'boolean' },
  threshold: { type: 'string' },
  clip: { type: 'string' },
  'phase-deadline-s': { type: 'string' },
  'dp-epsilon': { type: 'string' },
  'dp-delta': { type: 'string' },
  'allow-minority-threshold': { type: 'boolean' },
} as const;

function positive(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n))
    throw new UsageError(`--${name} must be a positive number, got '${v}'`);
  return n;
}

/** The PrivacyConfig the options ask for, or undefined (plain federation). */
export function privacyFromArgs(
  a: PrivacyArgs,
  sites: number,
  fed: Pick<FederationConfig, 'rounds' | 'weighting' | 'minSites'>,
): PrivacyConfig | undefined {
  const dp = a['dp-epsilon'] !== undefined;
  const wantsSecure = a['secure-agg'] || dp;
  for (const k of ['threshold', 'clip', 'phase-deadline-s', 'dp-delta'] as const) {
    if (!wantsSecure && a[k] !== undefined)
      throw new UsageError(`--${k} only applies with --secure-agg or --dp-epsilon`);
  }
  if (!wantsSecure) return undefined;
  const threshold = a.threshold === undefined ? undefined : Number(a.threshold);
  if (threshold !== undefined && !Number.isInteger(threshold))
    throw new UsageError(`--threshold must be an integer, got '${a.threshold}'`);
  // Below a majority, fewer sites colluding with the relay can unmask one site's update, and two
  // disjoint groups of survivors could each reach the threshold: an explicit choice only.
  if (
    threshold !== undefined &&
    threshold < defaultThreshold(sites) &&
    !a['allow-minority-threshold']
  ) {
    throw new UsageError(
      `--threshold ${threshold} is below a majority of ${sites} sites (${defaultThreshold(sites)}): then ${threshold} colluding sites with the relay can unmask another site's update. Add --allow-minority-threshold to accept that`,
    );
  }
  const phase = positive('phase-deadline-s', a['phase-deadline-s']);
  try {
    return privacyConfig(sites, fed, {
      threshold,
      clip: positive('clip', a.clip),
      dpEpsilon: positive('dp-epsilon', a['dp-epsilon']),
      dpDelta: positive('dp-delta', a['dp-delta']),
      phaseDeadlineMs: phase === undefined ? undefined : Math.round(phase * 1000),
    });
  } catch (e) {
    throw new UsageError(errorMessage(e));
  }
}

export function describePrivacy(p: PrivacyConfig, sites: number): string {
  const lines = [
    `secure aggregation: threshold ${p.threshold} of ${sites} sites, clip ${p.clip}, ${p.fracBits} fractional bits`,
  ];
  if (p.dp)
    lines.push(
      `differential privacy: target ε = ${p.dp.epsilon}, δ = ${p.dp.delta}; noise multiplier σ = ${p.dp.noiseMultiplier.toFixed(4)} (std σ·C = ${(p.dp.noiseMultiplier * p.clip).toPrecision(4)} on the sum)`,
    );
  return lines.join('\n');
}
