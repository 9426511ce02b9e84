// What the Predict tab says about a model beside every prediction: how it was trained (method,
// sites, rounds, iterations, validation Dice, from model.json's provenance) and whether a stored
// case was among its training cases. A 15-iteration demo model must not look like a clinical one,
// and a "good" result on a training case proves little. Pure (no DOM), unit-tested in Node.
import type { ModelProvenance } from '../model/model-folder.ts';

/** Below this many iterations per site a model is called a demo (nnU-Net trains 250 000). */
export const DEMO_ITERATIONS = 1000;

export interface TrainingCases {
  dataset: string;
  train: string[];
  val: string[];
}

export type CaseRole = 'training' | 'validation' | 'held-out';

function trainingCases(p: ModelProvenance | undefined): TrainingCases | undefined {
  const t = p?.training_cases as Partial<TrainingCases> | undefined;
  if (!t || typeof t.dataset !== 'string' || !Array.isArray(t.train) || !Array.isArray(t.val))
    return undefined;
  return { dataset: t.dataset, train: t.train.map(String), val: t.val.map(String) };
}

/**
 * A stored case's role for a model: trained on, validated on (seen in validation, not trained on),
 * or held out (another dataset, or not in either list). Undefined when the model does not record
 * its training cases (imported models, models trained before this was recorded).
 */
export function caseRole(
  p: ModelProvenance | undefined,
  datasetName: string,
  caseId: string,
): CaseRole | undefined {
  const t = trainingCases(p);
  if (!t) return undefined;
  if (t.dataset !== datasetName) return 'held-out';
  if (t.train.includes(caseId)) return 'training';
  if (t.val.includes(caseId)) return 'validation';
  return 'held-out';
}

export const CASE_ROLE_TEXT: Record<CaseRole, string> = {
  training: 'trained on',
  validation: 'validation case, not trained on',
  'held-out': 'held out',
};

const METHOD_NAMES: Record<string, string> = {
  local: 'trained at one site',
  ffe: 'federated (FFE)',
  asym: 'federated (AsymFedAvg)',
  fedavg: 'federated (FedAvg)',
  fedprox: 'federated (FedProx)',
};

export interface ProvenanceSummary {
  /** One line: how it was trained. */
  text: string;
  /** A caution in words when the model is a short demo, else undefined. */
  caution?: string;
}

export function describeProvenance(p: ModelProvenance | undefined): ProvenanceSummary {
  if (!p) return { text: 'How this model was trained is not recorded in its model.json.' };
  const parts: string[] = [];
  const m = p.method ? (METHOD_NAMES[p.method] ?? p.method) : undefined;
  parts.push(m ? `${m}, ${p.trained_by}` : p.trained_by);
  if (p.sites !== undefined) parts.push(`${p.sites} site${p.sites === 1 ? '' : 's'}`);
  if (p.rounds !== undefined) parts.push(`${p.rounds} round${p.rounds === 1 ? '' : 's'}`);
  if (p.epochs !== undefined) parts.push(`${p.epochs} epoch${p.epochs === 1 ? '' : 's'}`);
  if (p.iterations !== undefined) parts.push(`${p.iterations} iterations per site`);
  if (p.site) parts.push(`personalised for site ${p.site}`);
  parts.push(
    typeof p.validation_dice === 'number' && Number.isFinite(p.validation_dice)
      ? `validation Dice ${p.validation_dice.toFixed(2)}${p.validation ? ` (${p.validation})` : ''}`
      : 'no validation Dice recorded',
  );
  const out: ProvenanceSummary = { text: `Model: ${parts.join(', ')}.` };
  if (p.iterations !== undefined && p.iterations < DEMO_ITERATIONS)
    out.caution = `Trained for only ${p.iterations} iterations: a demonstration of the workflow, not a usable model. Expect wrong labels.`;
  return out;
}
