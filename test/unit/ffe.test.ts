import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  aggregateFingerprints,
  aggregatePrivateSummaries,
  countNumbers,
  fingerprintFromSummary,
  summarizeFingerprint,
} from '../../src/fingerprint/ffe.ts';
import type { DatasetFingerprint } from '../../src/fingerprint/types.ts';
import { planExperiment } from '../../src/plan/planner.ts';
import type { DatasetJson, Plans } from '../../src/plan/types.ts';
import { REFERENCE } from '../paths.ts';
import { FED_CLIENTS, readJson } from './plan-fixtures.ts';

const fingerprint = (d: string) =>
  readJson<DatasetFingerprint>(join(REFERENCE, 'fingerprints', d, 'dataset_fingerprint.json'));
const datasetJson = (d: string) => readJson<DatasetJson>(join(REFERENCE, 'raw', d, 'dataset.json'));
const reference = readJson<DatasetFingerprint>(
  join(REFERENCE, 'federated', 'fed_801_804', 'aggregated_dataset_fingerprint.json'),
);

const relClose = (a: number, b: number, rel = 1e-12) =>
  Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b));

describe('FFE aggregate_fingerprints', () => {
  const agg = aggregateFingerprints(FED_CLIENTS.map(fingerprint));

  it('concatenations in client order, min and max are exact', () => {
    expect(agg.spacings).toEqual(reference.spacings);
    expect(agg.shapes_after_crop).toEqual(reference.shapes_after_crop);
    const [ours, ref] = [
      agg.foreground_intensity_properties_per_channel['0'],
      reference.foreground_intensity_properties_per_channel['0'],
    ];
    expect([ours.min, ours.max]).toEqual([44, 385]);
    expect([ours.min, ours.max]).toEqual([ref.min, ref.max]);
  });

  it('weighted means (weights 5, 4) to 1e-12 relative', () => {
    const ours = agg.foreground_intensity_properties_per_channel['0'];
    const ref = reference.foreground_intensity_properties_per_channel['0'];
    for (const k of ['mean', 'median', 'std', 'percentile_00_5', 'percentile_99_5'] as const)
      expect(relClose(ours[k], ref[k]), k).toBe(true);
    expect(
      relClose(
        agg.median_relative_size_after_cropping,
        reference.median_relative_size_after_cropping,
      ),
    ).toBe(true);
    expect(agg.median_relative_size_after_cropping).toBeCloseTo(0.764754, 6);
    expect(Object.keys(agg)).toEqual(Object.keys(reference));
  });

  it('explicit weights replace the case counts; bad inputs are refused', () => {
    const eq = aggregateFingerprints(FED_CLIENTS.map(fingerprint), [1, 1]);
    expect(eq.foreground_intensity_properties_per_channel['0'].median).toBe((157 + 323) / 2);
    expect(() => aggregateFingerprints(FED_CLIENTS.map(fingerprint), [1])).toThrow(
      /one weight per client/,
    );
    // 803 has two channels, 801 one.
    expect(() =>
      aggregateFingerprints([
        fingerprint('Dataset801_PhantomMR'),
        fingerprint('Dataset803_PhantomMR2ch'),
      ]),
    ).toThrow(/channels/);
  });
});

const COMBOS: string[][] = [
  ['Dataset801_PhantomMR', 'Dataset804_PhantomMRsiteB'],
  ['Dataset801_PhantomMR', 'Dataset802_PhantomCTaniso'],
  ['Dataset802_PhantomCTaniso', 'Dataset804_PhantomMRsiteB'],
  ['Dataset801_PhantomMR', 'Dataset802_PhantomCTaniso', 'Dataset804_PhantomMRsiteB'],
  ['Dataset804_PhantomMRsiteB', 'Dataset802_PhantomCTaniso', 'Dataset801_PhantomMR'],
];

describe.each(COMBOS)('private FFE gives the same plans: %s + %s', (...clients: string[]) => {
  const fps = clients.map(fingerprint);
  const standard = aggregateFingerprints(fps);
  const summaries = fps.map(summarizeFingerprint);
  const merged = aggregatePrivateSummaries(summaries);
  const privateFp = fingerprintFromSummary(merged);

  it('identical plans for every client (its own dataset.json)', () => {
    for (const d of clients) {
      const a = planExperiment(standard, datasetJson(d), { datasetName: d });
      const b = planExperiment(privateFp, datasetJson(d), { datasetName: d });
      expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    }
  });

  it('no per-case rows leave a client, and each client sends strictly fewer numbers and bytes', () => {
    for (let k = 0; k < clients.length; k++) {
      expect(Object.keys(summaries[k])).not.toContain('spacings');
      expect(Object.keys(summaries[k])).not.toContain('shapes_after_crop');
      expect(countNumbers(summaries[k])).toBeLessThan(countNumbers(fps[k]));
      expect(JSON.stringify(summaries[k]).length).toBeLessThan(JSON.stringify(fps[k]).length);
    }
  });

  it('the merged summary keeps the per-axis multisets of the pooled cases', () => {
    for (let a = 0; a < 3; a++) {
      const pairs = (fp: DatasetFingerprint) =>
        fp.spacings.map((s, i) => `${s[a]}:${fp.shapes_after_crop[i][a]}`).sort();
      expect(pairs(privateFp)).toEqual(pairs(standard));
    }
  });
});

describe('private FFE {801, 804} reproduces the reference federated plans', () => {
  const merged = aggregatePrivateSummaries(
    FED_CLIENTS.map((d) => summarizeFingerprint(fingerprint(d))),
  );
  it.each(FED_CLIENTS)('%s', (d) => {
    const ref = readJson<Plans>(join(REFERENCE, 'federated', 'fed_801_804', d, 'nnUNetPlans.json'));
    const plans = planExperiment(fingerprintFromSummary(merged), datasetJson(d), {
      datasetName: d,
    });
    expect(plans).toEqual(ref);
  });
  it('801 summary: one spacing group per axis', () => {
    const s = summarizeFingerprint(fingerprint('Dataset801_PhantomMR'));
    expect(s.axes.map((g) => g.length)).toEqual([1, 1, 1]);
    expect(s.axes[0][0]).toEqual([1.2000000476837158, [48, 62, 64, 64, 67]]);
  });
});

describe('message size of the two variants', () => {
  it.each([
    'Dataset801_PhantomMR',
    'Dataset802_PhantomCTaniso',
    'Dataset803_PhantomMR2ch',
    'Dataset804_PhantomMRsiteB',
  ])('%s: summary is smaller', (d) => {
    const fp = fingerprint(d);
    const s = summarizeFingerprint(fp);
    expect(countNumbers(s)).toBeLessThan(countNumbers(fp));
    expect(JSON.stringify(s).length).toBeLessThan(JSON.stringify(fp).length);
    // The private variant round-trips to the same plans for a single site too.
    expect(
      planExperiment(fingerprintFromSummary(aggregatePrivateSummaries([s])), datasetJson(d), {
        datasetName: d,
      }),
    ).toEqual(planExperiment(fp, datasetJson(d), { datasetName: d }));
  });
});
