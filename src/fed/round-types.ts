// Types shared by the coordinator and its round aggregators (round-aggregator.ts, secagg/): kept
// apart so that neither imports the other's module for a type.
import type { UpdateAggregator } from './aggregate.ts';
import type { Message } from './protocol.ts';

/** The secure-aggregation steps of the protocol. */
export type SecaggMessage = Extract<Message, { type: `secagg-${string}` }>;

export type Phase = 'join' | 'fingerprint' | 'spec' | 'init' | 'rounds' | 'done';

export interface Outgoing {
  to: string;
  message: Message;
  payload?: Uint8Array;
}

export interface RoundRecord {
  round: number;
  contributors: string[];
  rejected: Array<{ siteId: string; reason: string }>;
  metrics: Record<string, Record<string, number>>;
  closedBy: 'all' | 'deadline';
  /** Secure aggregation: attempts this round took, and why the failed ones failed. */
  secure?: { attempts: number; failures: string[] };
  /** DP: this round's effective noise multiplier and the ε spent after it (at config δ). */
  privacy?: { noiseMultiplier: number; epsilon: number };
}

/** The round being trained: its deadline, the plain updates' running mean, who reported. */
export interface OpenRound {
  round: number;
  deadline: number;
  mean: UpdateAggregator;
  reported: Set<string>;
  /** Sites whose update this round refused: answered, so the round does not wait for them. */
  refused: Set<string>;
  record: RoundRecord;
}
