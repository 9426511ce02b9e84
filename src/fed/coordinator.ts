// The federation's server logic, platform-free: the Node relay (src/node/relay/server.ts) and the
// workshop host tab (issue 9) both drive it. It sees decoded messages from sites and returns
// the messages to send; time and persistence are injected, so tests drive it deterministically.
//
// Phases: join → fingerprint (pooled planning only) → spec → init → rounds → done.
// - join: sites are admitted by key and token (identity/admission.ts); the federation starts
//   once `expectedSites` have joined.
// - fingerprint (methods that plan on the pooled fingerprint, see methods.ts): every site sends
//   its local fingerprint; the aggregate goes back to all.
// - spec: every site plans (locally or on the aggregate) and declares its (name, shape) list;
//   the shared key set (name-and-shape intersection) is computed before any weight moves. A
//   method with keys = all requires every key to be shared; sharing nothing is refused.
// - init: one site (the first to join, as FednnU-Net starts from one client's parameters) sends
//   its shared weights; they become the global model.
// - rounds: global → sites train → deltas → streaming mean → next round. A round closes when
//   every connected site reported, or at the deadline once `minSites` updates arrived.
// How updates reach the relay is the round aggregator's (round-aggregator.ts): in the clear, or
// with `config.privacy` as secure rounds (secagg/aggregator.ts), where the relay only ever unmasks
// sums and refuses plain fingerprints and updates (the initial model is the one plain upload).
// `privacyAtStart` (the workshop host) asks for secure aggregation whose config — the threshold
// and the fixed-point bits depend on n — is fixed when the federation starts, from the sites
// joined then; sites learn it from the `welcome` sent to all of them at that moment.
import {
  addDelta,
  sharedSpec,
  UpdateRejected,
  validateUpdate,
  type CheckedUpdate,
} from './aggregate.ts';
import { checkEncodedUpdate } from './encoded-update.ts';
import {
  aggregatorProblem,
  caseWeight,
  checkAggregationConfig,
  guardNorm,
  MAX_CASE_WEIGHT,
  newAggregator,
  roundCloses,
  updateNormBound,
} from './update-guard.ts';
import { decodeWeights, encodeWeights, type EncodedWeights } from '../model/weights-codec.ts';
import { encodeGlobalDelta, modelChecksum, type EncodedDelta } from './global-delta.ts';
import type { FederationConfig, HeldOutReport, Message } from './protocol.ts';
import { METHOD_NAMES, methodSpec } from './methods.ts';
import { checkPrivacyOptions, privacyConfig, type PrivacyOptions } from './secagg/config.ts';
import { SecureAggregator, type SecureStatus } from './secagg/aggregator.ts';
import { PlainAggregator, type AggregatorHost, type RoundAggregator } from './round-aggregator.ts';
import type { OpenRound, Outgoing, Phase, RoundRecord } from './round-types.ts';
import { median } from '../util/numeric.ts';
import { sameShape, specOf, type NamedWeights, type WeightSpec } from '../model/named-weights.ts';
import { admit, type AdmissionPolicy, type SiteKeyBinding } from './identity/admission.ts';
import { errorMessage } from '../util/errors.ts';

export type { OpenRound, Outgoing, Phase, RoundRecord } from './round-types.ts';

const sameSpec = (a: WeightSpec, b: WeightSpec): boolean => {
  const m = new Map(b.map((t) => [t.name, t.shape]));
  return (
    a.length === b.length && a.every((t) => m.has(t.name) && sameShape(m.get(t.name)!, t.shape))
  );
};
export { SECURE_ATTEMPTS, type SecureStatus } from './secagg/aggregator.ts';

export interface SiteRecord {
  siteId: string;
  siteName: string;
  numCases: number;
  spec?: WeightSpec;
  fingerprint?: Record<string, unknown>;
  /** The site's key, bound at its first admitted hello; only this key speaks for the site after. */
  key?: SiteKeyBinding;
  /** Its held-out Dice report after the final model (the host's comparison table). */
  heldOut?: HeldOutReport;
}

/** What survives a restart (written after every phase change and every closed round). */
export interface CoordinatorSnapshot {
  config: FederationConfig & { expectedSites: number };
  phase: Phase;
  /** Last completed round (0 = none yet). */
  round: number;
  sites: SiteRecord[];
  aggregateFingerprint?: Record<string, unknown>;
  shared?: WeightSpec;
  /** Global weights of the shared subset, fp32-encoded. */
  global?: EncodedWeights;
  history: RoundRecord[];
  /** Secure aggregation asked for, its config not yet fixed (join phase; see privacyAtStart). */
  privacyAtStart?: PrivacyOptions;
}

