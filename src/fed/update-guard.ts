// What one site's update may do to the global model, and when a round ends (issue 15: a site
// holding the join token must not be able to poison or stall the federation). Pure functions and
// constants the coordinator calls; the aggregation rules themselves live in aggregate.ts.
//
// - Absolute bound from round 1: every plain update is clipped to `maxUpdateNorm` (C) before it is
//   averaged, so one site moves the mean by at most C·w_i/Σw per round, whatever it sends. We clip
//   rather than refuse: an honest site whose update is larger than expected still contributes
//   (in its direction), and clipping is what secure rounds already do on the site (privacy.clip).
//   The relative filter (normFactor × the median of accepted norms) still refuses gross outliers
//   once there is a history; it sees clipped norms only, so one huge update cannot poison it.
// - Case counts: an update's numCases may not exceed the count the site declared when it joined,
//   and weights are capped at MAX_CASE_WEIGHT (secure rounds' maxWeight), so a claimed 2^52 cases
//   cannot make one site the whole mean.
// - A round always ends: refused sites count as answered, and at the deadline a round closes with
//   what it accepted (possibly nothing: the global model is kept) as long as any site is connected.
import {
  RobustMean,
  StreamingMean,
  UpdateRejected,
  robustBytes,
  ROBUST_MAX_BYTES,
  type UpdateAggregator,
} from './aggregate.ts';
import type { FederationConfig } from './protocol.ts';
import type { WeightSpec } from '../model/named-weights.ts';

/**
 * Default C for plain rounds, the same as secure rounds' default clip. For a 3D nnU-Net (~3·10^7
 * parameters), a round that changes every weight by 0.01 RMS has a delta of norm ≈ 55, so honest
 * rounds pass unclipped or lightly clipped while one site's pull stays bounded.
 */
export const DEFAULT_MAX_UPDATE_NORM = 100;
/** Largest weight of one site under `cases` weighting (secure rounds' default maxWeight). */
export const MAX_CASE_WEIGHT = 1000;

/** The norm bound C a federation's updates are held to. */
export function updateNormBound(
  config: Pick<FederationConfig, 'maxUpdateNorm' | 'privacy'>,
): number {
  return config.privacy?.clip ?? config.maxUpdateNorm ?? DEFAULT_MAX_UPDATE_NORM;
}

/** Checks the aggregation options of a config (`secure`: secure aggregation on, or asked for at start); throws with the option's name. */
export function checkAggregationConfig(
  config: Pick<FederationConfig, 'maxUpdateNorm' | 'robust' | 'privacy' | 'weighting'>,
  secure = !!config.privacy,
): void {
  const c = config.maxUpdateNorm;
  if (c !== undefined && !(c > 0 && Number.isFinite(c)))
    throw new Error(`the maximum update norm must be a positive number, got ${c}`);
  if (c !== undefined && secure)
    throw new Error(
      'secure aggregation clips each update on its site to the clip norm (--clip); a separate maximum update norm does not apply',
    );
  if (config.robust !== undefined) {
    if (config.robust !== 'trimmed-mean' && config.robust !== 'median')
      throw new Error(
        `robust aggregation must be 'trimmed-mean' or 'median', got '${String(config.robust)}'`,
      );
    if (secure)
      throw new Error(
        'robust aggregation needs every update in the clear; secure aggregation only reveals their sum',
      );
    if (config.weighting !== 'uniform')
      throw new Error('robust aggregation is unweighted: use --weighting uniform');
  }
}

/** Why a round of `sites` updates of `spec` cannot be aggregated under `config` (robust memory), or undefined. */
export function aggregatorProblem(
  config: Pick<FederationConfig, 'robust'>,
  spec: WeightSpec,
  sites: number,
  maxBytes = ROBUST_MAX_BYTES,
): string | undefined {
  if (!config.robust) return undefined;
  const bytes = robustBytes(spec, sites);
  if (bytes <= maxBytes) return undefined;
  return `robust aggregation (${config.robust}) holds every update of a round: ${sites} sites need ${(bytes / 2 ** 30).toFixed(2)} GiB, over the ${(maxBytes / 2 ** 30).toFixed(2)} GiB limit; use fewer sites or the plain mean`;
}

/** A fresh aggregator for one round. */
export function newAggregator(
  config: Pick<FederationConfig, 'robust'>,
  spec: WeightSpec,
  sites: number,
): UpdateAggregator {
  return config.robust ? new RobustMean(spec, config.robust, sites) : new StreamingMean(spec);
}

/**
 * A site's weight under the config's weighting: its update's case count, which may not exceed what
 * it declared at join (`declared`, 0 when it hid it), capped at MAX_CASE_WEIGHT.
 */
export function caseWeight(
  config: Pick<FederationConfig, 'weighting'>,
  claimed: number,
  declared: number,
): number {
  if (config.weighting !== 'cases') return 1;
  if (!Number.isSafeInteger(claimed) || claimed < 0)
    throw new UpdateRejected(`numCases must be a non-negative integer, got ${claimed}`);
  if (claimed > declared)
    throw new UpdateRejected(
      `numCases ${claimed} exceeds the ${declared} cases this site declared when it joined`,
    );
  return Math.min(MAX_CASE_WEIGHT, Math.max(1, claimed));
}

export interface GuardedUpdate {
  /** Factor the update is multiplied by (≤ 1: the clip). */
  scale: number;
  /** Its norm before and after the clip. */
  norm: number;
  clipped: number;
}

/**
 * The clip of an update of norm `norm` to the bound C, after the relative check against the
 * median of earlier accepted (clipped) norms. Throws UpdateRejected for an outlier.
 */
export function guardNorm(
  norm: number,
  bound: number,
  acceptedNorms: readonly number[],
  normFactor: number,
  median: (v: readonly number[]) => number,
): GuardedUpdate {
  if (acceptedNorms.length >= 2) {
    const ref = median(acceptedNorms);
    if (norm > normFactor * ref)
      throw new UpdateRejected(
        `update norm ${norm.toPrecision(3)} is over ${normFactor}× the median ${ref.toPrecision(3)}`,
      );
  }
  const scale = norm > bound ? bound / norm : 1;
  return { scale, norm, clipped: Math.min(norm, bound) };
}

/** The state of an open plain round, as the close rule sees it. */
export interface RoundState {
  /** Sites connected now. */
  present: readonly string[];
  accepted: ReadonlySet<string>;
  refused: ReadonlySet<string>;
  minSites: number;
  pastDeadline: boolean;
}

/**
 * When a plain round closes: 'all' once every connected site answered (accepted or refused) and
 * the quorum was accepted; 'deadline' at the deadline with the quorum, or, short of it, with what
 * was accepted while any site is connected (a round nobody can finish must not stall the
 * federation; with nobody connected it waits for sites to come back). undefined = stays open.
 */
export function roundCloses(s: RoundState): 'all' | 'deadline' | undefined {
  const allAnswered =
    s.present.length > 0 && s.present.every((id) => s.accepted.has(id) || s.refused.has(id));
  const quorum = s.accepted.size >= s.minSites;
  if (allAnswered && quorum) return 'all';
  if (s.pastDeadline && (quorum || s.present.length > 0)) return 'deadline';
  return undefined;
}
