// A site's side of the federation, platform-free: the page/worker and the Node simulator run
// the same state machine. Transport (WebSocket, PeerJS) and training are injected.
//
// On a dropped connection it reconnects by itself and says hello with its siteId; the relay then
// re-sends what the site needs (aggregate fingerprint, shared spec, the open round). An update
// already computed for the open round is re-sent rather than trained again.
//
// Every frame it sends is signed with the site's key (identity/signed-transport.ts wraps the
// transport); the key is the site's identity at the host, so a reconnect must use the same one.
//
// Under secure aggregation (config.privacy) the site never sends a fingerprint or an update in the
// clear: it trains while the key exchange runs (secagg/site-round.ts), then uploads its masked
// vector; a retried round re-masks the same vector with fresh keys.
import { pick, subtract } from './aggregate.ts';
import { decodeWeights, encodeWeights, type Encoding } from '../model/weights-codec.ts';
import { decodeMessage, encodeMessage, type FederationConfig, type Message } from './protocol.ts';
import { specOf, type NamedWeights, type WeightSpec } from '../model/named-weights.ts';
import { ephemeralIdentity, IdentityError, type SiteIdentity } from './identity/site-key.ts';
import { signedConnect } from './identity/signed-transport.ts';
import { SecureSiteRound } from './secagg/site-round.ts';
import { checkRoundHeadroom, elementBound, encodeSiteVector, noiseDivisor } from './secagg/vector.ts';
import { encodeSummary, ffeLayout } from './secagg/ffe-vector.ts';
import { cryptoGaussian } from './secagg/noise.ts';
import { summarizeFingerprint } from '../fingerprint/ffe.ts';
import { assertDatasetFingerprint, type DatasetFingerprint } from '../fingerprint/types.ts';

export interface Transport {
  send(bytes: Uint8Array): void;
  close(): void;
}

export interface TransportHandlers {
  onMessage(bytes: Uint8Array): void;
  onClose(): void;
}

export type Connect = (h: TransportHandlers) => Promise<Transport>;

/** What a site plugs in: its data, planner and trainer. */
export interface SiteTrainer {
  numCases: number;
  localFingerprint(): Promise<Record<string, unknown>>;
  /** Plan (on the aggregate under FFE, locally otherwise), preprocess, build the network. */
  prepare(aggregateFingerprint: Record<string, unknown> | null, config: FederationConfig): Promise<void>;
  /** A snapshot of the network's weights, all of them, by nnU-Net name (PyTorch layout). */
  weights(): Promise<NamedWeights>;
  /** Overwrites the parameters whose name and shape appear in `shared`; the rest stays local. */
  loadShared(shared: NamedWeights): Promise<void>;
  train(round: number, iters: number): Promise<Record<string, number>>;
  finish?(global: NamedWeights, shared: WeightSpec): Promise<void>;
  /**
   * A site that rejoins after a reload, past planning: rebuild the prepared state (plans,
   * network, optimiser) from what it saved locally. False when nothing was saved.
   */
  restore?(config: FederationConfig): Promise<boolean>;
}

export interface ClientTraffic {
  round: number;
  sent: number;
  received: number;
}

export interface SiteResult {
  siteId: string;
  rounds: number;
  shared: WeightSpec;
  global: NamedWeights;
  traffic: ClientTraffic[];
  metrics: Array<{ round: number; metrics: Record<string, number> }>;
  /** Every message the site sent: type, bytes, round, tensor names (for the egress panel and tests). */
  sentLog: Array<{ type: string; bytes: number; round?: number; tensors?: string[] }>;
  /** DP: the ε spent after each round, as the relay announced it. */
  privacy: PrivacySpent[];
}

export interface PrivacySpent {
  round: number;
  epsilon: number;
  delta: number;
  noiseMultiplier: number;
}

export interface SiteClientOptions {
  connect: Connect;
  token: string;
  siteName: string;
  trainer: SiteTrainer;
  /** Encoding of uploads; the relay's config wins when it names one. */
  encoding?: Encoding;
  siteId?: string;
  onSiteId?: (id: string) => void;
  log?: (line: string) => void;
  reconnect?: { initialMs: number; maxMs: number; maxTries: number };
  /** Every message this site sends, as it is sent (the "What leaves this browser" panel). */
  onSent?: (m: SiteResult['sentLog'][number]) => void;
  /**
   * The key this site signs with (a browser's is kept in IndexedDB, see store/site-key.ts).
   * Default: a key made for this client and held in memory, the same for all its reconnects.
   */
  identity?: SiteIdentity | (() => Promise<SiteIdentity>);
  /**
   * A workshop host's key fingerprint (from the join link): the host must prove this key on every
   * connection before the site sends anything (identity/host-proof.ts); otherwise the site stops.
   */
  hostKey?: string;
  /** Say 0 cases in hello (a site that knows the federation is secure: the count is in its masked vector). */
  hideCaseCount?: boolean;
  /** The relay's DP accounting after each round. */
  onPrivacy?: (p: PrivacySpent) => void;
}

