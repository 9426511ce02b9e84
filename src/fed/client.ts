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
// How a trained round reaches the relay is its SiteAggregation's (site-aggregation.ts): in the
// clear, or under secure aggregation (config.privacy) as a masked vector of a secure sum
// (secagg/site-aggregation.ts), never sending a fingerprint or an update in the clear.
import { pick, subtract } from './aggregate.ts';
import {
  decodeWeights,
  encodeWeights,
  type Encoding,
  type TensorEntry,
} from '../model/weights-codec.ts';
import { applyGlobalDelta, modelChecksum } from './global-delta.ts';
import {
  decodeMessage,
  encodeMessage,
  type FederationConfig,
  type HeldOutReport,
  type Message,
} from './protocol.ts';
import { methodSpec } from './methods.ts';
import { specOf, type NamedWeights, type WeightSpec } from '../model/named-weights.ts';
import { ephemeralIdentity, IdentityError, type SiteIdentity } from './identity/site-key.ts';
import { signedConnect } from './identity/signed-transport.ts';
import {
  PlainSiteAggregation,
  type SiteAggregation,
  type SiteAggregationHost,
} from './site-aggregation.ts';
import { SecureSiteAggregation } from './secagg/site-aggregation.ts';
import type { Connect, Transport } from './transport.ts';
import { FederationError, type SiteTrainer } from './site-types.ts';
import { retryWithBackoff } from '../util/retry.ts';
import { privacyChange } from './secagg/config.ts';
import { errorMessage } from '../util/errors.ts';

export type { Connect, Transport, TransportHandlers } from './transport.ts';
export { FederationError, type SiteTrainer } from './site-types.ts';

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
  /** How long to wait for the host's answer to the held-out report before finishing (default 10 s). */
  reportAckMs?: number;
  /** Every message from the relay/host, decoded, before it is handled (the page's phase line). */
  onReceived?: (m: Message) => void;
}

export class SiteClient {
  private transport?: Transport;
  private siteId?: string;
  private config?: FederationConfig;
  /** Privacy settings of the first welcome that fixes them (see 'welcome'); a change is refused. */
  private pinnedPrivacy?: { privacy: FederationConfig['privacy'] };
  private shared?: WeightSpec;
  private sentFingerprint = false;
  private sentSpec = false;
  private preparing?: Promise<void>;
  /**
   * The last update sent, kept even after the relay accepted it: a relay that crashes before
   * closing the round loses what it had accepted, and re-opens the round after its restart.
   */
  private lastUpdate?: { round: number; base?: string; bytes: Uint8Array };
  /** The global model this site holds and its checksum: what the relay's deltas apply to. */
  private held?: { model: NamedWeights; sum: string };
  private done = false;
  /** The held-out report is sent; the run ends at the host's answer or the timer. */
  private reporting?: { result: SiteResult; timer: ReturnType<typeof setTimeout> };
  private stopped = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly traffic = new Map<number, ClientTraffic>();
  private currentRound = 0;
  private readonly metrics: SiteResult['metrics'] = [];
  private readonly sentLog: SiteResult['sentLog'] = [];
  private readonly privacy: PrivacySpent[] = [];
  /** Plain or secure, chosen by the relay's config (secure once the config says so). */
  private aggregation?: SiteAggregation;
  private resolve!: (r: SiteResult) => void;
  private reject!: (e: Error) => void;
  private readonly log: (l: string) => void;
  private readonly open: Connect;

  constructor(private readonly o: SiteClientOptions) {
    this.siteId = o.siteId;
    this.log = o.log ?? (() => undefined);
    let identity: Promise<SiteIdentity> | undefined;
    const given = o.identity;
    const getIdentity = () =>
      (identity ??=
        typeof given === 'function'
          ? given()
          : given
            ? Promise.resolve(given)
            : ephemeralIdentity());
    this.open = signedConnect(o.connect, getIdentity, {
      hostKey: o.hostKey,
      onError: (e) => this.log(`could not sign a frame: ${errorMessage(e)}`),
    });
  }

  /** Runs until the federation is done (resolves) or refuses / fails the site (rejects). */
  run(): Promise<SiteResult> {
    const p = new Promise<SiteResult>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    void this.connect();
    return p;
  }

