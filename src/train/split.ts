// Train/validation split of case identifiers (spec §7.2).
//
// Deviation: nnU-Net's splits_final.json comes from sklearn KFold(shuffle=True, random_state=12345)
// whose permutation (numpy MT19937) a TS implementation cannot reproduce. We offer nnU-Net's other
// two modes: fold 'all' (train = val = all cases) and the fallback it uses for a fold beyond the
// split file, a seeded random 80:20 split — drawn with mulberry32, not numpy's RandomState.
import { sampleWithoutReplacement } from '../preprocess/preprocess.ts';
import { mulberry32 } from '../util/rng.ts';

export type SplitMode = 'all' | 'random80';

export interface CaseSplit {
  train: string[];
  val: string[];
}

/**
 * 'all': both lists are every id (sorted). 'random80': int(0.8·n) ids drawn without replacement
 * from the sorted ids for training, the rest for validation; needs at least 2 cases.
 */
export function splitCases(ids: readonly string[], mode: SplitMode, seed = 12345): CaseSplit {
  const keys = [...ids].sort();
  if (keys.length === 0) throw new Error('no cases to split');
  if (new Set(keys).size !== keys.length) throw new Error('case ids are not unique');
  if (mode === 'all') return { train: keys, val: [...keys] };
  const nTrain = Math.trunc(keys.length * 0.8);
  if (nTrain < 1 || nTrain === keys.length) {
    throw new Error(
      `an 80:20 split of ${keys.length} case(s) leaves ${nTrain === 0 ? 'no training' : 'no validation'} case; use fold 'all'`,
    );
  }
  const idx = new Set(sampleWithoutReplacement(keys.length, nTrain, mulberry32(seed)));
  return { train: keys.filter((_, i) => idx.has(i)), val: keys.filter((_, i) => !idx.has(i)) };
}
