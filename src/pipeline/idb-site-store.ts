// A dataset in the browser's IndexedDB (src/store) as a site store: raw cases as imported, and
// every stage's output kept so that a reload, a second training or a federation reuses it.
import type { CaseFingerprint } from '../fingerprint/case.ts';
import type { DatasetFingerprint } from '../fingerprint/types.ts';
import { stackChannels } from '../io/raw-dataset.ts';
import type { DatasetJson, Plans } from '../plan/types.ts';
import type { PreprocessedCase } from '../preprocess/preprocess.ts';
import type { StoreDB } from '../store/db.ts';
import { getDataset, listCases, loadCaseVolumes } from '../store/datasets.ts';
import {
  loadCaseFingerprints,
  loadDatasetFingerprint,
  saveCaseFingerprint,
  saveDatasetFingerprint,
} from '../store/fingerprints.ts';
import { listPlans, loadPlans, savePlans } from '../store/plans.ts';
import {
  deletePreprocessed,
  listPreprocessed,
  loadPreprocessed,
  savePreprocessed,
} from '../store/preprocessed.ts';
import type { SiteCase, SiteStore } from './site-store.ts';

export class IdbSiteStore implements SiteStore {
  private constructor(
    private readonly db: StoreDB,
    readonly datasetId: string,
    readonly datasetName: string,
    readonly datasetJson: DatasetJson | undefined,
    readonly caseIds: readonly string[],
  ) {}

  /** The stored dataset `datasetId`; throws when it is not in this browser. */
  static async open(db: StoreDB, datasetId: string): Promise<IdbSiteStore> {
    const ds = await getDataset(db, datasetId);
    if (!ds) throw new Error(`dataset ${datasetId} is not in this browser (deleted?)`);
    const dj = ds.datasetJson
      ? { ...(ds.datasetJson as DatasetJson), numTraining: ds.numCases }
      : undefined;
    const ids = (await listCases(db, datasetId)).map((c) => c.caseId);
    return new IdbSiteStore(db, datasetId, ds.name, dj, ids);
  }

  async readCase(caseId: string): Promise<SiteCase> {
    const v = await loadCaseVolumes(this.db, this.datasetId, caseId);
    if (!v)
      throw new Error(
        `store: case '${caseId}' of ${this.datasetName} disappeared (dataset deleted?)`,
      );
    return {
      id: caseId,
      image: v.images.length === 1 ? v.images[0] : stackChannels(v.images),
      label: v.label,
    };
  }

  loadCaseFingerprints(): Promise<Map<string, CaseFingerprint>> {
    return loadCaseFingerprints(this.db, this.datasetId);
  }
  saveCaseFingerprint(caseId: string, fp: CaseFingerprint): Promise<void> {
    return saveCaseFingerprint(this.db, this.datasetId, caseId, fp);
  }
  loadDatasetFingerprint(): Promise<DatasetFingerprint | undefined> {
    return loadDatasetFingerprint(this.db, this.datasetId);
  }
  saveDatasetFingerprint(fp: DatasetFingerprint): Promise<void> {
    return saveDatasetFingerprint(this.db, this.datasetId, fp);
  }

  listPlans(): Promise<string[]> {
    return listPlans(this.db, this.datasetId);
  }
  loadPlans(plansName: string): Promise<Plans | undefined> {
    return loadPlans(this.db, this.datasetId, plansName);
  }
  savePlans(plansName: string, plans: Plans): Promise<void> {
    return savePlans(this.db, this.datasetId, plans, plansName);
  }

  listPreprocessed(plansName: string, configuration: string): Promise<string[]> {
    return listPreprocessed(this.db, this.datasetId, plansName, configuration);
  }
  loadPreprocessed(
    plansName: string,
    configuration: string,
    caseId: string,
  ): Promise<PreprocessedCase | undefined> {
    return loadPreprocessed(this.db, this.datasetId, plansName, configuration, caseId);
  }
  savePreprocessed(
    plansName: string,
    configuration: string,
    caseId: string,
    pc: PreprocessedCase,
  ): Promise<void> {
    return savePreprocessed(this.db, this.datasetId, plansName, configuration, caseId, pc);
  }
  deletePreprocessed(plansName: string, configuration: string): Promise<void> {
    return deletePreprocessed(this.db, this.datasetId, plansName, configuration);
  }
}