export class FederationError extends Error {}

export class SiteClient {
  private transport?: Transport;
  private siteId?: string;
  private config?: FederationConfig;
  private shared?: WeightSpec;
  private sentFingerprint = false;
  private sentSpec = false;
  private preparing?: Promise<void>;
  /**
   * The last update sent, kept even after the relay accepted it: a relay that crashes before
   * closing the round loses what it had accepted, and re-opens the round after its restart.
   */
  private lastUpdate?: { round: number; bytes: Uint8Array };
  private trainingRound = 0;
  private done = false;
  private stopped = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly traffic = new Map<number, ClientTraffic>();
  private currentRound = 0;
  private readonly metrics: SiteResult['metrics'] = [];
  private readonly sentLog: SiteResult['sentLog'] = [];
  private readonly privacy: PrivacySpent[] = [];
  /** Secure aggregation: the current attempt, this round's vector (trained once), the FFE vector. */
  private secureRound?: SecureSiteRound;
  private work?: { round: number; vector: Promise<Uint32Array> };
  private ffeVector?: Promise<Uint32Array>;
  /** Training runs outside the message queue under secure aggregation; trainer calls chain here. */
  private trainerBusy: Promise<unknown> = Promise.resolve();
  private resolve!: (r: SiteResult) => void;
  private reject!: (e: Error) => void;
  private readonly log: (l: string) => void;
  private readonly open: Connect;

  constructor(private readonly o: SiteClientOptions) {
    this.siteId = o.siteId;
    this.log = o.log ?? (() => undefined);
    let identity: Promise<SiteIdentity> | undefined;
    const given = o.identity;
    const getIdentity = () => (identity ??= typeof given === 'function' ? given() : given ? Promise.resolve(given) : ephemeralIdentity());
    this.open = signedConnect(o.connect, getIdentity, { hostKey: o.hostKey, onError: (e) => this.log(`could not sign a frame: ${e instanceof Error ? e.message : String(e)}`) });
  }

  /** Runs until the federation is done (resolves) or refuses / fails the site (rejects). */
  run(): Promise<SiteResult> {
    const p = new Promise<SiteResult>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    void this.connect(0);
    return p;
  }

  /** Leaves without reconnecting (a site closing its tab); run() rejects. */
  stop(): void {
    this.stopped = true;
    this.transport?.close();
    this.fail(new FederationError('this site left the federation'));
  }

  private count(kind: 'sent' | 'received', n: number): void {
    const t = this.traffic.get(this.currentRound) ?? { round: this.currentRound, sent: 0, received: 0 };
    t[kind] += n;
    this.traffic.set(this.currentRound, t);
  }

  private send(message: Message, payload?: Uint8Array): void {
    const bytes = encodeMessage(message, payload);
    this.count('sent', bytes.length);
    const round = 'round' in message ? message.round : undefined;
    const tensors = 'tensors' in message ? message.tensors.map((t) => t.name) : undefined;
    const entry = { type: message.type, bytes: bytes.length, ...(round !== undefined ? { round } : {}), ...(tensors ? { tensors } : {}) };
    this.sentLog.push(entry);
    this.o.onSent?.(entry);
    this.transport?.send(bytes);
    if (message.type === 'update') this.lastUpdate = { round: message.round, bytes };
  }

  private async connect(attempt: number): Promise<void> {
    const rc = this.o.reconnect ?? { initialMs: 200, maxMs: 5000, maxTries: 60 };
    // A refusal closes the connection; its close may be seen before the refusal is processed.
    if (this.done || this.stopped) return;
    try {
      const t = await this.open({
        onMessage: (b) => {
          this.count('received', b.length);
          this.queue = this.queue.then(() => this.onMessage(b)).catch((e) => this.fail(e));
        },
        onClose: () => {
          this.transport = undefined;
          if (this.done || this.stopped) return;
          this.log('connection lost; reconnecting');
          setTimeout(() => void this.connect(1), rc.initialMs);
        },
      });
      if (this.done || this.stopped) return t.close();
      this.transport = t;
      this.send({ type: 'hello', token: this.o.token, siteName: this.o.siteName, numCases: this.o.hideCaseCount ? 0 : this.o.trainer.numCases, ...(this.siteId ? { siteId: this.siteId } : {}) });
    } catch (e) {
      if (this.stopped) return;
      if (e instanceof IdentityError) return this.fail(e);
      if (attempt >= rc.maxTries) return this.fail(new FederationError(`cannot reach the relay after ${attempt} tries: ${String(e)}`));
      setTimeout(() => void this.connect(attempt + 1), Math.min(rc.maxMs, rc.initialMs * 2 ** attempt));
    }
  }

