// The workshop host's held-out comparison (issue 18): a site's report after the final model is a
// strictly validated message of numbers only (protocol.ts), the coordinator keeps it for the final
// round only, the host assembles `fednnunet compare`'s table from the reports (held-out-table.ts),
// and a site computes its report with the predictor and nnU-Net's Dice (eval/held-out-report.ts).
import { describe, expect, it } from 'vitest';
import { Coordinator, type CoordinatorSnapshot } from '../../src/fed/coordinator.ts';
import { FederationHost } from '../../src/fed/host.ts';
import { SiteClient, type Connect } from '../../src/fed/client.ts';
import {
  decodeMessage,
  encodeMessage,
  MAX_REPORT_CASES,
  ProtocolError,
} from '../../src/fed/protocol.ts';
import { formatHeldOutTable, heldOutTable } from '../../src/fed/held-out-table.ts';
import { diceBarsSvg } from '../../src/eval/comparison-svg.ts';
import { workshopConfig, workshopStatus } from '../../src/fed/workshop-host.ts';
import { heldOutReport, reportCases, type ScoredModel } from '../../src/eval/held-out-report.ts';
import type { Volume } from '../../src/io/volume.ts';
import type { SiteCase } from '../../src/pipeline/site-store.ts';
import type { WeightSpec } from '../../src/model/named-weights.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import { chunkedConnection } from './helpers/fake-channel.ts';
import { DATASET_JSON } from './infer-helpers.ts';
import { twoStagePlans } from './helpers/tiny-model.ts';

/** The report header as JSON text, framed (to send what encodeMessage's types would not allow). */
function frameOf(header: Record<string, unknown>): Uint8Array {
  const ok = encodeMessage({ type: 'held-out-result', accepted: true });
  const text = new TextEncoder().encode(JSON.stringify(header));
  const pad = (4 - ((12 + text.length) % 4)) % 4;
  const out = new Uint8Array(12 + text.length + pad);
  out.set(ok.subarray(0, 8));
  new DataView(out.buffer).setUint32(8, text.length, true);
  out.set(text, 12);
  return out;
}

const valid = { type: 'held-out-dice', round: 3, cases: 2, federated: 0.8125, local: 0.5 };

describe('held-out-dice message', () => {
  it('round-trips a report with and without the local value', () => {
    expect(decodeMessage(encodeMessage(valid as never)).message).toEqual(valid);
    const noLocal = { type: 'held-out-dice', round: 1, cases: 1, federated: 0 };
    expect(decodeMessage(frameOf(noLocal)).message).toEqual(noLocal);
    expect(decodeMessage(frameOf({ ...valid, federated: 1, local: 0 })).message).toMatchObject({
      federated: 1,
      local: 0,
    });
  });

  it('refuses a Dice outside [0, 1] or not finite, with the field and what it must be', () => {
    for (const [field, v] of [
      ['federated', 1.0001],
      ['federated', -0.1],
      ['federated', null], // NaN and ±Infinity become null in JSON
      ['federated', '0.8'],
      ['federated', undefined],
      ['local', 2],
      ['local', null],
      ['local', -1e-9],
    ] as const) {
      const m: Record<string, unknown> = { ...valid, [field]: v };
      if (v === undefined) delete m[field];
      expect(() => decodeMessage(frameOf(m)), `${field} = ${String(v)}`).toThrow(
        new ProtocolError(
          `'held-out-dice' message has an invalid '${field}' (expected a Dice in [0, 1]${field === 'local' ? ', or absent' : ''})`,
        ),
      );
    }
  });

  it('refuses a case count that is not a whole number from 1 to the bound', () => {
    for (const cases of [0, 1.5, -1, MAX_REPORT_CASES + 1, '2', null])
      expect(() => decodeMessage(frameOf({ ...valid, cases })), String(cases)).toThrow(
        /invalid 'cases' \(expected a whole number of held-out cases, 1 to 100000\)/,
      );
    expect(decodeMessage(frameOf({ ...valid, cases: MAX_REPORT_CASES })).message).toMatchObject({
      cases: MAX_REPORT_CASES,
    });
  });

  it('carries numbers only: any further field (case ids, names) is refused', () => {
    expect(() => decodeMessage(frameOf({ ...valid, caseIds: ['case_001'] }))).toThrow(
      "'held-out-dice' message has unexpected field(s) 'caseIds': it may carry only round, cases, federated, local",
    );
    expect(() => decodeMessage(frameOf({ ...valid, perCase: [0.1], note: 'x' }))).toThrow(
      /unexpected field\(s\) 'perCase', 'note'/,
    );
  });
});

