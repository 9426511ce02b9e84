// nnU-Net's evaluation (evaluate_predictions.py, §9): per-case TP/FP/FN/TN, Dice and IoU per
// foreground label or region, with the ignore label masked out, and summary.json's aggregation.

import { numpySum } from '../util/numpy-sum.ts';
import { pyJsonDumps } from './py-json.ts';

/** A label (int) or a region (union of labels; nnU-Net's tuple). */
export type LabelOrRegion = number | readonly number[];

export interface Metrics {
  Dice: number;
  FN: number;
  FP: number;
  IoU: number;
  TN: number;
  TP: number;
  n_pred: number;
  n_ref: number;
}

export const METRIC_NAMES = ['Dice', 'FN', 'FP', 'IoU', 'TN', 'TP', 'n_pred', 'n_ref'] as const;

export interface CaseResult {
  /** Keys from labelOrRegionKey. */
  metrics: Record<string, Metrics>;
  prediction_file: string;
  reference_file: string;
}

export interface Summary {
  foreground_mean: Metrics;
  mean: Record<string, Metrics>;
  metric_per_case: CaseResult[];
}

/** Python's str(label) or str(tuple): 1 → "1", [1, 2] → "(1, 2)", [3] → "(3,)". */
export function labelOrRegionKey(r: LabelOrRegion): string {
  if (typeof r === 'number') return String(r);
  return r.length === 1 ? `(${r[0]},)` : `(${r.join(', ')})`;
}

function memberTable(r: LabelOrRegion, maxValue: number): Uint8Array {
  const t = new Uint8Array(maxValue + 1);
  for (const l of typeof r === 'number' ? [r] : r) if (l >= 0 && l <= maxValue) t[l] = 1;
  return t;
}

/** Dice/IoU with nnU-Net's rule: both NaN when reference and prediction are both empty. */
export function metricsFromCounts(TP: number, FP: number, FN: number, TN: number): Metrics {
  const empty = TP + FP + FN === 0;
  return {
    Dice: empty ? NaN : (2 * TP) / (2 * TP + FP + FN),
    FN,
    FP,
    IoU: empty ? NaN : TP / (TP + FP + FN),
    TN,
    TP,
    n_pred: TP + FP,
    n_ref: TP + FN,
  };
}

/**
 * compute_metrics for one case: `reference` and `prediction` are integer label maps of equal
 * length (any layout, same for both). Voxels where the reference equals `ignoreLabel` are skipped.
 */
export function computeCaseMetrics(
  reference: ArrayLike<number>,
  prediction: ArrayLike<number>,
  labelsOrRegions: readonly LabelOrRegion[],
  ignoreLabel?: number | null,
): Record<string, Metrics> {
  const n = reference.length;
  if (prediction.length !== n)
    throw new Error(`computeCaseMetrics: reference ${n} vs prediction ${prediction.length} voxels`);
  let maxValue = 0;
  for (let i = 0; i < n; i++) maxValue = Math.max(maxValue, reference[i], prediction[i]);
  const out: Record<string, Metrics> = {};
  for (const r of labelsOrRegions) {
    const member = memberTable(r, maxValue);
    let TP = 0,
      FP = 0,
      FN = 0,
      TN = 0;
    for (let i = 0; i < n; i++) {
      const ref = reference[i];
      if (ignoreLabel != null && ref === ignoreLabel) continue;
      // Negative values (e.g. -1) are never members; the table covers 0..maxValue.
      const inRef = ref >= 0 && member[ref] === 1;
      const p = prediction[i];
      const inPred = p >= 0 && member[p] === 1;
      if (inRef) {
        if (inPred) TP++;
        else FN++;
      } else if (inPred) FP++;
      else TN++;
    }
    out[labelOrRegionKey(r)] = metricsFromCounts(TP, FP, FN, TN);
  }
  return out;
}

/** np.nanmean: NaNs count as 0 in numpy's pairwise sum, divided by the non-NaN count; all NaN → NaN. */
export function nanmean(values: readonly number[]): number {
  const k = values.filter((v) => !Number.isNaN(v)).length;
  return k === 0 ? NaN : numpySum(values.map((v) => (Number.isNaN(v) ? 0 : v))) / k;
}

/** np.mean: NaN if any value is NaN. */
function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : numpySum(values) / values.length;
}

/**
 * compute_metrics_on_folder's aggregation: mean[label][metric] = nanmean over cases (empty/empty
 * cases drop out), foreground_mean[metric] = plain mean over the label means without label 0.
 */
export function summarize(
  results: readonly CaseResult[],
  labelsOrRegions: readonly LabelOrRegion[],
): Summary {
  if (results.length === 0) throw new Error('summarize: no cases');
  const keys = labelsOrRegions.map(labelOrRegionKey);
  const meanOut: Record<string, Metrics> = {};
  for (const k of keys) {
    const m = {} as Metrics;
    for (const name of METRIC_NAMES) m[name] = nanmean(results.map((r) => r.metrics[k][name]));
    meanOut[k] = m;
  }
  const fg = {} as Metrics;
  for (const name of METRIC_NAMES)
    fg[name] = mean(keys.filter((k) => k !== '0').map((k) => meanOut[k][name]));
  return { foreground_mean: fg, mean: meanOut, metric_per_case: results.map((r) => ({ ...r })) };
}

/** One case for `summarize` (reference_file / prediction_file are just recorded). */
export function evaluateCase(
  reference: ArrayLike<number>,
  prediction: ArrayLike<number>,
  labelsOrRegions: readonly LabelOrRegion[],
  files: { reference_file: string; prediction_file: string },
  ignoreLabel?: number | null,
): CaseResult {
  return {
    metrics: computeCaseMetrics(reference, prediction, labelsOrRegions, ignoreLabel),
    ...files,
  };
}

/**
 * summary.json text as nnU-Net writes it: counts are ints per case; Dice/IoU and every mean are
 * floats (np.float64 → float), NaN written as NaN.
 */
export function summaryToJson(summary: Summary): string {
  return pyJsonDumps(
    summary,
    (path) =>
      path[0] !== 'metric_per_case' ||
      path[path.length - 1] === 'Dice' ||
      path[path.length - 1] === 'IoU',
  );
}