  /** Leaves without reconnecting (a site closing its tab); run() rejects. */
  stop(): void {
    this.stopped = true;
    this.transport?.close();
    this.fail(new FederationError('this site left the federation'));
  }

  private count(kind: 'sent' | 'received', n: number): void {
    const t = this.traffic.get(this.currentRound) ?? {
      round: this.currentRound,
      sent: 0,
      received: 0,
    };
    t[kind] += n;
    this.traffic.set(this.currentRound, t);
  }

  private send(message: Message, payload?: Uint8Array): void {
    const bytes = encodeMessage(message, payload);
    this.count('sent', bytes.length);
    const round = 'round' in message ? message.round : undefined;
    const tensors = 'tensors' in message ? message.tensors.map((t) => t.name) : undefined;
    const entry = {
      type: message.type,
      bytes: bytes.length,
      ...(round !== undefined ? { round } : {}),
      ...(tensors ? { tensors } : {}),
    };
    this.sentLog.push(entry);
    this.o.onSent?.(entry);
    this.transport?.send(bytes);
    if (message.type === 'update')
      this.lastUpdate = { round: message.round, base: message.base, bytes };
  }

  private async connect(): Promise<void> {
    const rc = this.o.reconnect ?? { initialMs: 200, maxMs: 5000, maxTries: 60 };
    // A refusal closes the connection; its close may be seen before the refusal is processed.
    if (this.done || this.stopped) return;
    const handlers = {
      onMessage: (b: Uint8Array) => {
        this.count('received', b.length);
        this.queue = this.queue.then(() => this.onMessage(b)).catch((e) => this.fail(e));
      },
      onClose: () => {
        this.transport = undefined;
        // The report's answer will not come over a closed connection: the federation is over.
        if (this.reporting) return this.complete(this.reporting.result);
        if (this.done || this.stopped) return;
        this.log('connection lost; reconnecting');
        setTimeout(() => void this.connect(), rc.initialMs);
      },
    };
    let t: Transport;
    try {
      t = await retryWithBackoff(
        () =>
          this.done || this.stopped
            ? Promise.reject(new FederationError('this site is no longer in the federation'))
            : this.open(handlers),
        {
          // A site key that cannot sign is final; so is a site that left or finished meanwhile.
          retryable: (e) => !(e instanceof IdentityError) && !this.done && !this.stopped,
          initialDelayMs: rc.initialMs,
          maxDelayMs: rc.maxMs,
          giveUpAfterMs: Infinity,
          maxAttempts: rc.maxTries + 1,
        },
      );
    } catch (e) {
      if (this.stopped) return;
      if (e instanceof IdentityError) return this.fail(e);
      return this.fail(
        new FederationError(`cannot reach the relay after ${rc.maxTries} tries: ${String(e)}`),
      );
    }
    if (this.done || this.stopped) return t.close();
    this.transport = t;
    this.send({
      type: 'hello',
      token: this.o.token,
      siteName: this.o.siteName,
      numCases: this.o.hideCaseCount ? 0 : this.o.trainer.numCases,
      ...(this.siteId ? { siteId: this.siteId } : {}),
      ...(this.held ? { holds: this.held.sum } : {}),
    });
  }