export interface CoordinatorOptions {
  config: FederationConfig & { expectedSites: number; token: string };
  /** FFE merge rule (src/fingerprint/ffe.ts): fingerprints in join order, weighted by case counts. */
  aggregateFingerprints?: (
    fps: Record<string, unknown>[],
    weights: number[],
  ) => Record<string, unknown>;
  now?: () => number;
  /**
   * Saves the snapshot (it keeps changing after the call: copy what you keep). May return a
   * promise: FederationHost then holds its outgoing messages until it resolves (a host tab's
   * IndexedDB write), as the relay's synchronous write precedes them.
   */
  persist?: (s: CoordinatorSnapshot) => void | Promise<void>;
  log?: (line: string) => void;
  /** Reject an update whose norm exceeds this multiple of the median of accepted norms. */
  normFactor?: number;
  newSiteId?: () => string;
  /** Who may join (default: trust on first use with the token). */
  admission?: AdmissionPolicy;
  /** Messages produced later, by asynchronous work (unmasking a secure round's sum). */
  emit?: (out: Outgoing[]) => void;
  /**
   * Secure aggregation whose PrivacyConfig is made at start (startNow, or `expectedSites`
   * reached) for the number of sites joined then; instead of `config.privacy`.
   */
  privacyAtStart?: PrivacyOptions;
  /**
   * Fine-tuning: the initial global model (config.initModel describes it). It joins the shared
   * key set like one more site (name and shape), and becomes round 1's global instead of the
   * first site's weights.
   */
  initialWeights?: NamedWeights;
}

export class Coordinator {
  private s: CoordinatorSnapshot;
  private readonly connected = new Set<string>();
  private open?: OpenRound;
  private globalWeights?: NamedWeights;
  private readonly acceptedNorms: number[] = [];
  private readonly opts: Required<
    Omit<CoordinatorOptions, 'aggregateFingerprints' | 'privacyAtStart' | 'initialWeights'>
  > &
    Pick<CoordinatorOptions, 'aggregateFingerprints' | 'initialWeights'>;
  private idCounter = 0;
  /** Plain or secure aggregation of the rounds (and of FFE's fingerprints, when secure). */
  private readonly aggregator: RoundAggregator;
  private pending: Promise<void> = Promise.resolve();

  constructor(opts: CoordinatorOptions, restored?: CoordinatorSnapshot) {
    this.opts = {
      now: () => Date.now(),
      persist: () => undefined,
      log: () => undefined,
      normFactor: 10,
      newSiteId: () => `site-${++this.idCounter}-${Math.random().toString(36).slice(2, 8)}`,
      emit: () => undefined,
      // An option given as undefined (e.g. `admission` of a relay without --registry, or a
      // `log` a caller did not set) means its default, not "none".
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
      config: opts.config,
      admission: opts.admission ?? { mode: 'tofu' },
    };
    const { token: _token, ...config } = opts.config;
    if (opts.initialWeights && !config.initModel)
      throw new Error('initial weights need config.initModel (what the sites learn about them)');
    checkAggregationConfig(config, !!config.privacy || !!opts.privacyAtStart);
    const pending = opts.privacyAtStart;
    if (pending) {
      // Refused now rather than at start, when participants are already waiting.
      if (config.privacy)
        throw new Error(
          'privacyAtStart and config.privacy both given: one secure-aggregation config only',
        );
      checkPrivacyOptions(config, pending);
    }
    this.s = restored ?? {
      config,
      phase: 'join',
      round: 0,
      sites: [],
      history: [],
      ...(pending ? { privacyAtStart: pending } : {}),
    };
    if (restored?.global)
      this.globalWeights = decodeWeights(restored.global.entries, restored.global.payload);
    // Secure when asked for, even before its config is fixed (privacyAtStart): nothing in the clear either way.
    this.aggregator =
      this.s.config.privacy || this.s.privacyAtStart
        ? new SecureAggregator(this.aggregatorHost())
        : new PlainAggregator(this.aggregatorHost());
  }

  private aggregatorHost(): AggregatorHost {
    return {
      config: () => this.s.config,
      phase: () => this.s.phase,
      completedRounds: () => this.s.round,
      shared: () => this.s.shared!,
      history: () => this.s.history,
      siteIds: () => this.s.sites.map((x) => x.siteId),
      isConnected: (id) => this.connected.has(id),
      connectedIds: () => [...this.connected],
      openRound: () => this.open,
      now: () => this.opts.now(),
      log: (l) => this.opts.log(l),
      emit: (out) => this.opts.emit(out),
      track: (work) => {
        this.pending = this.pending.then(work).then(() => undefined);
      },
      roundMessage: (id) => this.roundMessage(id),
      closeRound: (o, mean, before) => this.closeRound(o, mean, before),
      fingerprintMerged: (fp) => this.fingerprintMerged(fp),
      failAll: (reason) => this.failAll(reason),
      endOnLastGlobal: (o, told) => this.endOnLastGlobal(o, told),
      maybeCloseRound: () => this.maybeCloseRound(),
    };
  }

