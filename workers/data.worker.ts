// Dataset worker: imports dropped files into IndexedDB (parsing, validation, storing happen here,
// off the page's thread), lists and deletes datasets. Exposed with comlink.
import * as Comlink from 'comlink';
import { openStore, type StoreDB } from '../src/store/db.ts';
import {
  deleteDataset,
  importDataset,
  listCases,
  listDatasets,
  loadCaseVolumes,
  storageUsage,
} from '../src/store/datasets.ts';
import { planImport, type SkippedCase } from '../src/store/from-files.ts';
import { summariseImport, type ImportSummaryText } from '../src/io/import-summary.ts';
import { deleteEverything, storedTotals } from '../src/store/storage-manage.ts';
import {
  directoryHandleSource,
  pathFilesSource,
  type DirectoryHandleLike,
} from '../src/io/file-source.ts';
import type { CaseInput } from '../src/store/import-dataset.ts';
import { DEMO_SITES, demoDataset } from '../src/demo/phantoms.ts';
import { IdbSiteStore } from '../src/pipeline/idb-site-store.ts';
import { SitePipeline } from '../src/pipeline/site-pipeline.ts';
import { listPlans, loadPlans } from '../src/store/plans.ts';
import { defaultMemoryBudgetMB } from '../src/plan/budget.ts';
import { chooseTrainFit, type TrainFit } from '../src/plan/train-fit.ts';
import type { BindingLimits } from '../src/gpu/binding-limit.ts';
import { listPreprocessed } from '../src/store/preprocessed.ts';

export interface ImportInput {
  /** Files with paths relative to what was dropped (folder name first), or a picked directory. */
  files?: Array<{ path: string; file: File }>;
  dir?: FileSystemDirectoryHandle;
  name?: string;
  /** Keep cases with validation problems (marked) instead of refusing the whole import. */
  allowProblems?: boolean;
}

export interface ImportEvent {
  phase: 'reading' | 'storing' | 'committing' | 'done' | 'rolling-back';
  casesDone: number;
  casesTotal: number;
  bytesWritten: number;
  caseId?: string;
}

export interface PrepareEvent {
  stage: 'fingerprint' | 'plan' | 'preprocess';
  done: number;
  total: number;
  caseId?: string;
}

export interface PrepareSummary {
  plansName: string;
  configuration: string;
  spacing: number[];
  patchSize: number[];
  batchSize: number;
  stages: number;
  features: number[];
  normalization: string[];
  useMaskForNorm: boolean[];
  casesPreprocessed: number;
  ms: { fingerprint: number; plan: number; preprocess: number };
}

export interface ImportSummary {
  datasetId: string;
  name: string;
  kind: string;
  numCases: number;
  casesWithProblems: number;
  skipped: SkippedCase[];
  warnings: string[];
  replaced: boolean;
  /** What happened to the files, in one plain line plus folded details (absent for demo data). */
  files?: ImportSummaryText;
}

let dbPromise: Promise<StoreDB> | undefined;
const db = () => (dbPromise ??= openStore());
let current: AbortController | undefined;

async function sha256(bytes: ArrayBufferView): Promise<string> {
  const d = await crypto.subtle.digest(
    'SHA-256',
    new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) as Uint8Array<ArrayBuffer>,
  );
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