  /** The federation is over for this site: close and resolve run(). */
  private complete(result: SiteResult): void {
    if (this.done) return;
    if (this.reporting) clearTimeout(this.reporting.timer);
    this.reporting = undefined;
    this.done = true;
    this.transport?.close();
    this.resolve({
      ...result,
      traffic: [...this.traffic.values()].sort((a, b) => a.round - b.round),
    });
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
    this.o.onReceived?.(m);
    switch (m.type) {
      case 'refused':
        throw new FederationError(`the relay refused this site: ${m.reason}`);
      case 'error':
        throw new FederationError(`relay error: ${m.message}`);
      case 'welcome': {
        // Pin the privacy settings of the first welcome that carries final ones: any past the join
        // phase, or one with secure aggregation (only a plain config may still become secure, when
        // a workshop host fixes it at the start). Refuse any later welcome that changes them.
        if (m.phase !== 'join' || m.config.privacy || this.pinnedPrivacy) {
          if (this.pinnedPrivacy) {
            const change = privacyChange(this.pinnedPrivacy.privacy, m.config.privacy);
            if (change) throw new FederationError(change);
          } else this.pinnedPrivacy = { privacy: m.config.privacy };
        }
        this.siteId = m.siteId;
        this.config = m.config;
        this.o.onSiteId?.(m.siteId);
        if ((m.phase === 'init' || m.phase === 'rounds' || m.phase === 'done') && !this.sentSpec) {
          // Rejoining after a reload: planning is over, so continue from the local save.
          this.preparing ??=
            this.o.trainer.restore?.(m.config).then((ok) => {
              if (!ok)
                throw new FederationError(
                  'this federation is past planning and this browser has no saved state for it; it cannot rejoin',
                );
            }) ??
            Promise.reject(
              new FederationError('this federation is past planning; a new site cannot join now'),
            );
          await this.preparing;
          this.sentSpec = true;
          this.sentFingerprint = true;
          this.log('rejoined from the saved state');
        } else if (m.phase === 'fingerprint' && !this.aggregationFor(m.config).plainFingerprint) {
          // Secure FFE: the summary goes only into the secure sum the relay opens (secagg-open).
        } else if (m.phase === 'fingerprint' && !this.sentFingerprint) {
          this.sentFingerprint = true;
          this.send({
            type: 'fingerprint',
            fingerprint: await this.o.trainer.localFingerprint(),
            numCases: this.o.trainer.numCases,
          });
        } else if (m.phase === 'spec' && methodSpec(m.config.method).planning === 'local') {
          await this.prepareAndDeclare(null);
        }
        return;
      }
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
      case 'secagg-keys':
      case 'secagg-inbox':
      case 'secagg-unmask':
        return this.aggregationFor(this.config).handle(m);
      case 'round-failed':
        this.log(`${m.reason}${m.retry ? ' (the relay retries with fresh keys)' : ''}`);
        return this.aggregationFor(this.config).handle(m);
      case 'privacy-spent': {
        const p = {
          round: m.round,
          epsilon: m.epsilon,
          delta: m.delta,
          noiseMultiplier: m.noiseMultiplier,
        };
        this.privacy.push(p);
        this.o.onPrivacy?.(p);
        this.log(
          `round ${m.round}: differential privacy spent ε = ${m.epsilon.toFixed(3)} (δ = ${m.delta})`,
        );
        return;
      }
      case 'final': {
        // Sent again after a reconnect while this site's report awaits its answer: done already.
        if (this.reporting) return;
        await this.aggregation?.idle();
        const global = this.resolveModel(m, payload);
        if (!global) return; // asked for the whole model; the relay sends the final again
        await this.o.trainer.loadShared(global);
        await this.o.trainer.finish?.(global, this.shared ?? []);
        const result: SiteResult = {
          siteId: this.siteId!,
          rounds: m.round,
          shared: this.shared ?? [],
          global,
          traffic: [],
          metrics: this.metrics,
          sentLog: this.sentLog,
          privacy: this.privacy,
        };
        // A site that holds out cases scores the final model once (not every round: a sliding
        // window over whole cases costs more than a round's training) and tells the host.
        // Not under secure aggregation: its host sees only sums, and a site's own Dice is not one.
        let report: Omit<HeldOutReport, 'round'> | undefined;
        if (this.o.trainer.heldOutReport && this.config?.privacy)
          this.log('secure federation: no held-out Dice is reported to the host');
        else
          try {
            report = await this.o.trainer.heldOutReport?.(m.round);
          } catch (e) {
            this.log(`held-out Dice not computed: ${errorMessage(e)}`);
          }
        if (!report) return this.complete(result);
        this.send({ type: 'held-out-dice', round: m.round, ...report });
        // Wait for the host's answer before closing: a data channel closed at once may drop what
        // is still queued. Without an answer the site finishes anyway; the report is a courtesy.
        this.reporting = {
          result,
          timer: setTimeout(() => this.complete(result), this.o.reportAckMs ?? 10_000),
        };
        return;
      }
      case 'held-out-result':
        this.log(
          m.accepted
            ? 'held-out Dice reported to the host'
            : `the host did not take the held-out report: ${m.reason ?? 'no reason given'}`,
        );
        if (this.reporting) this.complete(this.reporting.result);
        return;
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
      this.send(
        {
          type: 'update',
          round: 0,
          numCases: this.o.trainer.numCases,
          metrics: {},
          tensors: enc.entries,
        },
        enc.payload,
      );
      return;
    }
    const global = this.resolveModel(m, payload);
    if (!global) return; // asked for the whole model; the relay sends the round again
    return this.aggregationFor(this.config).round(m, global);
  }

