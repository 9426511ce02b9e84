// One site's pipeline: fingerprint → plan → preprocess → training cases, each stage computed
// once and kept in the site's store (site-store.ts), then reused by the Data tab, local training,
// a federation (FFE or local plans) and a reload. The same code runs over IndexedDB in the browser
// and over a raw folder in Node (CLI, simulator). Platform-free.
//
// Reuse rules:
// - fingerprint: the stored dataset fingerprint; else the stored per-case fingerprints, computing
//   only the missing cases (a cancelled run continues). A store's cases never change (a re-import
//   is a new dataset), so a stored fingerprint stays valid.
// - preprocessed arrays: kept under a plans record; they are reused for any plans whose
//   preprocessKey (the fields run_case reads) equals that record's. Saving plans over a record
//   whose key changed drops that record's arrays, so stored arrays always match their plans.
import { datasetFingerprint } from '../fingerprint/dataset.ts';
import { extractFingerprintFromCases } from '../fingerprint/extract.ts';
import type { CaseFingerprint } from '../fingerprint/case.ts';
import type { DatasetFingerprint } from '../fingerprint/types.ts';
import { planExperiment } from '../plan/planner.ts';
import type { ConfigurationPlan, DatasetJson, Plans } from '../plan/types.ts';
import { runCase, type PreprocessedCase, type PreprocessPlans } from '../preprocess/preprocess.ts';
import { tinyConfiguration, type TinyOptions } from '../train/tiny.ts';
import { trainerCase, type TrainerCase } from '../train/trainer.ts';
import { keyTag, preprocessKey } from './preprocess-key.ts';
import type { SiteCase, SiteStore } from './site-store.ts';

/** The plans name nnU-Net's planner gives a dataset's own plans. */
export const LOCAL_PLANS = 'nnUNetPlans';

export interface StageProgress {
  done: number;
  total: number;
  caseId: string;
}

export interface StageOptions {
  signal?: AbortSignal;
  onProgress?: (p: StageProgress) => void;
}

export interface PlanOptions {
  memoryBudgetMB?: number;
  plansName?: string;
}

export interface PreprocessOptions extends StageOptions {
  /**
   * Name for a new plans record when no stored plans preprocess the same way (default: the plans'
   * own plans_name, or that name plus the key's tag when it is taken by different plans).
   */
  plansName?: string;
}

export interface PreprocessResult {
  /** The plans record the arrays are stored under. */
  plansName: string;
  /** Cases preprocessed now / found stored. */
  computed: number;
  reused: number;
}

// In a worker, a cancel arrives as a message: let the event loop run between cases.
const tick = () => new Promise<void>((r) => setTimeout(r, 0));

export class SitePipeline {
  constructor(readonly store: SiteStore) {}

  get numCases(): number {
    return this.store.caseIds.length;
  }

  private datasetJson(): DatasetJson {
    const dj = this.store.datasetJson;
    if (!dj)
      throw new Error(
        `${this.store.datasetName} has no dataset.json (imported as loose scans): it can be segmented, not trained on`,
      );
    return dj;
  }

  /** nnU-Net's dataset fingerprint of the site's cases (stored; computed only where missing). */
  async fingerprint(o: StageOptions = {}): Promise<DatasetFingerprint> {
    const stored = await this.store.loadDatasetFingerprint();
    if (stored) return stored;
    const ids = this.store.caseIds;
    if (ids.length === 0) throw new Error('no training cases to fingerprint');
    const have = await this.store.loadCaseFingerprints();
    const missing = ids.filter((id) => !have.has(id));
    const already = ids.length - missing.length;
    if (missing.length) {
      const store = this.store;
      async function* cases() {
        for (const id of missing) yield await store.readCase(id);
      }
      const r = await extractFingerprintFromCases(cases(), {
        total: ids.length,
        signal: o.signal,
        onCase: (id, fp) => {
          have.set(id, fp);
          return this.store.saveCaseFingerprint(id, fp);
        },
        onProgress: (p) =>
          o.onProgress?.({ done: already + p.done, total: ids.length, caseId: p.caseId }),
      });
      if (missing.length === ids.length) {
        await this.store.saveDatasetFingerprint(r.fingerprint);
        return r.fingerprint;
      }
    }
    const fp = datasetFingerprint(ids.map((id) => have.get(id) as CaseFingerprint));
    await this.store.saveDatasetFingerprint(fp);
    return fp;
  }

