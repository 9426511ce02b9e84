import { describe, expect, it } from 'vitest';
import {
  computeCaseMetrics,
  evaluateCase,
  labelOrRegionKey,
  nanmean,
  summarize,
  summaryToJson,
  type LabelOrRegion,
} from '../../src/eval/metrics.ts';
import { pyFloatRepr, pyJsonDumps } from '../../src/eval/py-json.ts';
import { numpySum } from '../../src/util/numpy-sum.ts';

const labels: LabelOrRegion[] = [1, 2, [1, 2]];
// Three cases, ignore label 3 (reference voxel 5 of case a is ignored).
const cases = [
  { ref: [0, 1, 1, 2, 2, 3, 0, 1], pred: [0, 1, 0, 2, 1, 2, 1, 1], name: 'a' },
  { ref: [2, 0, 0, 0], pred: [0, 0, 0, 0], name: 'b' },
  { ref: [0, 0], pred: [1, 0], name: 'c' },
];
const results = cases.map((c) =>
  evaluateCase(
    c.ref,
    c.pred,
    labels,
    { reference_file: `ref/${c.name}.nii.gz`, prediction_file: `pred/${c.name}.nii.gz` },
    3,
  ),
);

describe('per-case metrics (§9)', () => {
  it('counts with the ignore label masked (hand-computed)', () => {
    const a = results[0].metrics;
    // label 1: ref {1,2,7}, pred {1,4,6,7}; voxel 5 ignored → TP 2, FP 2, FN 1, TN 2.
    expect(a['1']).toEqual({
      Dice: 4 / 7,
      FN: 1,
      FP: 2,
      IoU: 2 / 5,
      TN: 2,
      TP: 2,
      n_pred: 4,
      n_ref: 3,
    });
    // label 2: ref {3,4}, pred {3} (pred 2 at the ignored voxel 5 does not count) → TP 1, FN 1, TN 5.
    expect(a['2']).toEqual({
      Dice: 2 / 3,
      FN: 1,
      FP: 0,
      IoU: 1 / 2,
      TN: 5,
      TP: 1,
      n_pred: 1,
      n_ref: 2,
    });
    // region (1, 2): ref {1,2,3,4,7}, pred {1,3,4,6,7} → TP 4, FP 1, FN 1, TN 1.
    expect(a['(1, 2)']).toEqual({
      Dice: 0.8,
      FN: 1,
      FP: 1,
      IoU: 4 / 6,
      TN: 1,
      TP: 4,
      n_pred: 5,
      n_ref: 5,
    });
  });
  it('empty/empty gives NaN, empty reference with a prediction gives 0', () => {
    expect(results[1].metrics['1'].Dice).toBeNaN();
    expect(results[1].metrics['1'].IoU).toBeNaN();
    expect(results[1].metrics['1'].TN).toBe(4);
    expect(results[1].metrics['2']).toMatchObject({ Dice: 0, IoU: 0, FN: 1, n_ref: 1, n_pred: 0 });
    expect(results[2].metrics['1']).toMatchObject({ Dice: 0, IoU: 0, FP: 1 });
    expect(results[2].metrics['2'].Dice).toBeNaN();
  });
  it('keys as Python str()', () => {
    expect([1, [1, 2], [3], [1, 2, 3]].map(labelOrRegionKey)).toEqual([
      '1',
      '(1, 2)',
      '(3,)',
      '(1, 2, 3)',
    ]);
  });
  it('negative reference values are background; mismatched sizes throw', () => {
    expect(computeCaseMetrics([-1, 1], [0, 1], [1])['1']).toMatchObject({ TP: 1, TN: 1 });
    expect(() => computeCaseMetrics([0], [0, 1], [1])).toThrow();
  });
});

describe('summary (nanmean over cases, mean over labels)', () => {
  const s = summarize(results, labels);
  it('aggregates as nnU-Net (hand-computed)', () => {
    expect(s.mean['1'].Dice).toBeCloseTo((4 / 7 + 0) / 2, 15); // case b is NaN → dropped
    expect(s.mean['2'].Dice).toBeCloseTo((2 / 3 + 0) / 2, 15); // case c is NaN → dropped
    expect(s.mean['1'].TP).toBeCloseTo(2 / 3, 15); // counts are never NaN: mean over all 3
    expect(s.foreground_mean.Dice).toBeCloseTo((2 / 7 + 1 / 3 + 0.8 / 3) / 3, 15);
    expect(Object.keys(s.mean)).toEqual(['1', '2', '(1, 2)']);
    expect(s.metric_per_case.map((c) => c.prediction_file)).toEqual([
      'pred/a.nii.gz',
      'pred/b.nii.gz',
      'pred/c.nii.gz',
    ]);
  });
  it('a label NaN in every case makes its mean and the foreground mean NaN; label 0 is excluded', () => {
    const r = [evaluateCase([0, 0], [0, 0], [0, 1], { reference_file: 'r', prediction_file: 'p' })];
    const t = summarize(r, [0, 1]);
    expect(t.mean['1'].Dice).toBeNaN();
    expect(t.mean['0'].Dice).toBe(1);
    expect(t.foreground_mean.Dice).toBeNaN();
    expect(t.foreground_mean.TN).toBe(2); // only label 1 counted
  });
  it('summary.json text equals Python json.dumps(sort_keys=True, indent=4) of the same computation', () => {
    // Obtained with Debian numpy 1.24: compute_metrics / nanmean / mean as evaluate_predictions.py
    // (v2.6 NaN rule) on the three cases above, json.dumps(..., sort_keys=True, indent=4).
    expect(summaryToJson(s)).toBe(REF);
  });
});