  get snapshot(): Readonly<CoordinatorSnapshot> {
    return this.s;
  }
  get phase(): Phase {
    return this.s.phase;
  }
  get round(): number {
    return this.s.round;
  }
  get global(): NamedWeights | undefined {
    return this.globalWeights;
  }
  /** The round being trained and the sites whose update it has accepted (a host's roster). */
  get openRoundView(): { round: number; reported: readonly string[] } | undefined {
    return this.open && { round: this.open.round, reported: [...this.open.reported] };
  }
  /** The secure attempt under way (FFE or the open round), if any. */
  get secureStatus(): SecureStatus | undefined {
    return this.aggregator instanceof SecureAggregator ? this.aggregator.status : undefined;
  }

  /** A transport-level disconnect. The site stays in the roster and may come back. */
  disconnected(siteId: string): Outgoing[] {
    this.connected.delete(siteId);
    return this.aggregator.dropped(siteId);
  }

  /** Called periodically (and by tests) to enforce round deadlines. */
  tick(): Outgoing[] {
    return this.aggregator.tick();
  }

  /** Resolves once the asynchronous work started so far (unmasking) has emitted its messages. */
  async settled(): Promise<void> {
    let p: Promise<void>;
    do {
      p = this.pending;
      await p;
    } while (p !== this.pending);
  }

  /** Sites that joined, and whether each is connected now (the workshop host's roster). */
  roster(): Array<{
    siteId: string;
    siteName: string;
    numCases: number;
    connected: boolean;
    fingerprint?: string;
  }> {
    return this.s.sites.map((x) => ({
      siteId: x.siteId,
      siteName: x.siteName,
      numCases: x.numCases,
      connected: this.connected.has(x.siteId),
      fingerprint: x.key?.fingerprint,
    }));
  }

  /**
   * Starts with the sites that have joined so far (the workshop host's "Start" button) instead
   * of waiting for `expectedSites`; the quorum shrinks to at most that number.
   */
  startNow(): Outgoing[] {
    if (this.s.phase !== 'join')
      throw new Error(`the federation has already started (phase ${this.s.phase})`);
    const n = this.s.sites.length;
    if (n === 0) throw new Error('no site has joined yet');
    const pending = this.s.privacyAtStart;
    const t = this.s.config.privacy?.threshold ?? (pending ? (pending.threshold ?? 2) : undefined);
    if (t !== undefined && n < t)
      throw new Error(`secure aggregation needs at least ${t} sites (its threshold); ${n} joined`);
    this.begin({
      ...this.s.config,
      expectedSites: n,
      minSites: Math.min(this.s.config.minSites, n),
    });
    this.opts.log(`started by the host with ${n} site(s)`);
    const out: Outgoing[] = this.s.sites
      .filter((x) => this.connected.has(x.siteId))
      .map((x) => ({
        to: x.siteId,
        message: {
          type: 'welcome',
          siteId: x.siteId,
          config: this.s.config,
          phase: this.s.phase,
          round: this.s.round,
        },
      }));
    return [...out, ...this.aggregator.started()];
  }

  /**
   * Handles one decoded message from a connection. `siteId` is undefined before hello; `key` is
   * the key the connection proved (FederationHost verifies it; see identity/gate.ts).
   */
  handle(
    siteId: string | undefined,
    message: Message,
    payload: Uint8Array = new Uint8Array(0),
    key?: SiteKeyBinding,
  ): { siteId?: string; out: Outgoing[] } {
    if (message.type === 'hello') return this.hello(message, key);
    if (!siteId || !this.s.sites.some((x) => x.siteId === siteId)) {
      return { out: [] };
    }
    switch (message.type) {
      case 'fingerprint':
        if (this.aggregator.refusesPlain)
          return {
            siteId,
            out: [
              {
                to: siteId,
                message: {
                  type: 'error',
                  message: `${this.aggregator.refusesPlain}: fingerprints are only accepted as a secure sum (secagg rounds), never in the clear`,
                },
              },
            ],
          };
        return { siteId, out: this.fingerprint(siteId, message.fingerprint) };
      case 'spec':
        return { siteId, out: this.spec(siteId, message.spec) };
      case 'update':
        return { siteId, out: this.update(siteId, message, payload) };
      case 'resync':
        return { siteId, out: this.resync(siteId, message.reason) };
      case 'held-out-dice':
        return { siteId, out: this.heldOut(siteId, message) };
      case 'secagg-advert':
      case 'secagg-shares':
      case 'secagg-masked':
      case 'secagg-reveal':
        return { siteId, out: this.aggregator.handle(siteId, message, payload) };
      default:
        return {
          siteId,
          out: [
            {
              to: siteId,
              message: { type: 'error', message: `unexpected '${message.type}' from a site` },
            },
          ],
        };
    }
  }