const api = {
  async importFiles(input: ImportInput, onEvent: (e: ImportEvent) => void): Promise<ImportSummary> {
    if (current) throw new Error('an import is already running; cancel it first');
    const ctrl = new AbortController();
    current = ctrl;
    try {
      const src = input.dir
        ? directoryHandleSource(input.dir as unknown as DirectoryHandleLike)
        : pathFilesSource(input.files?.[0]?.path.split('/')[0] || 'files', input.files ?? []);
      const plan = await planImport(src, { name: input.name, allowProblems: input.allowProblems });
      const total = plan.casesTotal;
      let bytes = 0;
      let done = 0;
      // Report each case as it is read (parsing is most of the time for compressed files).
      async function* reading(): AsyncGenerator<CaseInput> {
        for await (const c of plan.cases) {
          onEvent({
            phase: 'reading',
            casesDone: done,
            casesTotal: total,
            bytesWritten: bytes,
            caseId: c.caseId,
          });
          yield c;
        }
      }
      const r = await importDataset(await db(), plan.meta, reading(), {
        casesTotal: total,
        signal: ctrl.signal,
        onProgress: (p) => {
          bytes = p.bytesWritten;
          done = p.casesDone;
          const phase = p.phase === 'staging' ? 'storing' : p.phase;
          onEvent({
            phase,
            casesDone: p.casesDone,
            casesTotal: total,
            bytesWritten: p.bytesWritten,
          });
        },
      });
      return {
        datasetId: r.dataset.id,
        name: r.dataset.name,
        kind: plan.kind,
        numCases: r.dataset.numCases,
        casesWithProblems: r.dataset.casesWithProblems,
        skipped: plan.skipped,
        warnings: plan.warnings,
        replaced: r.replacedId !== undefined,
        files: summariseImport(plan.report()),
      };
    } finally {
      current = undefined;
    }
  },

  /** Generates one synthetic site's dataset here in the browser and stores it (no files needed). */
  async importDemo(siteIndex: number, onEvent: (e: ImportEvent) => void): Promise<ImportSummary> {
    const site = DEMO_SITES[siteIndex];
    if (!site) throw new Error(`no demo site ${siteIndex}; there are ${DEMO_SITES.length}`);
    const ds = demoDataset(site, siteIndex);
    const total = ds.cases.length;
    async function* cases(): AsyncGenerator<CaseInput> {
      for (const c of ds.cases)
        yield { caseId: c.id, images: [c.image], label: c.label, problems: [] };
    }
    const r = await importDataset(
      await db(),
      {
        name: ds.name,
        datasetJson: ds.datasetJson,
        channelNames: ['T1'],
        labels: ds.datasetJson.labels,
      },
      cases(),
      {
        casesTotal: total,
        onProgress: (p) =>
          onEvent({
            phase: p.phase === 'staging' ? 'storing' : p.phase,
            casesDone: p.casesDone,
            casesTotal: total,
            bytesWritten: p.bytesWritten,
          }),
      },
    );
    return {
      datasetId: r.dataset.id,
      name: r.dataset.name,
      kind: 'demo',
      numCases: r.dataset.numCases,
      casesWithProblems: 0,
      skipped: [],
      warnings: [],
      replaced: r.replacedId !== undefined,
    };
  },

  cancelImport(): void {
    current?.abort();
  },

  /**
   * Fingerprint → plan → preprocess one configuration, as nnU-Net's plan_and_preprocess does, each
   * stage stored by the site pipeline (a stage already stored is reused, not computed again).
   */
  async prepare(
    datasetId: string,
    opts: { configuration: '3d_fullres' | '2d'; memoryBudgetMB?: number },
    onEvent: (e: PrepareEvent) => void,
  ): Promise<PrepareSummary> {
    if (current) throw new Error('another job is running; cancel it first');
    const ctrl = new AbortController();
    current = ctrl;
    try {
      const pipeline = new SitePipeline(await IdbSiteStore.open(await db(), datasetId));
      const t0 = performance.now();
      const fp = await pipeline.fingerprint({
        signal: ctrl.signal,
        onProgress: (p) => onEvent({ stage: 'fingerprint', ...p }),
      });
      const t1 = performance.now();
      onEvent({ stage: 'plan', done: 0, total: 1 });
      const plans = pipeline.makePlans(fp, { memoryBudgetMB: opts.memoryBudgetMB });
      await pipeline.savePlans(plans);
      const t2 = performance.now();
      const cfg = plans.configurations[opts.configuration];
      if (!cfg)
        throw new Error(
          `nnU-Net planned no '${opts.configuration}' configuration for this dataset (it planned: ${Object.keys(plans.configurations).join(', ')})`,
        );
      const r = await pipeline.preprocess(plans, opts.configuration, {
        signal: ctrl.signal,
        onProgress: (p) => onEvent({ stage: 'preprocess', ...p }),
      });
      const n = r.computed + r.reused;
      const t3 = performance.now();
      const arch = cfg.architecture?.arch_kwargs as
        { n_stages?: number; features_per_stage?: number[] } | undefined;
      return {
        plansName: plans.plans_name,
        configuration: opts.configuration,
        spacing: cfg.spacing as number[],
        patchSize: cfg.patch_size as number[],
        batchSize: cfg.batch_size as number,
        stages: arch?.n_stages ?? 0,
        features: arch?.features_per_stage ?? [],
        normalization: cfg.normalization_schemes as string[],
        useMaskForNorm: cfg.use_mask_for_norm as boolean[],
        casesPreprocessed: n,
        ms: { fingerprint: t1 - t0, plan: t2 - t1, preprocess: t3 - t2 },
      };
    } finally {
      current = undefined;
    }
  },

  /**
   * Which network the Train tab offers on an adapter with these limits (plan/train-fit.ts):
   * nnU-Net's full plan of `configuration`, or the plan for the memory budget the limits give,
   * with the reason. Plans from the stored fingerprint (computed first if missing).
   */
  async trainFit(
    datasetId: string,
    configuration: '3d_fullres' | '2d',
    limits: BindingLimits,
  ): Promise<TrainFit & { budgetMB: number }> {
    const pipeline = new SitePipeline(await IdbSiteStore.open(await db(), datasetId));
    const dj = pipeline.store.datasetJson;
    if (!dj) throw new Error(`${pipeline.store.datasetName} has no dataset.json`);
    const fp = await pipeline.fingerprint({});
    const budgetMB = defaultMemoryBudgetMB(limits);
    const full = pipeline.makePlans(fp).configurations[configuration];
    const reduced = pipeline.makePlans(fp, { memoryBudgetMB: budgetMB }).configurations[
      configuration
    ];
    if (!full || !reduced)
      throw new Error(`nnU-Net plans no '${configuration}' configuration for this dataset`);
    const fit = chooseTrainFit({
      full,
      reduced,
      budgetMB,
      limits,
      inChannels: Object.keys(dj.channel_names ?? dj.modality ?? {}).length,
      numClasses: Object.keys(dj.labels).length,
    });
    return { ...fit, budgetMB };
  },

  /** What earlier preparation left in the store (plans and preprocessed case counts). */
  async prepared(datasetId: string) {
    const d = await db();
    const out: Array<{ plansName: string; configuration: string; cases: number }> = [];
    for (const name of await listPlans(d, datasetId)) {
      const p = await loadPlans(d, datasetId, name);
      for (const c of Object.keys(p?.configurations ?? {})) {
        const n = (await listPreprocessed(d, datasetId, name, c)).length;
        if (n) out.push({ plansName: name, configuration: c, cases: n });
      }
    }
    return out;
  },

  async datasets() {
    const d = await db();
    const all = await listDatasets(d);
    return Promise.all(
      all.map(async (ds) => ({
        id: ds.id,
        name: ds.name,
        numCases: ds.numCases,
        casesWithProblems: ds.casesWithProblems,
        bytes: ds.bytes,
        channelNames: ds.channelNames,
        labels: ds.labels,
        cases: (await listCases(d, ds.id)).map((c) => ({
          caseId: c.caseId,
          problems: c.problems,
          dims: c.images[0]?.dims,
          spacing: c.images[0]?.spacing,
          hasLabel: !!c.label,
        })),
      })),
    );
  },

  async remove(datasetId: string): Promise<boolean> {
    return deleteDataset(await db(), datasetId);
  },

  async usage() {
    return storageUsage(await db());
  },

  /** Datasets and models stored here, with their bytes (the Data tab's storage card). */
  async storedTotals() {
    return storedTotals(await db());
  },

  /** Deletes every dataset, model, checkpoint and saved federation; the site key stays. */
  async deleteEverything() {
    return deleteEverything(await db());
  },

  /** SHA-256 of each stored volume's voxel bytes (integrity checks; used by tests). */
  async caseDigests(
    datasetId: string,
    caseId: string,
  ): Promise<{ images: string[]; label?: string } | undefined> {
    const v = await loadCaseVolumes(await db(), datasetId, caseId);
    if (!v) return undefined;
    return {
      images: await Promise.all(v.images.map((x) => sha256(x.data))),
      label: v.label ? await sha256(v.label.data) : undefined,
    };
  },
};

export type DataApi = typeof api;
Comlink.expose(api);
