// Loading the reference planner inputs/outputs (test/reference) for the planner, FFE and CLI tests.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DatasetFingerprint } from '../../src/fingerprint/types.ts';
import type { DatasetJson, Plans } from '../../src/plan/types.ts';
import { REFERENCE } from '../paths.ts';

export const readJson = <T = unknown>(path: string): T =>
  JSON.parse(readFileSync(path, 'utf8')) as T;

export const PHANTOMS = [
  'Dataset801_PhantomMR',
  'Dataset802_PhantomCTaniso',
  'Dataset803_PhantomMR2ch',
  'Dataset804_PhantomMRsiteB',
] as const;
export const PLANNER_ONLY = [
  'Dataset811_PlanOnlyCTlarge',
  'Dataset812_PlanOnlyAnisoLastAxis',
  'Dataset813_PlanOnlyProstate2ch',
  'Dataset814_PlanOnly2D',
] as const;
export const FED_CLIENTS = ['Dataset801_PhantomMR', 'Dataset804_PhantomMRsiteB'] as const;

export interface PlannerCase {
  name: string;
  datasetName: string;
  fingerprint: DatasetFingerprint;
  dataset: DatasetJson;
  plans: Plans;
  trace: {
    fullres_target_spacing_before_transpose: number[];
    transpose_forward: number[];
    transpose_backward: number[];
    static_estimate_VRAM_usage_calls_in_order: unknown[];
  };
}

export function plannerCases(): PlannerCase[] {
  const local = readJson<Record<string, PlannerCase['trace']>>(
    join(REFERENCE, 'planner_trace', 'local.json'),
  );
  const only = readJson<Record<string, PlannerCase['trace']>>(
    join(REFERENCE, 'planner_trace', 'planner_only.json'),
  );
  const fed = readJson<Record<string, PlannerCase['trace']>>(
    join(REFERENCE, 'planner_trace', 'fed_801_804.json'),
  );
  const out: PlannerCase[] = [];
  for (const d of PHANTOMS) {
    out.push({
      name: `local ${d}`,
      datasetName: d,
      fingerprint: readJson(join(REFERENCE, 'fingerprints', d, 'dataset_fingerprint.json')),
      dataset: readJson(join(REFERENCE, 'raw', d, 'dataset.json')),
      plans: readJson(join(REFERENCE, 'plans', d, 'nnUNetPlans.json')),
      trace: local[d],
    });
  }
  for (const d of PLANNER_ONLY) {
    const dir = join(REFERENCE, 'planner_only', d);
    out.push({
      name: `planner_only ${d}`,
      datasetName: d,
      fingerprint: readJson(join(dir, 'dataset_fingerprint.json')),
      dataset: readJson(join(dir, 'dataset.json')),
      plans: readJson(join(dir, 'nnUNetPlans.json')),
      trace: only[d],
    });
  }
  const agg = readJson<DatasetFingerprint>(
    join(REFERENCE, 'federated', 'fed_801_804', 'aggregated_dataset_fingerprint.json'),
  );
  for (const d of FED_CLIENTS) {
    out.push({
      name: `FFE {801,804} ${d}`,
      datasetName: d,
      fingerprint: agg,
      dataset: readJson(join(REFERENCE, 'raw', d, 'dataset.json')),
      plans: readJson(join(REFERENCE, 'federated', 'fed_801_804', d, 'nnUNetPlans.json')),
      trace: fed[d],
    });
  }
  return out;
}
