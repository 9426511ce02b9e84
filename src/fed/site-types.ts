// What a site plugs into the SiteClient, as types (with the client's error class): kept apart so
// that the client's parts (site-aggregation.ts, secagg/) need not import the client.
import type { FederationConfig, HeldOutReport } from './protocol.ts';
import type { NamedWeights, WeightSpec } from '../model/named-weights.ts';

/** The relay refused or failed this site (not a transport hiccup: no reconnect helps). */
export class FederationError extends Error {}

/** What a site plugs in: its data, planner and trainer. */
export interface SiteTrainer {
  numCases: number;
  localFingerprint(): Promise<Record<string, unknown>>;
  /** Plan (on the aggregate under FFE, locally otherwise), preprocess, build the network. */
  prepare(
    aggregateFingerprint: Record<string, unknown> | null,
    config: FederationConfig,
  ): Promise<void>;
  /** A snapshot of the network's weights, all of them, by nnU-Net name (PyTorch layout). */
  weights(): Promise<NamedWeights>;
  /** Overwrites the parameters whose name and shape appear in `shared`; the rest stays local. */
  loadShared(shared: NamedWeights): Promise<void>;
  train(round: number, iters: number): Promise<Record<string, number>>;
  finish?(global: NamedWeights, shared: WeightSpec): Promise<void>;
  /**
   * After finish(): the held-out Dice of the final model (and of a locally trained one) to
   * report to the host, or undefined for none (no held-out case). Numbers only leave the site.
   */
  heldOutReport?(finalRound: number): Promise<Omit<HeldOutReport, 'round'> | undefined>;
  /**
   * A site that rejoins after a reload, past planning: rebuild the prepared state (plans,
   * network, optimiser) from what it saved locally. False when nothing was saved.
   */
  restore?(config: FederationConfig): Promise<boolean>;
}
