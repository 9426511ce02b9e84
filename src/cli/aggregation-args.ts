// The aggregation-safety options shared by `fednnunet relay` and `fednnunet simulate`
// (src/fed/update-guard.ts, docs/security.md).
import { UsageError } from './args.ts';
import type { FederationConfig } from '../fed/protocol.ts';
import { checkAggregationConfig, DEFAULT_MAX_UPDATE_NORM } from '../fed/update-guard.ts';
import { errorMessage } from '../util/errors.ts';

export interface AggregationArgs {
  'max-update-norm'?: string;
  robust?: string;
}

export const AGGREGATION_OPTIONS = {
  'max-update-norm': { type: 'string' },
  robust: { type: 'string' },
} as const;

export const AGGREGATION_HELP = `update bounds (docs/security.md):
  --max-update-norm C  clip every plain update to L2 norm C (default ${DEFAULT_MAX_UPDATE_NORM}; secure rounds use --clip)
  --robust R           trimmed-mean | median: coordinate-wise robust aggregation of plain rounds
                       (unweighted; holds every update of a round: sites × 4 bytes × parameters)`;

/** Adds the options to `config` (after its privacy is set); a UsageError names the bad one. */
export function applyAggregationArgs(a: AggregationArgs, config: FederationConfig): void {
  if (a['max-update-norm'] !== undefined) {
    const c = Number(a['max-update-norm']);
    if (!(c > 0) || !Number.isFinite(c))
      throw new UsageError(
        `--max-update-norm must be a positive number, got '${a['max-update-norm']}'`,
      );
    config.maxUpdateNorm = c;
  }
  if (a.robust !== undefined) {
    if (a.robust !== 'trimmed-mean' && a.robust !== 'median')
      throw new UsageError(`--robust must be trimmed-mean or median, got '${a.robust}'`);
    config.robust = a.robust;
  }
  try {
    checkAggregationConfig(config);
  } catch (e) {
    throw new UsageError(errorMessage(e));
  }
}