  /**
   * A site's held-out Dice, accepted once the federation is done and only for its final round
   * (a report of another model would sit in the wrong table); a later report replaces it (a site
   * that rejoined and scored the final model again).
   */
  private heldOut(id: string, m: Extract<Message, { type: 'held-out-dice' }>): Outgoing[] {
    const refuse = (reason: string): Outgoing[] => {
      this.opts.log(`held-out report from ${this.site(id).siteName} refused: ${reason}`);
      return [{ to: id, message: { type: 'held-out-result', accepted: false, reason } }];
    };
    if (this.s.phase !== 'done')
      return refuse(`the federation is not finished (phase ${this.s.phase})`);
    if (m.round !== this.s.round)
      return refuse(`it scores round ${m.round}, the final model is round ${this.s.round}'s`);
    this.site(id).heldOut = {
      round: m.round,
      cases: m.cases,
      federated: m.federated,
      ...(m.local === undefined ? {} : { local: m.local }),
    };
    this.persist();
    return [{ to: id, message: { type: 'held-out-result', accepted: true } }];
  }

  private site(id: string): SiteRecord {
    return this.s.sites.find((x) => x.siteId === id)!;
  }

  private hello(
    m: Extract<Message, { type: 'hello' }>,
    key?: SiteKeyBinding,
  ): { siteId?: string; out: Outgoing[] } {
    const a = admit(
      this.opts.admission,
      this.opts.config.token,
      { token: m.token, siteName: m.siteName, siteId: m.siteId, key },
      this.s.sites,
    );
    if (!a.ok) {
      this.opts.log(
        `refused '${m.siteName}'${key ? ` (key ${key.fingerprint})` : ''}: ${a.reason}`,
      );
      return { out: [{ to: '', message: { type: 'refused', reason: a.reason } }] };
    }
    let rec = a.siteId ? this.s.sites.find((x) => x.siteId === a.siteId) : undefined;
    if (!rec) {
      if (this.s.phase !== 'join') {
        return {
          out: [
            {
              to: '',
              message: {
                type: 'refused',
                reason: 'this federation has already started; new sites cannot join',
              },
            },
          ],
        };
      }
      rec = { siteId: this.opts.newSiteId(), siteName: a.siteName, numCases: m.numCases };
      this.s.sites.push(rec);
      this.opts.log(
        `site '${a.siteName}' joined as ${rec.siteId}${key ? ` with key ${key.fingerprint}` : ''} (${this.s.sites.length}/${this.s.config.expectedSites})`,
      );
    }
    if (a.bind && key) {
      // Persisted now, so a restarted relay keeps the binding (trust on first use holds across restarts).
      rec.key = key;
      this.persist();
    }
    this.connected.add(rec.siteId);
    const id = rec.siteId;
    // What the site says it holds decides whether it can take a delta (a reload holds nothing).
    if (m.holds) this.held.set(id, m.holds);
    else this.held.delete(id);
    const out: Outgoing[] = [
      {
        to: id,
        message: {
          type: 'welcome',
          siteId: id,
          config: this.s.config,
          phase: this.s.phase,
          round: this.s.round,
        },
      },
    ];
    if (
      this.s.phase === 'join' &&
      this.s.sites.length >= this.s.config.expectedSites &&
      this.tryBegin()
    ) {
      for (const x of this.s.sites)
        if (x.siteId !== id)
          out.push({
            to: x.siteId,
            message: {
              type: 'welcome',
              siteId: x.siteId,
              config: this.s.config,
              phase: this.s.phase,
              round: this.s.round,
            },
          });
      out[0] = {
        to: id,
        message: {
          type: 'welcome',
          siteId: id,
          config: this.s.config,
          phase: this.s.phase,
          round: this.s.round,
        },
      };
      out.push(...this.aggregator.started());
    } else {
      out.push(...this.catchUp(id));
    }
    return { siteId: id, out };
  }

  /**
   * Leaves the join phase with `config`; a pending secure-aggregation config is fixed first, for
   * the sites joined now (none can join later). Throws, changing nothing, if it cannot be made.
   */
  private begin(config: CoordinatorSnapshot['config']): void {
    const pending = this.s.privacyAtStart;
    if (pending) {
      config = { ...config, privacy: privacyConfig(this.s.sites.length, config, pending) };
      const p = config.privacy!;
      this.opts.log(
        `secure aggregation: threshold ${p.threshold} of ${this.s.sites.length} sites, clip ${p.clip}, ${p.fracBits} fractional bits${p.dp ? `; DP target ε = ${p.dp.epsilon}, δ = ${p.dp.delta}, σ = ${p.dp.noiseMultiplier.toFixed(4)}` : ''}`,
      );
    }
    this.s.config = config;
    delete this.s.privacyAtStart;
    this.s.phase = methodSpec(config.method).planning === 'pooled' ? 'fingerprint' : 'spec';
    this.persist();
  }

