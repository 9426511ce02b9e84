// The site pipeline computes each stage once: what the Data tab stored (fingerprint, plans,
// preprocessed arrays in IndexedDB, fake-indexeddb here) is reused by a second local training and
// by a federation, and a federation reads each stored case once. Reads are counted through the
// store API (a proxy over the IndexedDB site store).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshStore, noEnv } from './store-helpers.ts';
import { importDataset } from '../../src/store/datasets.ts';
import { listPlans, loadPlans } from '../../src/store/plans.ts';
import { listPreprocessed } from '../../src/store/preprocessed.ts';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import { IdbSiteStore } from '../../src/pipeline/idb-site-store.ts';
import { LOCAL_PLANS, prepareTraining, SitePipeline } from '../../src/pipeline/site-pipeline.ts';
import type { SiteStore } from '../../src/pipeline/site-store.ts';
import { preprocessKey } from '../../src/pipeline/preprocess-key.ts';
import { TrainerSite } from '../../src/pipeline/trainer-site.ts';
import { startRelay } from '../../src/node/relay/server.ts';
import { SiteClient } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import { mergeSiteFingerprints } from '../../src/fed/ffe-merge.ts';
import type { FederationConfig } from '../../src/fed/protocol.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import type { StoreDB } from '../../src/store/db.ts';
import type { ConfigurationPlan } from '../../src/plan/types.ts';

const CASES = 3;

/** Every call through the store API, with the case id where the call names one. */
interface Call {
  op: keyof SiteStore;
  caseId?: string;
}

