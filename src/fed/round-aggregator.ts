// How a round's updates reach the relay: in the clear (PlainAggregator, here) or as masked
// vectors of a secure sum (SecureAggregator, secagg/aggregator.ts). The coordinator keeps the
// federation's phases and the global model, and asks its aggregator to open a round, route the
// round's protocol messages and close it; the aggregator calls back through AggregatorHost.
// A new aggregation rule for plain updates (a robust mean, clipping) goes in aggregate.ts and
// the coordinator's update()/maybeCloseRound(); a new way of transporting updates is a
// RoundAggregator.
import type { NamedWeights, WeightSpec } from '../model/named-weights.ts';
import type { FederationConfig } from './protocol.ts';
import type { OpenRound, Outgoing, Phase, RoundRecord, SecaggMessage } from './round-types.ts';

/** What an aggregator may read of, and ask of, the coordinator. */
export interface AggregatorHost {
  config(): FederationConfig;
  phase(): Phase;
  /** Last completed round (0 = none yet). */
  completedRounds(): number;
  shared(): WeightSpec;
  history(): readonly RoundRecord[];
  /** Site ids in join order. */
  siteIds(): string[];
  isConnected(id: string): boolean;
  /** Connected site ids, in the order they connected. */
  connectedIds(): string[];
  /** The round being trained, if any. */
  openRound(): OpenRound | undefined;
  now(): number;
  log(line: string): void;
  /** Sends messages produced later, by asynchronous work. */
  emit(out: Outgoing[]): void;
  /** Runs asynchronous work after the work queued before it (Coordinator.settled() awaits it). */
  track(work: () => Promise<unknown>): void;
  /** The round's global model for one site. */
  roundMessage(id: string): Outgoing;
  /** Applies the round's mean delta and opens the next round (or ends); `before` goes first. */
  closeRound(o: OpenRound, mean: NamedWeights | undefined, before?: Outgoing[]): Outgoing[];
  /** The fingerprint phase's result (a secure sum): the merged fingerprint goes to every site. */
  fingerprintMerged(fingerprint: Record<string, unknown>): Outgoing[];
  /** A fatal error for every site. */
  failAll(reason: string): Outgoing[];
  /** Out of attempts: the federation ends on the last good global model; `told` goes first. */
  endOnLastGlobal(o: OpenRound, told: Outgoing[]): Outgoing[];
  /** Plain close check (deadline, quorum); [] under secure aggregation. */
  maybeCloseRound(): Outgoing[];
}

export interface RoundAggregator {
  /** Why plain fingerprints and updates are refused (secure aggregation), or undefined. */
  readonly refusesPlain: string | undefined;
  /** The federation left the join phase; opens a secure fingerprint sum if the plan needs one. */
  started(): Outgoing[];
  /** Round `o` opened (or re-opened after a restart): the messages that start it. */
  open(o: OpenRound): Outgoing[];
  /** Site `id` (re)connected while round `o` is open: what it needs to take part. */
  rejoined(id: string, o: OpenRound): Outgoing[];
  /** A site (re)connected during the fingerprint phase. */
  rejoinedFingerprint(): Outgoing[];
  /** A protocol message that belongs to the aggregator (secure-aggregation steps). */
  handle(siteId: string, message: SecaggMessage, payload: Uint8Array): Outgoing[];
  dropped(siteId: string): Outgoing[];
  tick(): Outgoing[];
}

/** Updates in the clear: every connected site gets the global model; the coordinator averages. */
export class PlainAggregator implements RoundAggregator {
  readonly refusesPlain = undefined;

  constructor(private readonly host: AggregatorHost) {}

  started(): Outgoing[] {
    return [];
  }

  open(_o: OpenRound): Outgoing[] {
    return this.host.connectedIds().map((id) => this.host.roundMessage(id));
  }

  rejoined(id: string, o: OpenRound): Outgoing[] {
    return o.reported.has(id) ? [] : [this.host.roundMessage(id)];
  }

  rejoinedFingerprint(): Outgoing[] {
    return [];
  }

  handle(siteId: string, message: SecaggMessage): Outgoing[] {
    this.host.log(`ignored ${message.type} from ${siteId}: no secure round is open`);
    return [];
  }

  dropped(): Outgoing[] {
    return this.host.maybeCloseRound();
  }

  tick(): Outgoing[] {
    return this.host.maybeCloseRound();
  }
}