  /** `expectedSites` reached: start, or stay in the join phase (the host can still start) if the secure config cannot be made. */
  private tryBegin(): boolean {
    try {
      this.begin(this.s.config);
      return true;
    } catch (e) {
      this.opts.log(`cannot start: ${errorMessage(e)}`);
      return false;
    }
  }

  /** What a (re)connecting site needs to continue where the federation is. */
  private catchUp(id: string): Outgoing[] {
    const out: Outgoing[] = [];
    if (this.s.aggregateFingerprint && this.s.phase !== 'join' && this.s.phase !== 'fingerprint') {
      out.push({
        to: id,
        message: { type: 'aggregate-fingerprint', fingerprint: this.s.aggregateFingerprint },
      });
    }
    if (
      this.s.shared &&
      (this.s.phase === 'init' || this.s.phase === 'rounds' || this.s.phase === 'done')
    ) {
      out.push(this.sharedSpecFor(id));
    }
    if (this.s.phase === 'init' && id === this.s.sites[0].siteId) out.push(this.initRequest());
    if (this.s.phase === 'fingerprint') out.push(...this.aggregator.rejoinedFingerprint());
    if (this.s.phase === 'rounds') {
      // After a relay restart no round is open: the first site back re-opens it.
      if (!this.open) out.push(...this.openRound());
      else out.push(...this.aggregator.rejoined(id, this.open));
    }
    if (this.s.phase === 'done') out.push(this.finalMessage(id));
    return out;
  }

  private fingerprint(id: string, fp: Record<string, unknown>): Outgoing[] {
    if (this.s.phase !== 'fingerprint')
      return [
        {
          to: id,
          message: {
            type: 'error',
            message: `fingerprints are not expected in phase '${this.s.phase}'`,
          },
        },
      ];
    this.site(id).fingerprint = fp;
    if (!this.s.sites.every((x) => x.fingerprint)) return [];
    if (!this.opts.aggregateFingerprints)
      throw new Error('FFE needs an aggregateFingerprints function');
    try {
      // Case counts weigh the merge; capped as update weights are (update-guard.ts), so one site's claim cannot dominate it.
      this.s.aggregateFingerprint = this.opts.aggregateFingerprints(
        this.s.sites.map((x) => x.fingerprint!),
        this.s.sites.map((x) => Math.min(MAX_CASE_WEIGHT, x.numCases)),
      );
    } catch (e) {
      // A malformed or incompatible fingerprint (e.g. other image channels) stops FFE for everyone.
      return this.failAll(`FFE failed: ${errorMessage(e)}`);
    }
    this.opts.log(`FFE: aggregated ${this.s.sites.length} fingerprints`);
    return this.fingerprintMerged(this.s.aggregateFingerprint);
  }

  /** The pooled fingerprint (plain or secure sum) goes to every site; planning starts. */
  private fingerprintMerged(fp: Record<string, unknown>): Outgoing[] {
    this.s.aggregateFingerprint = fp;
    this.s.phase = 'spec';
    this.persist();
    return this.s.sites.map((x) => ({
      to: x.siteId,
      message: { type: 'aggregate-fingerprint', fingerprint: fp },
    }));
  }

  /** A fatal error: logged and told to every site. */
  private failAll(reason: string): Outgoing[] {
    this.opts.log(reason);
    return this.s.sites.map((x) => ({ to: x.siteId, message: { type: 'error', message: reason } }));
  }