const config = workshopConfig('wk', { method: 'ffe', rounds: 2, itersPerRound: 3 });
const done = (sites: CoordinatorSnapshot['sites']): CoordinatorSnapshot => ({
  config,
  phase: 'done',
  round: 2,
  sites,
  history: [],
});

describe('the coordinator keeps held-out reports', () => {
  const site = (id: string) => ({ siteId: id, siteName: `laptop-${id}`, numCases: 4 });

  it('accepts a report of the final round once done, and answers it', () => {
    const c = new Coordinator({ config }, done([site('a'), site('b')]));
    const r = c.handle('a', { type: 'held-out-dice', round: 2, cases: 1, federated: 0.7 });
    expect(r.out).toEqual([{ to: 'a', message: { type: 'held-out-result', accepted: true } }]);
    expect(c.snapshot.sites[0].heldOut).toEqual({ round: 2, cases: 1, federated: 0.7 });
    expect(c.snapshot.sites[1].heldOut).toBeUndefined();
  });

  it('refuses one before the end or of another round, keeping nothing', () => {
    const early = new Coordinator({ config }, { ...done([site('a')]), phase: 'rounds', round: 1 });
    expect(
      early.handle('a', { type: 'held-out-dice', round: 1, cases: 1, federated: 0.7 }).out,
    ).toEqual([
      {
        to: 'a',
        message: {
          type: 'held-out-result',
          accepted: false,
          reason: 'the federation is not finished (phase rounds)',
        },
      },
    ]);
    const c = new Coordinator({ config }, done([site('a')]));
    const r = c.handle('a', { type: 'held-out-dice', round: 1, cases: 1, federated: 0.7 });
    expect(r.out[0].message).toMatchObject({ accepted: false, reason: /round 1.*round 2/ });
    expect(c.snapshot.sites[0].heldOut).toBeUndefined();
    expect(early.snapshot.sites[0].heldOut).toBeUndefined();
  });
});

describe('the host table', () => {
  const sites: CoordinatorSnapshot['sites'] = [
    {
      siteId: 'a',
      siteName: 'Amsterdam',
      numCases: 5,
      heldOut: { round: 2, cases: 1, federated: 0.8, local: 0.6 },
    },
    { siteId: 'b', siteName: 'Bern', numCases: 4, heldOut: { round: 2, cases: 2, federated: 0.7 } },
    { siteId: 'c', siteName: 'Cork', numCases: 3 },
    // A report of an earlier federation's final round (a resumed state) is not this table's.
    {
      siteId: 'd',
      siteName: 'Delft',
      numCases: 3,
      heldOut: { round: 1, cases: 1, federated: 0.1 },
    },
  ];

  it("rows: reporting sites; columns: local and the method; '—' where a site has no local run", () => {
    const t = heldOutTable(done(sites))!;
    expect(t.columns).toEqual([
      { key: 'local', label: 'local' },
      { key: 'ffe', label: 'FFE' },
    ]);
    expect(t.rows).toEqual([
      { siteName: 'Amsterdam', cases: 1, dice: [0.6, 0.8] },
      { siteName: 'Bern', cases: 2, dice: [null, 0.7] },
    ]);
    // The federation's mean over both sites; none for local (Bern has no local run).
    expect(t.mean[0]).toBeNull();
    expect(t.mean[1]).toBeCloseTo(0.75, 12);
    expect(t.waiting).toEqual(['Cork', 'Delft']);
    expect(formatHeldOutTable(t)).toBe(
      [
        'site       cases   local     FFE',
        'Amsterdam      1  0.6000  0.8000',
        'Bern           2       —  0.7000',
        'mean                   —  0.7500',
      ].join('\n'),
    );
  });

  it('the figure: a bar per value with its number, "—" where none, wide enough for its title and labels', () => {
    const t = heldOutTable(done(sites))!;
    const title = 'Held-out Dice per site: local run vs the federation';
    const svg = diceBarsSvg({
      title,
      groups: [...t.rows.map((r) => r.siteName), 'mean'],
      columns: t.columns,
      values: [...t.rows.map((r) => r.dice), t.mean],
      missing: '—',
    });
    const bars = [
      ...svg.matchAll(/<rect [^>]*data-site="([^"]+)" data-method="([^"]+)" data-dice="([^"]+)"/g),
    ];
    expect(bars.map((m) => m.slice(1))).toEqual([
      ['Amsterdam', 'local', '0.6000'],
      ['Amsterdam', 'ffe', '0.8000'],
      ['Bern', 'ffe', '0.7000'],
      ['mean', 'ffe', '0.7500'],
    ]);
    expect(svg.match(/data-dice="n\/a">—</g)).toHaveLength(2); // Bern's and the mean's local
    const width = Number(/width="(\d+(?:\.\d+)?)"/.exec(svg)![1]);
    expect(width).toBeGreaterThanOrEqual(48 + title.length * 7);
  });

  it('the local mean once every reporting site has one; nothing before a report or the end', () => {
    const both = heldOutTable(
      done([
        sites[0],
        { ...sites[1], heldOut: { round: 2, cases: 2, federated: 0.7, local: 0.2 } },
      ]),
    )!;
    expect(both.mean[0]).toBeCloseTo(0.4, 12);
    expect(both.waiting).toEqual([]);
    expect(heldOutTable(done([sites[2]]))).toBeUndefined();
    expect(heldOutTable({ ...done(sites), phase: 'rounds' })).toBeUndefined();
    // The host tab's status carries it.
    expect(workshopStatus(new Coordinator({ config }, done(sites))).heldOut?.rows).toHaveLength(2);
    expect(workshopStatus(new Coordinator({ config }, done([sites[2]]))).heldOut).toBeUndefined();
  });
});