  /** nnU-Net's ExperimentPlanner on `fingerprint` (the local one, or an FFE aggregate). Pure. */
  makePlans(fingerprint: DatasetFingerprint, o: PlanOptions = {}): Plans {
    return planExperiment(fingerprint, this.datasetJson(), {
      datasetName: this.store.datasetName,
      plansName: o.plansName,
      memoryBudgetMB: o.memoryBudgetMB,
    });
  }

  /** Saves plans; arrays stored under that name by plans that preprocess differently are dropped. */
  async savePlans(plans: Plans, plansName = plans.plans_name): Promise<void> {
    const old = await this.store.loadPlans(plansName);
    if (old) {
      const dj = this.datasetJson();
      for (const c of Object.keys(old.configurations)) {
        if (this.keyOf(old, c, dj) !== this.keyOf(plans, c, dj))
          await this.store.deletePreprocessed(plansName, c);
      }
    }
    await this.store.savePlans(plansName, plans);
  }

  /** The site's own plans: stored ones, else fingerprint (if needed) → plan → save. */
  async localPlans(o: StageOptions & PlanOptions = {}): Promise<Plans> {
    const stored = await this.store.loadPlans(o.plansName ?? LOCAL_PLANS);
    if (stored) return stored;
    const plans = this.makePlans(await this.fingerprint(o), o);
    await this.savePlans(plans);
    return plans;
  }

  private keyOf(plans: Plans, configuration: string, dj: DatasetJson): string | undefined {
    try {
      return preprocessKey(plans, configuration, dj);
    } catch {
      return undefined; // no such configuration
    }
  }

  /** Where arrays of `plans`/`configuration` live: a stored plans record that preprocesses alike, or a new one. */
  private async home(plans: Plans, configuration: string, wanted?: string): Promise<string> {
    const dj = this.datasetJson();
    const key = preprocessKey(plans, configuration, dj);
    const names = await this.store.listPlans();
    const own = wanted ?? plans.plans_name;
    for (const name of [own, ...names.filter((n) => n !== own)]) {
      if (!names.includes(name)) continue;
      const p = await this.store.loadPlans(name);
      if (p && this.keyOf(p, configuration, dj) === key) return name;
    }
    const name = names.includes(own) ? `${own}_${keyTag(key)}` : own;
    await this.savePlans(plans, name);
    return name;
  }

  /**
   * nnU-Net's DefaultPreprocessor.run_case on one raw case (not stored: the stage itself, for
   * callers that write the arrays elsewhere, e.g. `fednnunet preprocess`). `seed` is the
   * class-location sampler's (nnU-Net's 1234 unless given); the stored stage always uses 1234.
   */
  preprocessCase(
    c: SiteCase,
    plans: Plans | PreprocessPlans,
    configuration: string,
    seed?: number,
  ): PreprocessedCase {
    return runCase(
      c.image,
      c.label ?? null,
      plans as PreprocessPlans,
      configuration,
      this.datasetJson(),
      { seed },
    );
  }

  /**
   * Every case preprocessed for `configuration` (nnU-Net's DefaultPreprocessor) and stored; cases
   * already stored by plans that preprocess alike are not read again. Cancelling keeps the cases done.
   */
  async preprocess(
    plans: Plans,
    configuration: string,
    o: PreprocessOptions = {},
  ): Promise<PreprocessResult> {
    return this.run(plans, configuration, o);
  }

  /** The Trainer's cases: preprocessed (as above) and loaded, each stored case read once. */
  async trainingCases(
    plans: Plans,
    configuration: string,
    o: PreprocessOptions = {},
  ): Promise<TrainerCase[]> {
    const out: TrainerCase[] = [];
    await this.run(plans, configuration, o, out);
    return out;
  }