  private spec(id: string, spec: WeightSpec): Outgoing[] {
    if (this.s.phase !== 'spec')
      return [
        {
          to: id,
          message: {
            type: 'error',
            message: `a weight spec is not expected in phase '${this.s.phase}'`,
          },
        },
      ];
    this.site(id).spec = spec;
    if (!this.s.sites.every((x) => x.spec)) return [];
    const init = this.opts.initialWeights;
    if (this.s.config.initModel && !init)
      return this.failAll(
        `the federation starts from ${this.s.config.initModel.name}, but this relay was started without its weights (--init-model)`,
      );
    // A pretrained initial model takes part in the intersection like a site.
    const shared = sharedSpec([
      ...this.s.sites.map((x) => x.spec!),
      ...(init ? [specOf(init)] : []),
    ]);
    const out: Outgoing[] = [];
    if (init && methodSpec(this.s.config.method).keys === 'all') {
      const differ = this.s.sites.filter((x) => !sameSpec(x.spec!, specOf(init)));
      if (differ.length) {
        // Sorted: sites join concurrently, and the message must not depend on who came first.
        const names = differ.map((x) => x.siteName).sort();
        const reason = `the initial model ${this.s.config.initModel!.name} has another network than ${names.join(', ')} (${this.s.config.method} trains the checkpoint's own network; use asym to share only the matching tensors)`;
        for (const x of this.s.sites)
          out.push({ to: x.siteId, message: { type: 'error', message: reason } });
        this.opts.log(reason);
        return out;
      }
    }
    if (methodSpec(this.s.config.method).keys === 'all') {
      const mismatch = this.s.sites.filter((x) => x.spec!.length !== shared.length);
      if (mismatch.length) {
        const reason = `${this.s.config.method} needs identical networks, but ${mismatch.map((x) => x.siteName).join(', ')} planned a different one (use ${METHOD_NAMES.filter((n) => !methodSpec(n).sameArchitecture).join(' or ')})`;
        for (const x of this.s.sites)
          out.push({ to: x.siteId, message: { type: 'error', message: reason } });
        this.opts.log(reason);
        return out;
      }
    }
    if (shared.length === 0) {
      const reason =
        "the sites' networks share no parameter (name and shape); nothing can be averaged";
      for (const x of this.s.sites)
        out.push({ to: x.siteId, message: { type: 'error', message: reason } });
      this.opts.log(reason);
      return out;
    }
    const problem = aggregatorProblem(this.s.config, shared, this.s.sites.length);
    if (problem) {
      for (const x of this.s.sites)
        out.push({ to: x.siteId, message: { type: 'error', message: problem } });
      this.opts.log(problem);
      return out;
    }
    this.s.shared = shared;
    this.s.phase = 'init';
    this.persist();
    this.opts.log(
      `shared ${shared.length} tensors; local per site: ${this.s.sites.map((x) => `${x.siteName}=${x.spec!.length - shared.length}`).join(', ')}`,
    );
    for (const x of this.s.sites) out.push(this.sharedSpecFor(x.siteId));
    if (init) {
      // The pretrained weights of the shared tensors are the global model: no site uploads one.
      this.globalWeights = new Map(shared.map((t) => [t.name, init.get(t.name)!]));
      this.s.phase = 'rounds';
      this.persist();
      this.opts.log(
        `initial global model: ${this.s.config.initModel!.name} (${shared.length} of its ${init.size} tensors shared)`,
      );
      out.push(...this.openRound());
      return out;
    }
    out.push(this.initRequest());
    return out;
  }

  private sharedSpecFor(id: string): Outgoing {
    const local = this.site(id).spec!.length - this.s.shared!.length;
    return { to: id, message: { type: 'shared-spec', spec: this.s.shared!, local } };
  }

  private initRequest(): Outgoing {
    return {
      to: this.s.sites[0].siteId,
      message: { type: 'round', round: 0, deadline: 0, iters: 0, tensors: [] },
    };
  }

