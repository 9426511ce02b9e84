// A FednnU-Net site in a Flower federation: the messages of our ServerApp (flower/fednnunet_app)
// mapped onto the same SiteTrainer as our own federation (pipeline/trainer-site.ts):
//   query.fingerprint  → ConfigRecord 'fingerprint' {fingerprint: JSON, num-cases}
//   query.plan         ← ConfigRecord 'config' {method, configuration, rounds, iters, [aggregate: JSON]}
//                      → ConfigRecord 'plan' {plans, dataset-json, model-json, num-cases} +
//                        ArrayRecord 'arrays' (every parameter: nnU-Net names, PyTorch shapes)
//   train              ← ArrayRecord 'arrays' (the global shared set) + ConfigRecord 'config' {server-round}
//                      → ArrayRecord 'arrays' (the same keys, after one round of `iters` iterations) +
//                        MetricRecord 'metrics' {loss, pseudo-dice, num-examples, …}
//   query.final        ← ArrayRecord 'arrays' (the final global shared set)
//                      → MetricRecord 'metrics' {dice (when measured), num-examples}
// Fingerprint and plans travel as JSON strings in ConfigRecords. Platform-free.
import type { SiteTrainer } from '../site-types.ts';
import type { FederationConfig } from '../protocol.ts';
import { isMethod, METHOD_NAMES } from '../methods.ts';
import type { NamedWeights } from '../../model/named-weights.ts';
import { sameShape } from '../../model/named-weights.ts';
import { modelMeta } from '../../model/model-folder.ts';
import { arraysToWeights, weightsToArrays } from './arrays.ts';
import { type ConfigValue, type FlowerRecord, type RecordDict } from './objects.ts';
import type { IncomingMessage } from './node.ts';

/** What a site needs beyond SiteTrainer: the plans it trains with, for the reply and the model folder. */
export interface FlowerSiteTrainer extends SiteTrainer {
  readonly plans?: object;
  datasetJson(): object;
  /** The federation's `tiny` run-config key (the small CPU-sized network), before planning. */
  useTiny?(on: boolean): void;
  /** Rebuilds the planned network and its training state from the site's saved state (a reload). */
  restore?(config: FederationConfig): Promise<boolean>;
  /**
   * The metrics of `round` when the restored training state already holds that round (the site
   * stopped after saving it, before its reply went out); undefined when it still has to train it.
   */
  savedRound?(round: number): Record<string, number> | undefined;
}

export interface FlowerSiteState {
  phase: 'idle' | 'planned' | 'training' | 'done';
  config?: FederationConfig;
  rounds: Array<{ round: number; metrics: Record<string, number>; keys: string[] }>;
  finalMetrics?: Record<string, number>;
  /** The parameter names the last train message carried (the federation's shared set). */
  sharedKeys?: string[];
}

const MAX_JSON_CHARS = 64 * 2 ** 20;

function config(rd: RecordDict, name = 'config'): Map<string, ConfigValue> {
  const r = rd.get(name);
  if (!r) return new Map();
  if (r.kind !== 'config')
    throw new Error(`record '${name}' is a ${r.kind} record, not a config record`);
  return r.items;
}

function str(c: Map<string, ConfigValue>, key: string): string | undefined {
  const v = c.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new Error(`config '${key}' must be a string`);
  return v;
}

function int(c: Map<string, ConfigValue>, key: string, min: number, dflt?: number): number {
  const v = c.get(key);
  if (v === undefined && dflt !== undefined) return dflt;
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min)
    throw new Error(`config '${key}' must be an integer ≥ ${min} (got ${String(v)})`);
  return n;
}

function json(c: Map<string, ConfigValue>, key: string): Record<string, unknown> | undefined {
  const s = str(c, key);
  if (s === undefined) return undefined;
  if (s.length > MAX_JSON_CHARS) throw new Error(`config '${key}' is too large`);
  const v: unknown = JSON.parse(s);
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new Error(`config '${key}' is not a JSON object`);
  return v as Record<string, unknown>;
}

