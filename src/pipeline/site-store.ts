// Where a site's pipeline keeps its inputs and stage outputs. One interface, two homes: the
// browser's IndexedDB (idb-site-store.ts) and memory over cases read from anywhere, e.g. a raw
// nnU-Net folder on disk (the CLI, the Node simulator, tests). The pipeline (site-pipeline.ts)
// only talks to this interface, so every stage runs the same way in the tab, the worker and Node.
import type { CaseFingerprint } from '../fingerprint/case.ts';
import type { DatasetFingerprint } from '../fingerprint/types.ts';
import type { FileSource } from '../io/file-source.ts';
import { loadCase, openRawDataset, stackChannels } from '../io/raw-dataset.ts';
import type { Volume } from '../io/volume.ts';
import type { DatasetJson, Plans } from '../plan/types.ts';
import type { PreprocessedCase } from '../preprocess/preprocess.ts';

/** One raw case as the stages take it: all channels stacked (see stackChannels). */
export interface SiteCase {
  id: string;
  image: Volume;
  label?: Volume;
}

export interface SiteStore {
  /** nnU-Net's dataset folder name, e.g. Dataset801_PhantomMR (recorded in the plans). */
  readonly datasetName: string;
  /** undefined for loose scans (no dataset.json): they can be segmented, not trained on. */
  readonly datasetJson: DatasetJson | undefined;
  /** The cases the stages run over, in a fixed (sorted) order. */
  readonly caseIds: readonly string[];
  /** The raw voxels of one case: the expensive read the pipeline does at most once per stage. */
  readCase(caseId: string): Promise<SiteCase>;

  loadCaseFingerprints(): Promise<Map<string, CaseFingerprint>>;
  saveCaseFingerprint(caseId: string, fp: CaseFingerprint): Promise<void>;
  loadDatasetFingerprint(): Promise<DatasetFingerprint | undefined>;
  saveDatasetFingerprint(fp: DatasetFingerprint): Promise<void>;

  listPlans(): Promise<string[]>;
  loadPlans(plansName: string): Promise<Plans | undefined>;
  savePlans(plansName: string, plans: Plans): Promise<void>;

  /** Case ids preprocessed under (plansName, configuration); reads no arrays. */
  listPreprocessed(plansName: string, configuration: string): Promise<string[]>;
  loadPreprocessed(
    plansName: string,
    configuration: string,
    caseId: string,
  ): Promise<PreprocessedCase | undefined>;
  savePreprocessed(
    plansName: string,
    configuration: string,
    caseId: string,
    pc: PreprocessedCase,
  ): Promise<void>;
  deletePreprocessed(plansName: string, configuration: string): Promise<void>;
}

export interface MemorySiteStoreInit {
  datasetName: string;
  datasetJson: DatasetJson | undefined;
  caseIds: readonly string[];
  readCase: (caseId: string) => Promise<SiteCase> | SiteCase;
}

/** Stage outputs in memory, raw cases from a callback (a folder, generated phantoms, …). */
export class MemorySiteStore implements SiteStore {
  readonly datasetName: string;
  readonly datasetJson: DatasetJson | undefined;
  readonly caseIds: readonly string[];
  private readonly caseFps = new Map<string, CaseFingerprint>();
  private datasetFp?: DatasetFingerprint;
  private readonly plans = new Map<string, Plans>();
  private readonly pre = new Map<string, Map<string, PreprocessedCase>>();

  constructor(private readonly init: MemorySiteStoreInit) {
    this.datasetName = init.datasetName;
    this.datasetJson = init.datasetJson;
    this.caseIds = [...init.caseIds];
  }

  async readCase(caseId: string): Promise<SiteCase> {
    return this.init.readCase(caseId);
  }

  async loadCaseFingerprints() {
    return new Map(this.caseFps);
  }
  async saveCaseFingerprint(caseId: string, fp: CaseFingerprint) {
    this.caseFps.set(caseId, fp);
  }
  async loadDatasetFingerprint() {
    return this.datasetFp;
  }
  async saveDatasetFingerprint(fp: DatasetFingerprint) {
    this.datasetFp = fp;
  }

  async listPlans() {
    return [...this.plans.keys()].sort();
  }
  async loadPlans(name: string) {
    return this.plans.get(name);
  }
  async savePlans(name: string, plans: Plans) {
    this.plans.set(name, structuredClone(plans));
  }

  private slot(plansName: string, configuration: string, create = false) {
    const k = JSON.stringify([plansName, configuration]);
    let m = this.pre.get(k);
    if (!m && create) this.pre.set(k, (m = new Map()));
    return m;
  }
  async listPreprocessed(plansName: string, configuration: string) {
    return [...(this.slot(plansName, configuration)?.keys() ?? [])].sort();
  }
  async loadPreprocessed(plansName: string, configuration: string, caseId: string) {
    return this.slot(plansName, configuration)?.get(caseId);
  }
  async savePreprocessed(
    plansName: string,
    configuration: string,
    caseId: string,
    pc: PreprocessedCase,
  ) {
    this.slot(plansName, configuration, true)!.set(caseId, pc);
  }
  async deletePreprocessed(plansName: string, configuration: string) {
    this.pre.delete(JSON.stringify([plansName, configuration]));
  }
}

/**
 * A raw nnU-Net dataset folder (dataset.json, imagesTr, labelsTr) as a site store: its labelled
 * cases, read one at a time from the FileSource; stage outputs kept in memory.
 */
export async function rawFolderStore(
  src: FileSource,
  datasetName = src.name,
): Promise<MemorySiteStore> {
  const ds = await openRawDataset(src);
  if (!ds.json || ds.problems.length)
    throw new Error(`${src.name}: ${ds.problems.join('; ') || 'no dataset.json'}`);
  const cases = new Map(ds.cases.filter((c) => c.label).map((c) => [c.id, c]));
  if (cases.size === 0) throw new Error(`${src.name}: no labelled training cases`);
  return new MemorySiteStore({
    datasetName,
    datasetJson: ds.json,
    caseIds: [...cases.keys()],
    readCase: async (id) => {
      const c = await loadCase(src, cases.get(id)!);
      return {
        id,
        image: c.images.length === 1 ? c.images[0] : stackChannels(c.images),
        label: c.label,
      };
    },
  });
}

/** Cases already in memory (generated phantoms, demo sites, tests) as a site store. */
export function memoryCasesStore(
  datasetName: string,
  datasetJson: DatasetJson | undefined,
  cases: readonly SiteCase[],
): MemorySiteStore {
  const byId = new Map(cases.map((c) => [c.id, c]));
  if (byId.size !== cases.length) throw new Error(`${datasetName}: case ids repeat`);
  return new MemorySiteStore({
    datasetName,
    datasetJson,
    caseIds: cases.map((c) => c.id),
    readCase: (id) => byId.get(id)!,
  });
}