  private update(
    id: string,
    m: Extract<Message, { type: 'update' }>,
    payload: Uint8Array,
  ): Outgoing[] {
    const reject = (reason: string): Outgoing[] => {
      this.opts.log(
        `rejected update from ${this.site(id).siteName} for round ${m.round}: ${reason}`,
      );
      this.open?.record.rejected.push({ siteId: id, reason });
      if (this.open?.round === m.round) this.open.refused.add(id);
      return [
        { to: id, message: { type: 'update-result', round: m.round, accepted: false, reason } },
      ];
    };
    const isInit = this.s.phase === 'init' && m.round === 0 && id === this.s.sites[0].siteId;
    if (this.aggregator.refusesPlain && !isInit)
      return reject(
        `${this.aggregator.refusesPlain}: plain updates are refused; the site must send a masked update (secagg rounds)`,
      );
    if (isInit) {
      let w: NamedWeights;
      try {
        w = decodeWeights(m.tensors, payload);
        validateUpdate(w, this.s.shared ?? []);
      } catch (e) {
        return reject(errorMessage(e));
      }
      this.globalWeights = w;
      this.s.phase = 'rounds';
      this.persist();
      return [
        { to: id, message: { type: 'update-result', round: 0, accepted: true } },
        ...this.openRound(),
      ];
    }
    // One pass over the wire bytes (CRC, sizes, finiteness, norm); the values go straight into the
    // round's sum below, never through a decoded copy of the update (encoded-update.ts).
    let checked: CheckedUpdate;
    try {
      checked = checkEncodedUpdate(m.tensors, payload, this.s.shared ?? []);
    } catch (e) {
      return reject(errorMessage(e));
    }
    if (this.s.phase !== 'rounds' || !this.open || m.round !== this.open.round) {
      return reject(`round ${m.round} is not open (current: ${this.open?.round ?? 'none'})`);
    }
    if (this.open.reported.has(id)) return reject(`already reported for round ${m.round}`);
    // The delta must be against the model the relay sent for this round; without a checksum only
    // a whole-model (fp32) broadcast is unambiguous.
    if (m.base !== undefined ? m.base !== this.referenceSum : this.broadcast() !== 'fp32')
      return reject(
        `trained from model ${m.base ?? '(unnamed)'}, but round ${m.round} is on model ${this.referenceSum}`,
      );
    // Bounds from update-guard.ts: the relative filter, the clip to C, the case-count check.
    let g;
    try {
      g = guardNorm(
        checked.norm,
        updateNormBound(this.s.config),
        this.acceptedNorms,
        this.opts.normFactor,
        median,
      );
      this.open.mean.addChecked(
        checked,
        caseWeight(this.s.config, m.numCases, this.site(id).numCases),
        g.scale,
      );
    } catch (e) {
      if (e instanceof UpdateRejected) return reject(e.message);
      throw e;
    }
    if (g.scale < 1)
      this.opts.log(
        `update from ${this.site(id).siteName} for round ${m.round}: norm ${g.norm.toPrecision(3)} clipped to ${g.clipped}`,
      );
    this.acceptedNorms.push(g.clipped);
    this.open.reported.add(id);
    this.open.record.contributors.push(id);
    this.open.record.metrics[id] = m.metrics;
    return [
      { to: id, message: { type: 'update-result', round: m.round, accepted: true } },
      ...this.maybeCloseRound(),
    ];
  }

  private openRound(): Outgoing[] {
    const round = this.s.round + 1;
    this.open = {
      round,
      deadline: this.opts.now() + this.s.config.roundDeadlineMs,
      mean: newAggregator(this.s.config, this.s.shared!, this.s.sites.length),
      reported: new Set(),
      refused: new Set(),
      record: { round, contributors: [], rejected: [], metrics: {}, closedBy: 'all' },
    };
    return this.aggregator.open(this.open);
  }

  /** The fp32 encoding of encodedFrom (the global model it was made from): made once per model. */
  private encodedGlobal?: EncodedWeights;
  private encodedFrom?: NamedWeights;

  private encodeGlobal(): EncodedWeights {
    if (this.globalWeights !== this.encodedFrom || !this.encodedGlobal) {
      this.encodedFrom = this.globalWeights;
      this.encodedGlobal = encodeWeights(this.globalWeights!, 'fp32');
    }
    return this.encodedGlobal;
  }

  private broadcast(): 'fp32' | 'fp16' | 'int8' {
    return this.s.config.broadcast ?? 'fp32';
  }

  // The model the sites train from (global-delta.ts). With an fp32 broadcast it is the global
  // itself; with a delta broadcast it trails the exact global by at most one quantisation step
  // (error feedback), and every up-to-date site holds exactly these float32 bits.
  private reference?: NamedWeights;
  private referenceSum?: string;
  /** The global model the reference was last advanced to. */
  private referenceOf?: NamedWeights;
  private referenceFull?: { of: NamedWeights; enc: EncodedWeights };
  /** The delta that made the reference from the model with checksum `base`. */
  private lastDelta?: { base: string } & EncodedDelta;
  /** Checksum of the model each site holds, as far as the relay knows (sent, or said in hello). */
  private readonly held = new Map<string, string>();

  /** Moves the reference to the current global model (once per global model). */
  private advanceReference(): void {
    const g = this.globalWeights!;
    if (this.referenceOf === g && this.reference) return;
    this.referenceOf = g;
    const mode = this.broadcast();
    if (mode === 'fp32' || !this.reference) {
      this.reference = g;
      this.lastDelta = undefined;
    } else {
      const base = this.referenceSum!;
      const d = encodeGlobalDelta(g, this.reference, mode);
      this.reference = d.next;
      this.lastDelta = { base, entries: d.entries, payload: d.payload };
    }
    this.referenceSum = modelChecksum(this.reference);
  }

