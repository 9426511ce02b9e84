// The relay's choice of secure-aggregation and DP parameters (PrivacyConfig), made once before any
// site joins so every site quantises and lays out its vectors the same way.
import type { FederationConfig, PrivacyConfig } from '../protocol.ts';
import { noiseMultiplier } from './dp.ts';
import { chooseFracBits, elementBound, noiseDivisor } from './vector.ts';

export interface PrivacyOptions {
  /** Shamir threshold; default a majority, ⌊n/2⌋ + 1 (at least 2). */
  threshold?: number;
  /** L2 clip norm C of each site's delta (default 100 without DP; required with DP). */
  clip?: number;
  /** Target (ε, δ) over the planned rounds: turns on client-level DP. */
  dpEpsilon?: number;
  dpDelta?: number;
  maxWeight?: number;
  phaseDeadlineMs?: number;
  ffeCells?: number;
  ffeChannels?: number;
}

export const DEFAULT_CLIP = 100;
export const DEFAULT_DP_DELTA = 1e-5;

/**
 * Majority: it tolerates ⌈n/2⌉ − 1 sites dropping out of a round, and any t − 1 sites colluding
 * with the relay (fewer than half) still cannot unmask one site's update. It is also the
 * condition under which two disjoint groups of survivors can never both reach t.
 */
export function defaultThreshold(n: number): number {
  return Math.max(2, Math.floor(n / 2) + 1);
}

/** Validated privacy settings for a federation of `sites` sites and the given round settings. */
export function privacyConfig(
  sites: number,
  fed: Pick<FederationConfig, 'rounds' | 'weighting' | 'minSites'>,
  o: PrivacyOptions = {},
): PrivacyConfig {
  if (!Number.isInteger(sites) || sites < 2)
    throw new Error(`secure aggregation needs at least 2 sites, got ${sites}`);
  const threshold = o.threshold ?? defaultThreshold(sites);
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > sites)
    throw new Error(
      `threshold must be an integer in 2..${sites} (the number of sites), got ${threshold}`,
    );
  const dpOn = o.dpEpsilon !== undefined;
  if (!dpOn && o.dpDelta !== undefined)
    throw new Error('a DP delta without a DP epsilon: give the target epsilon too');
  if (dpOn && o.clip === undefined)
    throw new Error(
      'differential privacy needs an explicit clip norm C (--clip): the noise is σ·C',
    );
  if (dpOn && fed.weighting !== 'uniform')
    throw new Error(
      "differential privacy needs uniform weighting (each site's contribution is bounded by the clip norm, not by its case count)",
    );
  const clip = o.clip ?? DEFAULT_CLIP;
  if (!(clip > 0) || !Number.isFinite(clip))
    throw new Error(`clip norm must be positive, got ${clip}`);
  const maxWeight = o.maxWeight ?? 1000;
  let dp: PrivacyConfig['dp'];
  if (dpOn) {
    const delta = o.dpDelta ?? DEFAULT_DP_DELTA;
    if (!(o.dpEpsilon! > 0) || !Number.isFinite(o.dpEpsilon))
      throw new Error(`DP epsilon must be positive, got ${o.dpEpsilon}`);
    if (!(delta > 0 && delta < 1)) throw new Error(`DP delta must be in (0, 1), got ${delta}`);
    dp = {
      epsilon: o.dpEpsilon!,
      delta,
      noiseMultiplier: noiseMultiplier(o.dpEpsilon!, delta, fed.rounds),
    };
  }
  const base = { clip, maxWeight, dp };
  const divisor = noiseDivisor({ minSites: fed.minSites, privacy: { threshold } });
  const fracBits = chooseFracBits(sites, elementBound(base, fed.weighting, divisor));
  return {
    secureAggregation: true,
    threshold,
    clip,
    fracBits,
    maxWeight,
    phaseDeadlineMs: o.phaseDeadlineMs ?? 120_000,
    ffeCells: o.ffeCells ?? 3072,
    ffeChannels: o.ffeChannels ?? 4,
    ...(dp ? { dp } : {}),
  };
}