describe('numpy-compatible numerics', () => {
  it('pairwise sum and nanmean', () => {
    expect(nanmean([NaN, NaN])).toBeNaN();
    expect(nanmean([1, NaN, 2])).toBe(1.5);
    // np.sum(np.full(10, 0.1)) == 1.0 (pairwise), while a sequential sum gives 0.9999999999999999.
    expect(numpySum(new Array(10).fill(0.1))).toBe(1);
  });
  it('Python float repr', () => {
    // json.dumps([1e-5, 1e16, 123.0, 0.0001, 1.5e300, -2.5e-7, 1e15, 0.1+0.2, 100.0, 5e-324])
    expect(
      [1e-5, 1e16, 123, 0.0001, 1.5e300, -2.5e-7, 1e15, 0.1 + 0.2, 100, 5e-324].map(pyFloatRepr),
    ).toEqual([
      '1e-05',
      '1e+16',
      '123.0',
      '0.0001',
      '1.5e+300',
      '-2.5e-07',
      '1000000000000000.0',
      '0.30000000000000004',
      '100.0',
      '5e-324',
    ]);
    expect(pyJsonDumps({ b: [], a: { é: 1 }, c: [1, 'x'] })).toBe(
      '{\n    "a": {\n        "\\u00e9": 1\n    },\n    "b": [],\n    "c": [\n        1,\n        "x"\n    ]\n}',
    );
  });
});

const REF = `{
    "foreground_mean": {
        "Dice": 0.29523809523809524,
        "FN": 0.5555555555555555,
        "FP": 0.5555555555555555,
        "IoU": 0.2240740740740741,
        "TN": 2.4444444444444446,
        "TP": 0.7777777777777777,
        "n_pred": 1.3333333333333333,
        "n_ref": 1.3333333333333333
    },
    "mean": {
        "(1, 2)": {
            "Dice": 0.26666666666666666,
            "FN": 0.6666666666666666,
            "FP": 0.6666666666666666,
            "IoU": 0.2222222222222222,
            "TN": 1.6666666666666667,
            "TP": 1.3333333333333333,
            "n_pred": 2.0,
            "n_ref": 2.0
        },
        "1": {
            "Dice": 0.2857142857142857,
            "FN": 0.3333333333333333,
            "FP": 1.0,
            "IoU": 0.2,
            "TN": 2.3333333333333335,
            "TP": 0.6666666666666666,
            "n_pred": 1.6666666666666667,
            "n_ref": 1.0
        },
        "2": {
            "Dice": 0.3333333333333333,
            "FN": 0.6666666666666666,
            "FP": 0.0,
            "IoU": 0.25,
            "TN": 3.3333333333333335,
            "TP": 0.3333333333333333,
            "n_pred": 0.3333333333333333,
            "n_ref": 1.0
        }
    },
    "metric_per_case": [
        {
            "metrics": {
                "(1, 2)": {
                    "Dice": 0.8,
                    "FN": 1,
                    "FP": 1,
                    "IoU": 0.6666666666666666,
                    "TN": 1,
                    "TP": 4,
                    "n_pred": 5,
                    "n_ref": 5
                },
                "1": {
                    "Dice": 0.5714285714285714,
                    "FN": 1,
                    "FP": 2,
                    "IoU": 0.4,
                    "TN": 2,
                    "TP": 2,
                    "n_pred": 4,
                    "n_ref": 3
                },
                "2": {
                    "Dice": 0.6666666666666666,
                    "FN": 1,
                    "FP": 0,
                    "IoU": 0.5,
                    "TN": 5,
                    "TP": 1,
                    "n_pred": 1,
                    "n_ref": 2
                }
            },
            "prediction_file": "pred/a.nii.gz",
            "reference_file": "ref/a.nii.gz"
        },
        {
            "metrics": {
                "(1, 2)": {
                    "Dice": 0.0,
                    "FN": 1,
                    "FP": 0,
                    "IoU": 0.0,
                    "TN": 3,
                    "TP": 0,
                    "n_pred": 0,
                    "n_ref": 1
                },
                "1": {
                    "Dice": NaN,
                    "FN": 0,
                    "FP": 0,
                    "IoU": NaN,
                    "TN": 4,
                    "TP": 0,
                    "n_pred": 0,
                    "n_ref": 0
                },
                "2": {
                    "Dice": 0.0,
                    "FN": 1,
                    "FP": 0,
                    "IoU": 0.0,
                    "TN": 3,
                    "TP": 0,
                    "n_pred": 0,
                    "n_ref": 1
                }
            },
            "prediction_file": "pred/b.nii.gz",
            "reference_file": "ref/b.nii.gz"
        },
        {
            "metrics": {
                "(1, 2)": {
                    "Dice": 0.0,
                    "FN": 0,
                    "FP": 1,
                    "IoU": 0.0,
                    "TN": 1,
                    "TP": 0,
                    "n_pred": 1,
                    "n_ref": 0
                },
                "1": {
                    "Dice": 0.0,
                    "FN": 0,
                    "FP": 1,
                    "IoU": 0.0,
                    "TN": 1,
                    "TP": 0,
                    "n_pred": 1,
                    "n_ref": 0
                },
                "2": {
                    "Dice": NaN,
                    "FN": 0,
                    "FP": 0,
                    "IoU": NaN,
                    "TN": 2,
                    "TP": 0,
                    "n_pred": 0,
                    "n_ref": 0
                }
            },
            "prediction_file": "pred/c.nii.gz",
            "reference_file": "ref/c.nii.gz"
        }
    ]
}`;