  /** The model a site must hold for the round (or at the end): nothing, a delta or the whole model. */
  private modelFor(id: string): {
    tensors: EncodedWeights['entries'];
    payload: Uint8Array;
    model: string;
    base?: string;
  } {
    this.advanceReference();
    const sum = this.referenceSum!;
    const held = this.held.get(id);
    this.held.set(id, sum);
    if (held === sum) return { tensors: [], payload: new Uint8Array(0), model: sum, base: sum };
    if (this.lastDelta && held === this.lastDelta.base)
      return {
        tensors: this.lastDelta.entries,
        payload: this.lastDelta.payload,
        model: sum,
        base: this.lastDelta.base,
      };
    // Behind, new or reloaded: the whole model, lossless.
    const ref = this.reference!;
    let enc: EncodedWeights;
    if (ref === this.globalWeights) enc = this.encodeGlobal();
    else {
      if (this.referenceFull?.of !== ref)
        this.referenceFull = { of: ref, enc: encodeWeights(ref, 'fp32') };
      enc = this.referenceFull.enc;
    }
    return { tensors: enc.entries, payload: enc.payload, model: sum };
  }

  private roundMessage(id: string): Outgoing {
    const o = this.open!;
    const { payload, ...m } = this.modelFor(id);
    return {
      to: id,
      message: {
        type: 'round',
        round: o.round,
        deadline: o.deadline,
        iters: this.s.config.itersPerRound,
        ...m,
      },
      payload,
    };
  }

  private finalMessage(id: string): Outgoing {
    const { payload, ...m } = this.modelFor(id);
    return { to: id, message: { type: 'final', round: this.s.round, ...m }, payload };
  }

  /**
   * The federation is over: with a delta broadcast the final model is the reference (what every
   * site will hold), not the exact global it trails by one quantisation step.
   */
  private settleFinalModel(): void {
    if (this.broadcast() === 'fp32' || !this.globalWeights) return;
    this.advanceReference();
    this.globalWeights = this.reference;
    this.referenceOf = this.reference;
  }

  /** A site could not apply a delta: forget what it holds and send the whole model. */
  private resync(id: string, reason: string): Outgoing[] {
    this.held.delete(id);
    this.opts.log(`${this.site(id).siteName} asked for the whole model: ${reason}`);
    if (this.s.phase === 'done' && this.globalWeights) return [this.finalMessage(id)];
    if (this.s.phase === 'rounds' && this.open && !this.open.reported.has(id))
      return [this.roundMessage(id)];
    return [];
  }

  private maybeCloseRound(): Outgoing[] {
    const o = this.open;
    if (!o || this.s.phase !== 'rounds' || this.aggregator.refusesPlain) return [];
    const closedBy = roundCloses({
      present: [...this.connected],
      accepted: o.reported,
      refused: o.refused,
      minSites: this.s.config.minSites,
      pastDeadline: this.opts.now() >= o.deadline,
    });
    if (!closedBy) return [];
    o.record.closedBy = closedBy;
    if (o.reported.size < this.s.config.minSites)
      this.opts.log(
        `round ${o.round}: deadline passed with ${o.reported.size} accepted update(s), below the quorum of ${this.s.config.minSites}; closing with what was accepted`,
      );
    const mean = o.mean.contributors > 0 ? o.mean.result() : undefined;
    o.mean.release?.();
    return this.closeRound(o, mean);
  }

  /** Applies the round's mean delta, records it and opens the next round (or finishes). */
  private closeRound(
    o: OpenRound,
    mean: NamedWeights | undefined,
    before: Outgoing[] = [],
  ): Outgoing[] {
    const present = [...this.connected];
    // No accepted update (all refused, or none by the deadline): the global model is kept.
    if (mean) this.globalWeights = addDelta(this.globalWeights!, mean);
    this.s.round = o.round;
    this.s.history.push(o.record);
    this.open = undefined;
    this.opts.log(
      `round ${o.round} closed (${o.record.closedBy}) with ${o.record.contributors.length} update(s)`,
    );
    if (this.s.round >= this.s.config.rounds) {
      this.s.phase = 'done';
      this.settleFinalModel();
      this.opts.log(
        `federation finished after ${this.s.round} round(s); the final model goes to ${present.length} connected site(s)`,
      );
      this.persist();
      return [...before, ...present.map((id) => this.finalMessage(id))];
    }
    this.persist();
    return [...before, ...this.openRound()];
  }

  /** The federation ends on the last good global model (a secure round out of attempts). */
  private endOnLastGlobal(o: OpenRound, told: Outgoing[]): Outgoing[] {
    if (this.open === o) this.open = undefined;
    this.s.phase = 'done';
    this.settleFinalModel();
    this.opts.log(
      `federation finished on the last good global model (round ${this.s.round}); the final model goes to ${this.connected.size} connected site(s)`,
    );
    this.persist();
    return [...told, ...[...this.connected].map((id) => this.finalMessage(id))];
  }

  private persist(): void {
    // The one fp32 encoding of this global model: round and final messages send the same bytes.
    if (this.globalWeights) this.encodeGlobal();
    this.s.global = this.globalWeights ? this.encodedGlobal : undefined;
    this.opts.persist(this.s);
  }
}
