// A federation site's held-out report (fed/protocol.ts HeldOutReport): once the federation
// finished, the Dice of the final model it holds and of the model it trained alone on the Train
// tab (when there is one for this dataset), on cases neither trained on, with `fednnunet
// compare`'s evaluation: the predictor of the Predict tab (preprocess with the model's own plans,
// Gaussian sliding window, export to the raw geometry, no mirroring) and nnU-Net's Dice
// (summary.json's foreground mean over the cases). Once, at the end: a sliding window over whole
// cases costs more than a round's training, so browser sites do not validate every round.
// Platform-free: the cases, the models and the engine are given.
import type { HeldOutReport } from '../fed/protocol.ts';
import { predictCase, type PredictionContext } from '../infer/predictor.ts';
import type { PredictTiles } from '../infer/sliding-window.ts';
import { labelInfo } from '../model/labels.ts';
import type { ModelProvenance } from '../model/model-folder.ts';
import type { SiteCase } from '../pipeline/site-store.ts';
import { evaluateCase, summarize } from './metrics.ts';

/** What the predictor needs of a model (a DecodedModelFolder is one). */
export type ScoredModel = PredictionContext & { provenance?: ModelProvenance };

/** A tile predictor over one model's weights (onnxruntime-web or tfjs in the browser). */
export interface ModelEngine {
  predictTiles: PredictTiles;
  tileBatch: number;
  release(): Promise<void>;
}

export interface HeldOutInput<M extends ScoredModel = ScoredModel> {
  datasetName: string;
  /** The federation's validation cases at this site: the federation never trained on them. */
  heldOutIds: readonly string[];
  readCase(id: string): Promise<SiteCase>;
  federated: M;
  /** The site's own model of this dataset (the Train tab's), if any. */
  local?: M;
  open(model: M): Promise<ModelEngine>;
  log?: (line: string) => void;
}

/**
 * The cases the report is over: the federation's held-out cases, minus those the local model
 * trained on. A local model that does not record its training cases (or records another
 * dataset's) cannot be shown held out, so it is left out, as is one that trained on all of them.
 */
export function reportCases(
  datasetName: string,
  heldOutIds: readonly string[],
  local: ScoredModel | undefined,
): { ids: string[]; useLocal: boolean; why?: string } {
  if (!local) return { ids: [...heldOutIds], useLocal: false };
  const t = local.provenance?.training_cases as { dataset?: unknown; train?: unknown } | undefined;
  if (!t || t.dataset !== datasetName || !Array.isArray(t.train))
    return {
      ids: [...heldOutIds],
      useLocal: false,
      why: 'the local model does not record which cases of this dataset it trained on',
    };
  const trained = new Set(t.train.map(String));
  const ids = heldOutIds.filter((id) => !trained.has(id));
  if (ids.length === 0)
    return {
      ids: [...heldOutIds],
      useLocal: false,
      why: "the local model trained on every one of the federation's held-out cases",
    };
  return { ids, useLocal: true };
}

/**
 * nnU-Net's foreground-mean Dice of `model` over `cases` (NaN when no case has foreground); also
 * `fednnunet compare`'s evaluation. `site` and `name` label the cases and the model in errors.
 */
export async function meanDice(
  model: PredictionContext,
  cases: readonly SiteCase[],
  engine: Pick<ModelEngine, 'predictTiles' | 'tileBatch'>,
  o: { stepSize?: number; site?: string; name?: string } = {},
): Promise<number> {
  const info = labelInfo(model.datasetJson);
  const results = [];
  for (const c of cases) {
    const ref = o.site ? `${o.site}/${c.id}` : c.id;
    if (!c.label) throw new Error(`${ref}: held-out case has no label`);
    const res = await predictCase(
      c.image,
      { plans: model.plans, configuration: model.configuration, datasetJson: model.datasetJson },
      engine.predictTiles,
      { stepSize: o.stepSize, tileBatch: engine.tileBatch },
    );
    results.push(
      evaluateCase(
        c.label.data,
        res.segmentation.data,
        info.foreground,
        { reference_file: ref, prediction_file: o.name ?? 'held-out' },
        info.ignoreLabel,
      ),
    );
  }
  return summarize(results, info.foreground).foreground_mean.Dice;
}

const isDice = (d: number): boolean => Number.isFinite(d) && d >= 0 && d <= 1;

/**
 * The report for this site, or undefined when it holds no case out or the federated model's Dice
 * is undefined (no foreground in any held-out case): the host's table then has no row for it.
 */
export async function heldOutReport<M extends ScoredModel>(
  o: HeldOutInput<M>,
): Promise<Omit<HeldOutReport, 'round'> | undefined> {
  const log = o.log ?? (() => undefined);
  if (o.heldOutIds.length === 0) return undefined;
  const pick = reportCases(o.datasetName, o.heldOutIds, o.local);
  if (pick.why) log(`held-out Dice: no local column (${pick.why})`);
  const cases: SiteCase[] = [];
  for (const id of pick.ids) cases.push(await o.readCase(id));
  const score = async (m: M): Promise<number> => {
    const engine = await o.open(m);
    try {
      return await meanDice(m, cases, engine);
    } finally {
      await engine.release();
    }
  };
  const federated = await score(o.federated);
  if (!isDice(federated)) {
    log('held-out Dice: undefined for the federated model (no foreground in the held-out cases)');
    return undefined;
  }
  const local = pick.useLocal ? await score(o.local!) : undefined;
  return {
    cases: cases.length,
    federated,
    ...(local !== undefined && isDice(local) ? { local } : {}),
  };
}