  private fail(e: unknown): void {
    if (this.done) return;
    this.done = true;
    this.transport?.close();
    this.reject(e instanceof Error ? e : new Error(String(e)));
  }

  private async onMessage(bytes: Uint8Array): Promise<void> {
    if (this.done) return;
    const { message: m, payload } = decodeMessage(bytes);
    switch (m.type) {
      case 'refused':
        throw new FederationError(`the relay refused this site: ${m.reason}`);
      case 'error':
        throw new FederationError(`relay error: ${m.message}`);
      case 'welcome':
        this.siteId = m.siteId;
        this.config = m.config;
        this.o.onSiteId?.(m.siteId);
        if ((m.phase === 'init' || m.phase === 'rounds' || m.phase === 'done') && !this.sentSpec) {
          // Rejoining after a reload: planning is over, so continue from the local save.
          this.preparing ??= this.o.trainer.restore?.(m.config).then((ok) => {
            if (!ok) throw new FederationError('this federation is past planning and this browser has no saved state for it; it cannot rejoin');
          }) ?? Promise.reject(new FederationError('this federation is past planning; a new site cannot join now'));
          await this.preparing;
          this.sentSpec = true;
          this.sentFingerprint = true;
          this.log('rejoined from the saved state');
        } else if (m.phase === 'fingerprint' && m.config.privacy) {
          // Secure FFE: the summary goes only into the secure sum the relay opens (secagg-open).
        } else if (m.phase === 'fingerprint' && !this.sentFingerprint) {
          this.sentFingerprint = true;
          this.send({ type: 'fingerprint', fingerprint: await this.o.trainer.localFingerprint(), numCases: this.o.trainer.numCases });
        } else if (m.phase === 'spec' && m.config.method !== 'ffe') {
          await this.prepareAndDeclare(null);
        }
        return;
      case 'aggregate-fingerprint':
        await this.prepareAndDeclare(m.fingerprint);
        return;
      case 'shared-spec':
        this.shared = m.spec;
        this.log(`sharing ${m.spec.length} tensors, keeping ${m.local} local`);
        return;
      case 'round':
        return this.round(m, payload);
      case 'update-result':
        if (!m.accepted) this.log(`update for round ${m.round} rejected: ${m.reason}`);
        return;
      case 'secagg-open':
        return this.secureOpen(m);
      case 'secagg-keys':
      case 'secagg-inbox':
      case 'secagg-unmask': {
        const sr = this.secureRound;
        if (!sr || !sr.matches(m)) {
          this.log(`ignored a stale ${m.type} (round ${m.round}, attempt ${m.attempt})`);
          return;
        }
        if (m.type === 'secagg-keys') return sr.onKeys(m);
        if (m.type === 'secagg-inbox') return sr.onInbox(m);
        return sr.onUnmask(m);
      }
      case 'round-failed':
        this.log(`${m.reason}${m.retry ? ' (the relay retries with fresh keys)' : ''}`);
        if (this.secureRound?.matches(m)) this.secureRound.cancel();
        return;
      case 'privacy-spent': {
        const p = { round: m.round, epsilon: m.epsilon, delta: m.delta, noiseMultiplier: m.noiseMultiplier };
        this.privacy.push(p);
        this.o.onPrivacy?.(p);
        this.log(`round ${m.round}: differential privacy spent ε = ${m.epsilon.toFixed(3)} (δ = ${m.delta})`);
        return;
      }
      case 'final': {
        await this.trainerBusy.catch(() => undefined);
        const global = decodeWeights(m.tensors, payload);
        await this.o.trainer.loadShared(global);
        await this.o.trainer.finish?.(global, this.shared ?? []);
        this.done = true;
        this.transport?.close();
        this.resolve({
          siteId: this.siteId!,
          rounds: m.round,
          shared: this.shared ?? [],
          global,
          traffic: [...this.traffic.values()].sort((a, b) => a.round - b.round),
          metrics: this.metrics,
          sentLog: this.sentLog,
          privacy: this.privacy,
        });
        return;
      }
      default:
        throw new FederationError(`unexpected message '${m.type}' from the relay`);
    }
  }

  private async prepareAndDeclare(aggregate: Record<string, unknown> | null): Promise<void> {
    if (this.sentSpec) return;
    this.preparing ??= this.o.trainer.prepare(aggregate, this.config!);
    await this.preparing;
    const spec = specOf(await this.o.trainer.weights());
    this.sentSpec = true;
    this.send({ type: 'spec', spec });
  }