  /**
   * The model a round or final message carries: the whole model, or the held one advanced by a
   * delta (global-delta.ts), checked against the message's checksum. A delta this site cannot
   * apply (it holds another model, or the result's checksum differs) is never trained on: the site
   * asks for the whole model instead and returns undefined.
   */
  private resolveModel(
    m: { round: number; tensors: TensorEntry[]; model?: string; base?: string },
    payload: Uint8Array,
  ): NamedWeights | undefined {
    const resync = (reason: string): undefined => {
      this.held = undefined;
      this.log(`cannot use the model of round ${m.round}: ${reason}; asking for the whole model`);
      this.send({ type: 'resync', round: m.round, reason });
      return undefined;
    };
    if (m.base === undefined) {
      const model = decodeWeights(m.tensors, payload);
      const sum = modelChecksum(model);
      if (m.model !== undefined && sum !== m.model)
        throw new FederationError(
          `the relay's model for round ${m.round} has checksum ${sum}, not the ${m.model} it announced`,
        );
      this.held = { model, sum };
      return model;
    }
    if (this.held?.sum !== m.base)
      return resync(
        `it is a delta against model ${m.base}, this site holds ${this.held?.sum ?? 'none'}`,
      );
    if (m.tensors.length === 0 && m.model === m.base) return this.held.model;
    let model: NamedWeights;
    try {
      model = applyGlobalDelta(this.held.model, m.tensors, payload);
    } catch (e) {
      return resync(errorMessage(e));
    }
    const sum = modelChecksum(model);
    if (sum !== m.model) return resync(`the delta gave model ${sum}, the relay holds ${m.model}`);
    this.held = { model, sum };
    return model;
  }

  /** The aggregation for `config`: plain until the relay's config asks for secure aggregation. */
  private aggregationFor(config: FederationConfig | undefined): SiteAggregation {
    const secure = !!config?.privacy;
    if (!this.aggregation || (secure && this.aggregation instanceof PlainSiteAggregation)) {
      this.aggregation = secure
        ? new SecureSiteAggregation(this.aggregationHost())
        : new PlainSiteAggregation(this.aggregationHost());
    }
    return this.aggregation;
  }

  private aggregationHost(): SiteAggregationHost {
    return {
      trainer: this.o.trainer,
      config: () => this.config!,
      shared: () => this.shared!,
      siteId: () => this.siteId!,
      encoding: () => this.config?.encoding ?? this.o.encoding ?? 'fp16',
      send: (message, payload) => this.send(message, payload),
      log: (l) => this.log(l),
      fail: (e) => this.fail(e),
      trainRound: (round, iters, global) => this.trainRound(round, iters, global),
      resendUpdate: (round, model) => {
        if (this.lastUpdate?.round !== round || this.lastUpdate.base !== model) return false;
        this.count('sent', this.lastUpdate.bytes.length);
        this.transport?.send(this.lastUpdate.bytes);
        return true;
      },
    };
  }

  /** Loads the global model, trains one round, and returns the shared weights' delta. */
  private async trainRound(
    round: number,
    iters: number,
    global: NamedWeights,
  ): Promise<{ delta: NamedWeights; metrics: Record<string, number> }> {
    const shared = this.shared!;
    await this.o.trainer.loadShared(global);
    const metrics = await this.o.trainer.train(round, iters);
    this.metrics.push({ round, metrics });
    return { delta: subtract(pick(await this.o.trainer.weights(), shared), global), metrics };
  }
}