function arrays(rd: RecordDict, name = 'arrays'): NamedWeights {
  const r = rd.get(name);
  if (!r || r.kind !== 'array') throw new Error(`the message has no array record '${name}'`);
  return arraysToWeights(r.items);
}

const configRecord = (items: Record<string, ConfigValue>): FlowerRecord => ({
  kind: 'config',
  items: new Map(Object.entries(items)),
});
const metricRecord = (items: Record<string, number | bigint>): FlowerRecord => ({
  kind: 'metric',
  items: new Map(Object.entries(items)),
});

/** The handler a FlowerNode serves for one FednnU-Net site, and what it has done so far. */
export class FlowerSite {
  readonly state: FlowerSiteState = { phase: 'idle', rounds: [] };

  constructor(
    private readonly trainer: FlowerSiteTrainer,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** True once the final model arrived (the node may leave when the run has finished). */
  get done(): boolean {
    return this.state.phase === 'done';
  }

  /**
   * Continues a federation this site had planned before it restarted (a reloaded tab): the
   * network and training state come back from the trainer's saved state, so the next train
   * message finds the site planned. False when nothing was saved (the site starts as new).
   */
  async resume(config: FederationConfig, rounds: FlowerSiteState['rounds'] = []): Promise<boolean> {
    if (this.state.phase !== 'idle') throw new Error('resume: this site is already running');
    if (!this.trainer.restore || !(await this.trainer.restore(config))) return false;
    this.state.config = config;
    this.state.rounds = [...rounds];
    this.state.phase = rounds.length ? 'training' : 'planned';
    this.log(`resumed after ${rounds.length} round(s)`);
    return true;
  }

  readonly handle = async (msg: IncomingMessage): Promise<RecordDict> => {
    switch (msg.messageType) {
      case 'query.fingerprint':
        return this.fingerprint();
      case 'query.plan':
        return this.plan(msg.content);
      case 'train':
        return this.train(msg.content);
      case 'query.final':
        return this.final(msg.content);
      default:
        throw new Error(
          `message type '${msg.messageType}' is not one FednnU-Net's ServerApp sends`,
        );
    }
  };

  private async fingerprint(): Promise<RecordDict> {
    const fp = await this.trainer.localFingerprint();
    this.log(`fingerprint sent (${this.trainer.numCases} cases)`);
    return new Map([
      [
        'fingerprint',
        configRecord({
          fingerprint: JSON.stringify(fp),
          'num-cases': BigInt(this.trainer.numCases),
        }),
      ],
    ]);
  }

  private async plan(rd: RecordDict): Promise<RecordDict> {
    const c = config(rd);
    const method = str(c, 'method') ?? 'ffe';
    if (!isMethod(method) || method === 'fedprox')
      throw new Error(
        `method '${method}' is not offered over Flower (${METHOD_NAMES.filter((m) => m !== 'fedprox').join(', ')})`,
      );
    const configuration = str(c, 'configuration') ?? '3d_fullres';
    if (configuration !== '3d_fullres' && configuration !== '2d')
      throw new Error(`configuration '${configuration}' is not 3d_fullres or 2d`);
    const cfg: FederationConfig = {
      method,
      configuration,
      rounds: int(c, 'rounds', 1),
      itersPerRound: int(c, 'iters', 1),
      minSites: int(c, 'min-nodes', 1, 1),
      roundDeadlineMs: 24 * 3600_000,
      weighting: 'cases',
      encoding: 'fp32',
    };
    const tiny = c.get('tiny');
    if (tiny !== undefined && typeof tiny !== 'boolean')
      throw new Error(`config 'tiny' must be a bool`);
    this.trainer.useTiny?.(tiny === true);
    const aggregate = json(c, 'aggregate');
    if (method === 'ffe' && !aggregate)
      throw new Error('FFE planning needs the merged fingerprint');
    await this.trainer.prepare(aggregate ?? null, cfg);
    this.state.config = cfg;
    this.state.phase = 'planned';
    const plans = JSON.stringify(this.trainer.plans);
    const w = await this.trainer.weights();
    this.log(`planned (${method}): ${w.size} tensors`);
    return new Map<string, FlowerRecord>([
      [
        'plan',
        configRecord({
          plans,
          'dataset-json': JSON.stringify(this.trainer.datasetJson()),
          // model.json for the ServerApp's model folder (architecture block, channels, heads).
          'model-json': JSON.stringify(
            modelMeta({
              plans: this.trainer.plans!,
              datasetJson: this.trainer.datasetJson() as never,
              configuration: cfg.configuration,
            }),
          ),
          'num-cases': BigInt(this.trainer.numCases),
        }),
      ],
      ['arrays', { kind: 'array', items: weightsToArrays(w) }],
    ]);
  }

  private async loadGlobal(rd: RecordDict): Promise<string[]> {
    const global = arrays(rd);
    const mine = await this.trainer.weights();
    for (const [name, t] of global) {
      const own = mine.get(name);
      if (!own) throw new Error(`the global model has '${name}', which this site's network lacks`);
      if (!sameShape(own.shape, t.shape))
        throw new Error(`'${name}': global shape [${t.shape}], this site's [${own.shape}]`);
    }
    await this.trainer.loadShared(global);
    return [...global.keys()];
  }

  private async train(rd: RecordDict): Promise<RecordDict> {
    if (this.state.phase !== 'planned' && this.state.phase !== 'training')
      throw new Error('train before plan: this site has not planned yet');
    const round = int(config(rd), 'server-round', 1);
    // A restart between saving the trained round and replying: training it again would add an
    // epoch; the saved state is this round's result, so it is what goes back.
    const saved = this.trainer.savedRound?.(round);
    let metrics: Record<string, number>;
    let keys: string[];
    if (saved) {
      keys = [...arrays(rd).keys()];
      metrics = saved;
      this.log(`round ${round} was trained and saved before the restart: replying with it`);
    } else {
      keys = await this.loadGlobal(rd);
      this.state.phase = 'training';
      metrics = await this.trainer.train(round, this.state.config!.itersPerRound);
    }
    this.state.phase = 'training';
    this.state.sharedKeys = keys;
    const after = await this.trainer.weights();
    const missing = keys.find((k) => !after.has(k));
    if (missing)
      throw new Error(`the global model has '${missing}', which this site's network lacks`);
    // The reply carries exactly the keys the server sent: the shared set (all of them under FFE).
    const reply: NamedWeights = new Map(keys.map((k) => [k, after.get(k)!]));
    this.state.rounds = this.state.rounds.filter((r) => r.round !== round);
    this.state.rounds.push({ round, metrics, keys });
    this.log(`round ${round}: loss ${metrics.loss?.toFixed(4)}, ${keys.length} tensors sent`);
    const m: Record<string, number | bigint> = { 'num-examples': BigInt(this.trainer.numCases) };
    if (metrics.loss !== undefined) m.loss = metrics.loss;
    if (metrics.pseudoDice !== undefined) m['pseudo-dice'] = metrics.pseudoDice;
    if (metrics.valLoss !== undefined) m['val-loss'] = metrics.valLoss;
    if (metrics.diceBefore !== undefined) m['dice-before'] = metrics.diceBefore;
    return new Map<string, FlowerRecord>([
      ['arrays', { kind: 'array', items: weightsToArrays(reply) }],
      ['metrics', metricRecord(m)],
    ]);
  }

  private async final(rd: RecordDict): Promise<RecordDict> {
    if (this.state.phase === 'idle') throw new Error('final model before plan');
    const keys = await this.loadGlobal(rd);
    const global = await this.trainer.weights();
    await this.trainer.finish?.(
      global,
      keys.map((k) => ({ name: k, shape: global.get(k)!.shape })),
    );
    const dice = (this.trainer as { finalDice?: number }).finalDice;
    const m: Record<string, number | bigint> = { 'num-examples': BigInt(this.trainer.numCases) };
    if (dice !== undefined && Number.isFinite(dice)) m.dice = dice;
    this.state.finalMetrics = Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number(v)]));
    this.state.phase = 'done';
    this.log(
      `final model loaded (${keys.length} shared tensors)${m.dice !== undefined ? `, Dice ${Number(m.dice).toFixed(4)}` : ''}`,
    );
    return new Map([['metrics', metricRecord(m)]]);
  }
}