const layout: WeightSpec = [
  { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [4, 1, 3, 3, 3] },
  { name: 'decoder.seg_layers.0.weight', shape: [2, 4, 1, 1, 1] },
];

/** A site whose held-out report is given (what the train worker computes). */
class ReportingTrainer extends MockTrainer {
  constructor(
    seed: number,
    private readonly report: { cases: number; federated: number; local?: number } | Error,
  ) {
    super(layout, seed, 4);
  }
  async heldOutReport() {
    if (this.report instanceof Error) throw this.report;
    return this.report;
  }
}

describe('a workshop federation ends with the table', () => {
  it('each site sends one report after the final model; the host shows them; the audit lists it', async () => {
    const host = new FederationHost({
      config: {
        ...workshopConfig('WS-9', { method: 'fedavg', rounds: 1, itersPerRound: 1 }),
        minSites: 3,
        expectedSites: 3,
      },
    });
    const connect: Connect = async (h) => chunkedConnection(host, h);
    const trainers = [
      new ReportingTrainer(1, { cases: 1, federated: 0.9, local: 0.4 }),
      new ReportingTrainer(2, { cases: 2, federated: 0.6 }),
      new ReportingTrainer(3, new Error('no WebGPU for the predictor')),
    ];
    const runs = trainers.map((t, i) =>
      new SiteClient({ connect, token: 'WS-9', siteName: `site-${i}`, trainer: t }).run(),
    );
    const results = await Promise.all(runs);
    expect(host.coordinator.phase).toBe('done');
    const t = workshopStatus(host.coordinator).heldOut!;
    expect(
      t.rows
        .map((r) => [r.siteName, r.cases, ...r.dice])
        .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    ).toEqual([
      ['site-0', 1, 0.4, 0.9],
      ['site-1', 2, null, 0.6],
    ]);
    expect(t.waiting).toEqual(['site-2']);
    expect(t.columns.map((c) => c.label)).toEqual(['local', 'FedAvg']);
    // What left each site: the report (numbers only) after the last update; none where it failed.
    const sent = results.map((r) => r.sentLog.map((m) => m.type));
    expect(sent[0].at(-1)).toBe('held-out-dice');
    expect(sent[1].at(-1)).toBe('held-out-dice');
    expect(sent[2]).not.toContain('held-out-dice');
    expect(results[0].sentLog.at(-1)).toMatchObject({ type: 'held-out-dice', round: 1 });
    expect(results[0].sentLog.at(-1)!.bytes).toBeLessThan(200);
  });

  it('a site whose report gets no answer still finishes, after its wait', async () => {
    const isAnswer = (b: Uint8Array) => {
      try {
        return decodeMessage(b).message.type === 'held-out-result';
      } catch {
        return false; // the identity challenge and proofs are not protocol frames
      }
    };
    const host = new FederationHost({
      config: {
        ...workshopConfig('WS-8', { method: 'fedavg', rounds: 1, itersPerRound: 1 }),
        expectedSites: 1,
      },
    });
    // The host never answers the report (an older host, or a lost message).
    const connect: Connect = async (h) => {
      const t = chunkedConnection(host, {
        onMessage: (b) => {
          if (!isAnswer(b)) h.onMessage(b);
        },
        onClose: () => h.onClose(),
      });
      return t;
    };
    const t0 = Date.now();
    const r = await new SiteClient({
      connect,
      token: 'WS-8',
      siteName: 'solo',
      trainer: new ReportingTrainer(1, { cases: 1, federated: 0.5 }),
      reportAckMs: 150,
    }).run();
    expect(r.rounds).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(host.coordinator.snapshot.sites[0].heldOut).toMatchObject({ federated: 0.5 });
  });
});