  private async round(m: Extract<Message, { type: 'round' }>, payload: Uint8Array): Promise<void> {
    if (!this.shared) throw new FederationError('round started before the shared spec arrived');
    this.currentRound = m.round;
    if (m.round === 0) {
      // Initial global model: this site's own shared weights, sent whole and lossless.
      const enc = encodeWeights(pick(await this.o.trainer.weights(), this.shared), 'fp32');
      this.send({ type: 'update', round: 0, numCases: this.o.trainer.numCases, metrics: {}, tensors: enc.entries }, enc.payload);
      return;
    }
    if (this.config?.privacy) return this.secureTrain(m, payload);
    if (this.lastUpdate?.round === m.round) {
      // The round is (re-)opened after we already trained it: a reconnect while the update was in
      // flight, or a relay restarted after accepting it. Send the same update again.
      this.count('sent', this.lastUpdate.bytes.length);
      this.transport?.send(this.lastUpdate.bytes);
      return;
    }
    if (this.trainingRound >= m.round) return;
    this.trainingRound = m.round;
    const global = decodeWeights(m.tensors, payload);
    await this.o.trainer.loadShared(global);
    const metrics = await this.o.trainer.train(m.round, m.iters);
    this.metrics.push({ round: m.round, metrics });
    const delta = subtract(pick(await this.o.trainer.weights(), this.shared), global);
    const enc = encodeWeights(delta, this.config?.encoding ?? this.o.encoding ?? 'fp16');
    this.send({ type: 'update', round: m.round, numCases: this.o.trainer.numCases, metrics, tensors: enc.entries }, enc.payload);
  }

  // --- secure aggregation ------------------------------------------------------------------

  /** Trains round m once, outside the message queue, and keeps its vector for every attempt. */
  private secureTrain(m: Extract<Message, { type: 'round' }>, payload: Uint8Array): void {
    if (this.work?.round === m.round || this.trainingRound >= m.round) return;
    this.trainingRound = m.round;
    const global = decodeWeights(m.tensors, payload);
    const p = this.config!.privacy!;
    const config = this.config!;
    const shared = this.shared!;
    const vector = this.trainerBusy.catch(() => undefined).then(async () => {
      await this.o.trainer.loadShared(global);
      const metrics = await this.o.trainer.train(m.round, m.iters);
      this.metrics.push({ round: m.round, metrics });
      const delta = subtract(pick(await this.o.trainer.weights(), shared), global);
      const divisor = noiseDivisor(config);
      const weight = config.weighting === 'cases' ? Math.min(p.maxWeight, Math.max(1, this.o.trainer.numCases)) : 1;
      const noiseStd = p.dp ? (p.dp.noiseMultiplier * p.clip) / Math.sqrt(divisor) : 0;
      const { vector: v, norm } = encodeSiteVector(delta, shared, {
        clip: p.clip, fracBits: p.fracBits, weight, bound: elementBound(p, config.weighting, divisor), noiseStd, gaussian: cryptoGaussian,
      });
      if (norm > p.clip) this.log(`round ${m.round}: update norm ${norm.toPrecision(4)} clipped to ${p.clip}`);
      return v;
    });
    this.trainerBusy = vector;
    this.work = { round: m.round, vector };
  }

  private async secureOpen(m: Extract<Message, { type: 'secagg-open' }>): Promise<void> {
    const config = this.config;
    const p = config?.privacy;
    if (!config || !p) throw new FederationError('the relay opened a secure round, but this federation is not configured for secure aggregation');
    let vector: Promise<Uint32Array>;
    if (m.kind === 'fingerprint') {
      const layout = ffeLayout(p.ffeCells, p.ffeChannels);
      if (m.length !== layout.length) throw new FederationError(`secure FFE of ${m.length} words, the config's layout has ${layout.length}`);
      this.ffeVector ??= this.o.trainer.localFingerprint().then((fp) => {
        assertDatasetFingerprint(fp, 'this site\'s fingerprint');
        return encodeSummary(summarizeFingerprint(fp as unknown as DatasetFingerprint), layout);
      });
      vector = this.ffeVector;
    } else {
      if (this.work?.round !== m.round) throw new FederationError(`secure round ${m.round} opened before its global model arrived`);
      checkRoundHeadroom(p, config.weighting, noiseDivisor(config), m.participants.length);
      vector = this.work.vector;
    }
    this.secureRound?.cancel();
    const sr = new SecureSiteRound(m, this.siteId!, (msg, payload) => this.send(msg, payload));
    this.secureRound = sr;
    await sr.start();
    // Detached: the vector may still be training; the queue keeps serving the key exchange.
    vector.then((v) => sr.submit(v)).catch((e) => this.fail(e));
  }
}
