// From raw cases (Volumes) to what the Trainer takes: dataset fingerprint, plans (nnU-Net's
// planner, or given), the chosen configuration (optionally the --tiny preset) and every case
// preprocessed in memory by runCase. Used by `fednnunet train` and the tests; the browser's
// train worker can call it on cases read from IndexedDB.
import { caseFingerprint } from '../fingerprint/case.ts';
import { datasetFingerprint } from '../fingerprint/dataset.ts';
import type { DatasetFingerprint } from '../fingerprint/types.ts';
import type { Volume } from '../io/volume.ts';
import { planExperiment } from '../plan/planner.ts';
import type { ConfigurationPlan, DatasetJson, Plans } from '../plan/types.ts';
import { runCase, type PreprocessPlans } from '../preprocess/preprocess.ts';
import { tinyConfiguration, type TinyOptions } from './tiny.ts';
import { trainerCase, type TrainerCase } from './trainer.ts';

export interface RawTrainingCase {
  id: string;
  /** All channels stacked (see stackChannels). */
  image: Volume;
  label: Volume;
}

export interface PrepareOptions {
  /** nnU-Net's dataset folder name, e.g. Dataset801_PhantomMR (recorded in the plans). */
  datasetName: string;
  configuration: string;
  /** Given plans are used as they are; otherwise the dataset is fingerprinted and planned. */
  plans?: Plans;
  /** Replace the configuration's network and patch by the tiny preset (true: the defaults). */
  tiny?: boolean | TinyOptions;
  /** Called after each case is fingerprinted / preprocessed. */
  onProgress?: (stage: 'fingerprint' | 'preprocess', done: number, total: number) => void;
}

export interface PreparedTraining {
  fingerprint: DatasetFingerprint;
  /** The plans the run uses (with the tiny preset applied, if asked). */
  plans: Plans;
  cases: TrainerCase[];
}

/**
 * Fingerprints (always: the model folder records it), plans unless plans are given, applies the
 * tiny preset, and preprocesses every case with the configuration. `getCase(i)` may load lazily,
 * so only one raw case needs to be in memory at a time.
 */
export async function prepareTraining(
  n: number, getCase: (i: number) => Promise<RawTrainingCase> | RawTrainingCase, datasetJson: DatasetJson, opts: PrepareOptions,
): Promise<PreparedTraining> {
  if (n < 1) throw new Error('no training cases');
  const fps = [];
  for (let i = 0; i < n; i++) {
    const c = await getCase(i);
    fps.push(caseFingerprint(c.image, c.label));
    opts.onProgress?.('fingerprint', i + 1, n);
  }
  const fingerprint = datasetFingerprint(fps);
  const plans: Plans = structuredClone(opts.plans ?? planExperiment(fingerprint, datasetJson, { datasetName: opts.datasetName }));
  const configs = plans.configurations as Record<string, ConfigurationPlan | undefined>;
  const base = configs[opts.configuration];
  if (!base) throw new Error(`plans have no configuration '${opts.configuration}' (have: ${Object.keys(plans.configurations).join(', ')})`);
  if (opts.tiny) configs[opts.configuration] = tinyConfiguration(base, opts.tiny === true ? {} : opts.tiny);
  const cases: TrainerCase[] = [];
  for (let i = 0; i < n; i++) {
    const c = await getCase(i);
    const pre = runCase(c.image, c.label, plans as unknown as PreprocessPlans, opts.configuration, datasetJson);
    cases.push(trainerCase(c.id, pre));
    opts.onProgress?.('preprocess', i + 1, n);
  }
  return { fingerprint, plans, cases };
}