  private async run(
    plans: Plans,
    configuration: string,
    o: PreprocessOptions,
    out?: TrainerCase[],
  ): Promise<PreprocessResult> {
    const plansName = await this.home(plans, configuration, o.plansName);
    const stored = new Set(await this.store.listPreprocessed(plansName, configuration));
    const ids = this.store.caseIds;
    let computed = 0;
    for (const [i, caseId] of ids.entries()) {
      if (o.signal?.aborted)
        throw new DOMException(
          `preprocessing cancelled after ${i} of ${ids.length} case(s)`,
          'AbortError',
        );
      if (stored.has(caseId)) {
        if (out) {
          const pc = await this.store.loadPreprocessed(plansName, configuration, caseId);
          if (!pc)
            throw new Error(
              `store: preprocessed case ${caseId} of ${this.store.datasetName} disappeared`,
            );
          out.push(trainerCase(caseId, pc));
        }
      } else {
        const c = await this.store.readCase(caseId);
        // The just-computed arrays go to the caller as they are: no read back from the store.
        const pc = this.preprocessCase(c, plans, configuration);
        await this.store.savePreprocessed(plansName, configuration, caseId, pc);
        out?.push(trainerCase(caseId, pc));
        computed++;
        await tick();
      }
      o.onProgress?.({ done: i + 1, total: ids.length, caseId });
    }
    return { plansName, computed, reused: ids.length - computed };
  }
}

export interface PrepareOptions {
  configuration: string;
  /** Given plans are used as they are (no fingerprint); otherwise the site's own plans. */
  plans?: Plans;
  /** Name for a new plans record (see PreprocessOptions.plansName). */
  plansName?: string;
  /** Replace the configuration's network and patch by the tiny preset (true: the defaults). */
  tiny?: boolean | TinyOptions;
  signal?: AbortSignal;
  onProgress?: (stage: 'fingerprint' | 'preprocess', done: number, total: number) => void;
}

export interface PreparedTraining {
  /** The dataset fingerprint, when the plans were the site's own (given plans need none). */
  fingerprint?: DatasetFingerprint;
  /** The plans the run uses (with the tiny preset applied, if asked). */
  plans: Plans;
  cases: TrainerCase[];
}

/** Applies the tiny preset to one configuration of a copy of `plans` (preprocessing unchanged). */
export function withTiny(
  plans: Plans,
  configuration: string,
  tiny: boolean | TinyOptions | undefined,
): Plans {
  const out: Plans = structuredClone(plans);
  const configs = out.configurations as Record<string, ConfigurationPlan | undefined>;
  const base = configs[configuration];
  if (!base)
    throw new Error(
      `plans have no configuration '${configuration}' (have: ${Object.keys(plans.configurations).join(', ')})`,
    );
  if (tiny) configs[configuration] = tinyConfiguration(base, tiny === true ? {} : tiny);
  return out;
}

/** What a Trainer takes, from the site's pipeline: plans (own or given) + training cases. */
export async function prepareTraining(
  pipeline: SitePipeline,
  o: PrepareOptions,
): Promise<PreparedTraining> {
  if (pipeline.numCases < 1) throw new Error('no training cases');
  const fingerprint = o.plans
    ? undefined
    : await pipeline.fingerprint({
        signal: o.signal,
        onProgress: (p) => o.onProgress?.('fingerprint', p.done, p.total),
      });
  const base = o.plans ?? (await pipeline.localPlans());
  const plans = withTiny(base, o.configuration, o.tiny); // checks the configuration before any work
  // Preprocessing reads no field the tiny preset changes: the base plans' arrays serve the tiny run.
  const cases = await pipeline.trainingCases(base, o.configuration, {
    plansName: o.plansName,
    signal: o.signal,
    onProgress: (p) => o.onProgress?.('preprocess', p.done, p.total),
  });
  return { fingerprint, plans, cases };
}