/**
 * Checks what can be checked of `o` before the number of sites is known (the workshop host fixes
 * the config when it starts, from the sites present then): the same rules as privacyConfig, run
 * for the smallest federation the options allow. Throws with privacyConfig's messages.
 */
export function checkPrivacyOptions(
  fed: Pick<FederationConfig, 'rounds' | 'weighting' | 'minSites'>,
  o: PrivacyOptions,
): void {
  if (o.threshold !== undefined && !(Number.isInteger(o.threshold) && o.threshold >= 2))
    throw new Error(`threshold must be an integer of at least 2, got ${o.threshold}`);
  privacyConfig(o.threshold ?? 2, { ...fed, minSites: 1 }, o);
}

/** The fields of a form (the workshop host card): secure aggregation on/off and optional DP. */
export interface PrivacyFields {
  secure: boolean;
  /** Empty = no DP. */
  epsilon: string;
  /** Empty = the default δ. */
  delta: string;
  /** Empty = the default clip norm (required with DP). */
  clip: string;
}

/** The options a form asks for, or undefined (plain federation); a clear error for bad input. */
export function privacyOptionsFromFields(f: PrivacyFields): PrivacyOptions | undefined {
  const num = (name: string, v: string): number | undefined => {
    const s = v.trim();
    if (s === '') return undefined;
    const x = Number(s);
    if (!(x > 0) || !Number.isFinite(x))
      throw new Error(`${name} must be a positive number, got '${s}'`);
    return x;
  };
  const dpEpsilon = num('DP ε', f.epsilon);
  const dpDelta = num('DP δ', f.delta);
  const clip = num('clip norm', f.clip);
  if (!f.secure) {
    if (dpEpsilon !== undefined)
      throw new Error(
        'differential privacy here needs secure aggregation (the sites split the noise): tick "Secure aggregation" or clear ε',
      );
    return undefined;
  }
  if (dpEpsilon !== undefined && clip === undefined)
    throw new Error(
      "differential privacy needs a clip norm C: every site's update is clipped to it and the noise is σ·C",
    );
  return {
    ...(clip !== undefined ? { clip } : {}),
    ...(dpEpsilon !== undefined ? { dpEpsilon } : {}),
    ...(dpEpsilon !== undefined && dpDelta !== undefined ? { dpDelta } : {}),
  };
}

/** A canonical text of a privacy config (key order fixed), to pin and compare. */
function canonical(p: object | undefined): string {
  if (!p) return 'none';
  const sorted = (v: unknown): unknown =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([k, x]) => [k, sorted(x)]),
        )
      : v;
  return JSON.stringify(sorted(p));
}

/**
 * Why a site must refuse a welcome whose privacy settings differ from those it first joined under
 * (a relay restarted with other options, or one downgrading secure aggregation), or undefined.
 */
export function privacyChange(
  pinned: PrivacyConfig | undefined,
  now: PrivacyConfig | undefined,
): string | undefined {
  if (canonical(pinned) === canonical(now)) return undefined;
  const what = (p: PrivacyConfig | undefined) =>
    p
      ? `secure aggregation (threshold ${p.threshold}, clip ${p.clip}${p.dp ? `, DP ε = ${p.dp.epsilon}, δ = ${p.dp.delta}` : ', no DP'})`
      : 'no secure aggregation';
  const detail =
    pinned &&
    now &&
    pinned.threshold === now.threshold &&
    pinned.clip === now.clip &&
    canonical(pinned.dp) === canonical(now.dp)
      ? ' (other secure-aggregation parameters changed)'
      : '';
  return `the relay's privacy settings changed since this site joined: it joined under ${what(pinned)}, the relay now asks for ${what(now)}${detail}. This site refuses to continue; leave this federation and join a new one if the change is intended`;
}
