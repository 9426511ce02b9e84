// `--init-model DIR` (relay, simulate): a pretrained model on disk as the federation's initial
// global model — an nnU-Net v2 results folder (one fold's checkpoint) or this app's model folder.
import { basename, resolve } from 'node:path';
import { fsSource } from './fs-source.ts';
import { readModelFolder } from './model-folder-fs.ts';
import { findNnUNetModels, foldsWith, readNnUNetModel } from '../infer/nnunet-folds.ts';
import { initModelInfo, InitModelError } from '../fed/init-model.ts';
import type { FederationConfig, InitModelInfo } from '../fed/protocol.ts';
import type { NamedWeights } from '../model/named-weights.ts';

export interface LoadedInitModel {
  info: InitModelInfo;
  weights: NamedWeights;
  /** One line for the log: what was loaded. */
  summary: string;
}

/** Loads DIR as an initial model for a federation with `config` (fold: nnU-Net folders only). */
export async function loadInitModel(
  dir: string,
  config: Pick<FederationConfig, 'method' | 'configuration'>,
  fold?: number,
): Promise<LoadedInitModel> {
  const name = basename(resolve(dir));
  const src = fsSource(dir);
  const found = await findNnUNetModels(src).then(
    (l) => l.find((m) => m.dir === '' && foldsWith(m, 'checkpoint_final.pth').length),
    () => undefined, // not an nnU-Net results folder: read below as a model folder
  );
  if (found) {
    // One fold only (default: the lowest with a checkpoint_final.pth): a federation has one model.
    const first = foldsWith(found, 'checkpoint_final.pth')[0];
    const m = await readNnUNetModel(src, { found, folds: [fold ?? first] });
    const f = m.folds[0];
    const info = initModelInfo(config, {
      name: `${name} fold ${f.fold}`,
      plans: m.plans,
      configuration: m.configuration,
      datasetJson: m.datasetJson as never,
    });
    return {
      info,
      weights: f.weights,
      summary: `initial model: nnU-Net ${name}, fold ${f.fold} (epoch ${f.checkpoint.currentEpoch}, ${f.weights.size} tensors)`,
    };
  }
  if (fold !== undefined)
    throw new InitModelError('--init-fold applies to nnU-Net results folders only');
  const m = await readModelFolder(dir);
  const info = initModelInfo(config, { name, ...m });
  return {
    info,
    weights: m.weights,
    summary: `initial model: model folder ${name} (${m.provenance?.trained_by ?? 'unknown origin'}, ${m.weights.size} tensors)`,
  };
}