// A 12×12×12 volume at 1 mm whose label is a 4×4×4 cube (64 voxels) of class 1.
function volume(data: Float32Array | Uint8Array): Volume {
  return {
    data,
    dims: [12, 12, 12],
    channels: 1,
    spacing: [1, 1, 1],
    affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
    datatype: data instanceof Uint8Array ? 'uint8' : 'float32',
  };
}
function caseOf(id: string): SiteCase {
  const label = new Uint8Array(12 ** 3);
  for (let z = 4; z < 8; z++)
    for (let y = 4; y < 8; y++) for (let x = 4; x < 8; x++) label[(z * 12 + y) * 12 + x] = 1;
  const image = Float32Array.from(label, (v, i) => 1 + v + 0.01 * (i % 7));
  return { id, image: volume(image), label: volume(label) };
}

type Fake = ScoredModel & { cls: number };

describe("a site's held-out report", () => {
  const { plans, configuration } = twoStagePlans();
  const dj = { ...DATASET_JSON, labels: { background: 0, organ: 1 } };
  /** A "model" that predicts `cls` everywhere (its engine makes that class's logit the largest). */
  const model = (cls: number, train?: string[]): Fake => ({
    plans,
    configuration,
    datasetJson: dj,
    cls,
    ...(train
      ? { provenance: { trained_by: 'test', training_cases: { dataset: 'D1', train, val: [] } } }
      : {}),
  });
  const open = async (m: Fake) => ({
    tileBatch: 1,
    predictTiles: async (batch: Float32Array, n: number) => {
      const vox = batch.length / n; // one input channel
      const out = new Float32Array(n * 2 * vox);
      for (let t = 0; t < n; t++) out.fill(1, (t * 2 + m.cls) * vox, (t * 2 + m.cls + 1) * vox);
      return out;
    },
    release: async () => undefined,
  });
  const read = async (id: string) => caseOf(id);

  it('the federated and local Dice on the same held-out cases, with the predictor and nnU-Net Dice', async () => {
    const r = await heldOutReport<Fake>({
      datasetName: 'D1',
      heldOutIds: ['c1', 'c2', 'c3'],
      readCase: read,
      // Foreground everywhere: Dice = 2·64 / (64 + 1728); background everywhere: 0.
      federated: model(1),
      local: model(0, ['c0', 'c2']),
      open,
    });
    expect(r).toEqual({ cases: 2, federated: expect.any(Number), local: 0 });
    expect(r!.federated).toBeCloseTo((2 * 64) / (64 + 12 ** 3), 6);
  });

  it('which cases: the local model must record its cases; one that trained on all is left out', () => {
    expect(reportCases('D1', ['c1', 'c2'], undefined)).toEqual({
      ids: ['c1', 'c2'],
      useLocal: false,
    });
    expect(reportCases('D1', ['c1', 'c2'], model(1, ['c2']))).toEqual({
      ids: ['c1'],
      useLocal: true,
    });
    expect(reportCases('D1', ['c1'], model(1, ['c1']))).toMatchObject({
      ids: ['c1'],
      useLocal: false,
      why: /trained on every one/,
    });
    expect(reportCases('D1', ['c1'], model(1))).toMatchObject({
      useLocal: false,
      why: /does not record/,
    });
    expect(
      reportCases('D1', ['c1'], {
        ...model(1),
        provenance: { trained_by: 'test', training_cases: { dataset: 'D2', train: [], val: [] } },
      }),
    ).toMatchObject({ useLocal: false });
  });

  it('no report without held-out cases', async () => {
    expect(
      await heldOutReport<Fake>({
        datasetName: 'D1',
        heldOutIds: [],
        readCase: read,
        federated: model(1),
        open,
      }),
    ).toBeUndefined();
  });
});
