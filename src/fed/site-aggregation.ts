// A site's half of a round aggregator (round-aggregator.ts): how its trained round reaches the
// relay. PlainSiteAggregation (here) sends the delta in the clear; SecureSiteAggregation
// (secagg/site-aggregation.ts) masks it into a secure sum. The SiteClient keeps the connection,
// the federation's phases and the trainer, and hands each round to its aggregation.
import { encodeWeights, type Encoding } from '../model/weights-codec.ts';
import type { FederationConfig, Message } from './protocol.ts';
import type { NamedWeights, WeightSpec } from '../model/named-weights.ts';
import { FederationError, type SiteTrainer } from './site-types.ts';

export type RoundMessage = Extract<Message, { type: 'round' }>;
/** The relay's secure-aggregation steps a site answers, and a failed attempt. */
export type SiteSecaggMessage = Extract<
  Message,
  { type: 'secagg-open' | 'secagg-keys' | 'secagg-inbox' | 'secagg-unmask' | 'round-failed' }
>;

/** What an aggregation may read of, and ask of, the SiteClient. */
export interface SiteAggregationHost {
  readonly trainer: SiteTrainer;
  config(): FederationConfig;
  shared(): WeightSpec;
  siteId(): string;
  encoding(): Encoding;
  send(message: Message, payload?: Uint8Array): void;
  log(line: string): void;
  fail(e: unknown): void;
  /** Loads the round's global model, trains the round; the shared weights' delta and the metrics. */
  trainRound(
    round: number,
    iters: number,
    global: NamedWeights,
  ): Promise<{ delta: NamedWeights; metrics: Record<string, number> }>;
  /**
   * Re-sends the update already sent for `round` from the model with checksum `model`, if there is
   * one (a re-opened round); false when there is none or it was trained from another model.
   */
  resendUpdate(round: number, model: string | undefined): boolean;
}

export interface SiteAggregation {
  /** The fingerprint phase sends the local fingerprint in the clear (false: as a secure sum). */
  readonly plainFingerprint: boolean;
  /** Round `m` (≥ 1) arrived; `global` is its model (decoded, or the held model advanced by a delta). */
  round(m: RoundMessage, global: NamedWeights): Promise<void> | void;
  /** A secure-aggregation step (never sent to a plain federation). */
  handle(m: SiteSecaggMessage): Promise<void> | void;
  /** Resolves once training started outside the message queue is over. */
  idle(): Promise<void>;
}

/** The delta in the clear, trained once per round and re-sent if the round is re-opened. */
export class PlainSiteAggregation implements SiteAggregation {
  readonly plainFingerprint = true;
  private trainedRound = 0;
  private trainedFrom?: string;

  constructor(private readonly host: SiteAggregationHost) {}

  async round(m: RoundMessage, global: NamedWeights): Promise<void> {
    // The round is (re-)opened after we already trained it: a reconnect while the update was in
    // flight, or a relay restarted after accepting it. Send the same update again if it was
    // trained from this round's model; a relay that restarted may hand out another one.
    if (this.host.resendUpdate(m.round, m.model)) return;
    if (this.trainedRound >= m.round && this.trainedFrom === m.model) return;
    this.trainedRound = m.round;
    this.trainedFrom = m.model;
    const { delta, metrics } = await this.host.trainRound(m.round, m.iters, global);
    const enc = encodeWeights(delta, this.host.encoding());
    this.host.send(
      {
        type: 'update',
        round: m.round,
        numCases: this.host.trainer.numCases,
        metrics,
        tensors: enc.entries,
        ...(m.model !== undefined ? { base: m.model } : {}),
      },
      enc.payload,
    );
  }

  handle(m: SiteSecaggMessage): void {
    if (m.type === 'secagg-open')
      throw new FederationError(
        'the relay opened a secure round, but this federation is not configured for secure aggregation',
      );
    if (m.type !== 'round-failed')
      this.host.log(`ignored a stale ${m.type} (round ${m.round}, attempt ${m.attempt})`);
  }

  idle(): Promise<void> {
    return Promise.resolve();
  }
}
