// `--init-model DIR [--init-fold K]` (relay, simulate): start the federation from a pretrained
// model (fine-tuning), an nnU-Net v2 results folder or this app's model folder.
import { intOption, UsageError } from './args.ts';
import { loadInitModel } from '../node/init-model-fs.ts';
import type { FederationConfig } from '../fed/protocol.ts';
import type { NamedWeights } from '../model/named-weights.ts';
import { errorMessage } from '../util/errors.ts';

export const INIT_MODEL_OPTIONS = {
  'init-model': { type: 'string' },
  'init-fold': { type: 'string' },
} as const;

export const INIT_MODEL_HELP = `  --init-model DIR     start from a pretrained model (fine-tuning): an nnU-Net v2 results folder
                       (<Trainer>__<Plans>__<configuration>, one fold) or a model folder. FFE,
                       FedAvg and FedProx train its network with its plans (said when the pooled
                       plan would differ); asym shares the tensors whose name and shape match
  --init-fold K        the nnU-Net fold to start from (default: the lowest)`;

/** Loads --init-model into config.initModel; returns its weights (undefined without the flag). */
export async function initModelFromArgs(
  values: { 'init-model'?: string; 'init-fold'?: string },
  config: FederationConfig,
  log: (line: string) => void = console.log,
): Promise<NamedWeights | undefined> {
  const dir = values['init-model'];
  if (dir === undefined) {
    if (values['init-fold'] !== undefined) throw new UsageError('--init-fold needs --init-model');
    return undefined;
  }
  const fold =
    values['init-fold'] === undefined ? undefined : intOption('init-fold', values['init-fold'], 0);
  try {
    const m = await loadInitModel(dir, config, fold);
    config.initModel = m.info;
    log(m.summary);
    return m.weights;
  } catch (e) {
    throw new UsageError(`--init-model ${dir}: ${errorMessage(e)}`);
  }
}