function counted(inner: SiteStore): {
  store: SiteStore;
  calls: Call[];
  count: (op: keyof SiteStore, caseId?: string) => number;
} {
  const calls: Call[] = [];
  const caseArg: Partial<Record<keyof SiteStore, number>> = {
    readCase: 0,
    saveCaseFingerprint: 0,
    loadPreprocessed: 2,
    savePreprocessed: 2,
  };
  const store = new Proxy(inner, {
    get(t, prop, _r) {
      const v = Reflect.get(t, prop, t) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const i = caseArg[prop as keyof SiteStore];
        calls.push({
          op: prop as keyof SiteStore,
          caseId: i === undefined ? undefined : (args[i] as string),
        });
        return (v as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  });
  const count = (op: keyof SiteStore, caseId?: string) =>
    calls.filter((c) => c.op === op && (caseId === undefined || c.caseId === caseId)).length;
  return { store, calls, count };
}

/** A demo site imported into its own (fake) browser profile. */
async function importSite(i: number): Promise<{ db: StoreDB; id: string }> {
  const { db } = await freshStore();
  const ds = demoDataset(DEMO_SITES[i], i, CASES);
  async function* cases() {
    for (const c of ds.cases)
      yield { caseId: c.id, images: [c.image], label: c.label, problems: [] };
  }
  const meta = {
    name: ds.name,
    datasetJson: ds.datasetJson,
    channelNames: ['T1'],
    labels: ds.datasetJson.labels,
  };
  const r = await importDataset(db, meta, cases(), { env: noEnv });
  return { db, id: r.dataset.id };
}

/** The Data tab's "Fingerprint, plan and preprocess" (workers/data.worker.ts does the same calls). */
async function dataTabPrepare(db: StoreDB, id: string): Promise<void> {
  const pipeline = new SitePipeline(await IdbSiteStore.open(db, id));
  const plans = pipeline.makePlans(await pipeline.fingerprint());
  await pipeline.savePlans(plans);
  await pipeline.preprocess(plans, '3d_fullres');
}

async function federate(method: FederationConfig['method'], stores: SiteStore[]) {
  const dir = mkdtempSync(join(tmpdir(), `reuse-${method}-`));
  const config: FederationConfig = {
    method,
    configuration: '3d_fullres',
    rounds: 1,
    itersPerRound: 1,
    minSites: stores.length,
    roundDeadlineMs: 600_000,
    weighting: 'uniform',
    encoding: 'fp16',
  };
  const relay = await startRelay({
    dataDir: dir,
    config: { ...config, expectedSites: stores.length, token: 't' },
    aggregateFingerprints: mergeSiteFingerprints,
    log: () => undefined,
  });
  const sites = stores.map(
    (store) =>
      new TrainerSite({
        pipeline: new SitePipeline(store),
        tiny: { patch: 8 },
        valIters: 0,
        evaluate: false,
      }),
  );
  try {
    const runs = [];
    for (const [i, s] of sites.entries()) {
      runs.push(
        new SiteClient({
          connect: wsConnect(relay.wsUrl, WebSocket as never),
          token: 't',
          siteName: `s${i}`,
          trainer: s,
        }).run(),
      );
      await new Promise((r) => setTimeout(r, 30)); // join in order
    }
    await Promise.all(runs);
    return sites;
  } finally {
    sites.forEach((s) => s.trainer?.dispose());
    await relay.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('one site pipeline: stages computed once and reused', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it("a federation after the Data tab's prepare reads each stored case once and fingerprints nothing (FFE)", async () => {
    // Two sites alike (the pooled plan preprocesses as their own) and one with 2 mm slices (it does not).
    const imported = await Promise.all([0, 0, 1].map(importSite));
    for (const s of imported) await dataTabPrepare(s.db, s.id);
    const sites = await Promise.all(
      imported.map(async (s) => counted(await IdbSiteStore.open(s.db, s.id))),
    );
    const trained = await federate(
      'ffe',
      sites.map((s) => s.store),
    );
    for (const [i, s] of sites.entries()) {
      expect(s.count('saveCaseFingerprint')).toBe(0);
      expect(s.count('saveDatasetFingerprint')).toBe(0);
      for (const id of s.store.caseIds) {
        // Either its stored arrays (the pooled plan preprocesses as the local one) or its raw
        // voxels (it does not, so the case is preprocessed once for the pooled plan): once.
        expect(
          s.count('readCase', id) + s.count('loadPreprocessed', id),
          `site ${i} case ${id}`,
        ).toBe(1);
      }
      // The site's own plans are not overwritten by the pooled ones.
      const local = (await loadPlans(imported[i].db, imported[i].id, LOCAL_PLANS))!;
      const used = trained[i].plans!;
      const dj = s.store.datasetJson!;
      const same = preprocessKey(local, '3d_fullres', dj) === preprocessKey(used, '3d_fullres', dj);
      expect(s.count('readCase')).toBe(same ? 0 : CASES);
      expect(s.count('savePreprocessed')).toBe(same ? 0 : CASES);
    }
    // Both paths ran: stored arrays reused, and arrays made once for a pooled plan that differs.
    expect(sites.map((s) => s.count('readCase'))).toEqual([0, 0, CASES]);
  }, 240_000);

  it("AsymFedAvg after the Data tab's prepare reads no raw case and each preprocessed case once", async () => {
    const imported = await Promise.all([0, 1].map(importSite));
    for (const s of imported) await dataTabPrepare(s.db, s.id);
    const sites = await Promise.all(
      imported.map(async (s) => counted(await IdbSiteStore.open(s.db, s.id))),
    );
    await federate(
      'asym',
      sites.map((s) => s.store),
    );
    for (const s of sites) {
      expect(s.count('readCase')).toBe(0);
      expect(
        s.count('savePreprocessed') + s.count('saveCaseFingerprint') + s.count('savePlans'),
      ).toBe(0);
      for (const id of s.store.caseIds) expect(s.count('loadPreprocessed', id)).toBe(1);
    }
  }, 240_000);

  it('a federation on a freshly imported dataset fingerprints each case once and preprocesses it once', async () => {
    const imported = await Promise.all([0, 1].map(importSite));
    const sites = await Promise.all(
      imported.map(async (s) => counted(await IdbSiteStore.open(s.db, s.id))),
    );
    await federate(
      'ffe',
      sites.map((s) => s.store),
    );
    for (const s of sites) {
      for (const id of s.store.caseIds) {
        expect(s.count('readCase', id)).toBe(2); // fingerprint, then preprocessing with the pooled plan
        expect(s.count('saveCaseFingerprint', id)).toBe(1);
        expect(s.count('loadPreprocessed', id)).toBe(0); // the arrays just made go to the trainer
      }
    }
  }, 240_000);

  it("local training after the Data tab's prepare, and a second one, neither fingerprint nor preprocess", async () => {
    const { db, id } = await importSite(0);
    await dataTabPrepare(db, id);
    for (const tiny of [{ patch: 8 }, false] as const) {
      const s = counted(await IdbSiteStore.open(db, id));
      const prep = await prepareTraining(new SitePipeline(s.store), {
        configuration: '3d_fullres',
        tiny,
      });
      expect(s.count('readCase')).toBe(0);
      expect(
        s.count('saveCaseFingerprint') +
          s.count('saveDatasetFingerprint') +
          s.count('savePlans') +
          s.count('savePreprocessed'),
      ).toBe(0);
      for (const c of s.store.caseIds) expect(s.count('loadPreprocessed', c)).toBe(1);
      expect(prep.cases.map((c) => c.id)).toEqual([...s.store.caseIds]);
      const cfg = prep.plans.configurations['3d_fullres'] as ConfigurationPlan;
      expect(cfg.patch_size).toEqual(
        tiny
          ? [8, 8, 8]
          : (
              (await loadPlans(db, id, LOCAL_PLANS))!.configurations[
                '3d_fullres'
              ] as ConfigurationPlan
            ).patch_size,
      );
    }
    expect(await listPlans(db, id)).toEqual([LOCAL_PLANS]); // the tiny run stored no plans of its own
  }, 120_000);

  it('a site that rejoins after a reload restores from the stored arrays: no raw case read', async () => {
    const { db, id } = await importSite(1);
    const config: FederationConfig = {
      method: 'asym',
      configuration: '3d_fullres',
      rounds: 2,
      itersPerRound: 1,
      minSites: 1,
      roundDeadlineMs: 600_000,
      weighting: 'uniform',
      encoding: 'fp16',
    };
    let saved: Uint8Array | undefined;
    const opts = {
      tiny: { patch: 8 },
      valIters: 0,
      evaluate: false,
      saveState: async (b: Uint8Array) => void (saved = b),
      loadState: async () => saved,
    };
    const first = counted(await IdbSiteStore.open(db, id));
    const before = new TrainerSite({ pipeline: new SitePipeline(first.store), ...opts });
    await before.prepare(null, config); // fresh: fingerprint, plan, preprocess (each case read twice)
    for (const c of first.store.caseIds) expect(first.count('readCase', c)).toBe(2);
    before.trainer!.dispose();
    const again = counted(await IdbSiteStore.open(db, id));
    const after = new TrainerSite({ pipeline: new SitePipeline(again.store), ...opts });
    expect(await after.restore(config)).toBe(true);
    expect(again.count('readCase')).toBe(0);
    for (const c of again.store.caseIds) expect(again.count('loadPreprocessed', c)).toBe(1);
    expect(after.plans).toEqual(before.plans);
    after.trainer!.dispose();
  }, 120_000);

  it('plans that preprocess differently get fresh arrays; stale arrays under a replanned name are dropped', async () => {
    const { db, id } = await importSite(0);
    await dataTabPrepare(db, id);
    const pipeline = new SitePipeline(await IdbSiteStore.open(db, id));
    const local = (await loadPlans(db, id, LOCAL_PLANS))!;
    // A different target spacing: run_case resamples differently, so nothing stored is reused.
    const other = structuredClone(local);
    const oc = other.configurations['3d_fullres'] as ConfigurationPlan;
    oc.spacing = oc.spacing.map((s) => s * 2);
    const r = await pipeline.preprocess(other, '3d_fullres', { plansName: 'nnUNetPlans_FFE' });
    expect(r).toEqual({ plansName: 'nnUNetPlans_FFE', computed: CASES, reused: 0 });
    expect(await listPreprocessed(db, id, LOCAL_PLANS, '3d_fullres')).toHaveLength(CASES);
    // A plan differing only in patch and network preprocesses alike: the local arrays serve it.
    const bigger = structuredClone(local);
    (bigger.configurations['3d_fullres'] as ConfigurationPlan).patch_size = [8, 8, 8];
    expect(await pipeline.preprocess(bigger, '3d_fullres')).toEqual({
      plansName: LOCAL_PLANS,
      computed: 0,
      reused: CASES,
    });
    // Replanning the local name with a different spacing drops its old arrays.
    await pipeline.savePlans(other, LOCAL_PLANS);
    expect(await listPreprocessed(db, id, LOCAL_PLANS, '3d_fullres')).toHaveLength(0);
  }, 120_000);
});
