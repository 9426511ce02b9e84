// A site's membership of a federation (`fedState` store, key [datasetId, federationId]), so a
// reloaded tab can rejoin as the same site and continue from its saved training state.
import type { StoreDB } from './db.ts';
import { requireDataset } from './require-dataset.ts';

/** A Flower federation's side of a membership: what a reloaded tab needs to be the same node. */
export interface FlowerMembership {
  /** The node's public key (base64): the SuperLink gives the same key the same node id back. */
  publicKey: string;
  nodeId?: string;
  /** The run the node last answered (a decimal uint64). */
  runId?: string;
  /** The federation's settings (src/fed/protocol.ts FederationConfig) from the plan message. */
  config?: object;
  /** Rounds this site trained and replied (their metrics and the shared keys). */
  rounds?: Array<{ round: number; metrics: Record<string, number>; keys: string[] }>;
}

export interface FedMembership {
  datasetId: string;
  /** `${relayUrl}|${token}`: one federation. */
  federationId: string;
  relayUrl: string;
  token: string;
  siteName: string;
  siteId?: string;
  /** A workshop's host key fingerprint (from its join link), pinned for every rejoin; absent for a relay. */
  hostKey?: string;
  tiny: { patch?: number; batchSize?: number } | false;
  backend: 'webgpu' | 'cpu';
  status: 'running' | 'done' | 'failed';
  round: number;
  /** Set for a Flower federation (relayUrl is then `flower:` + the Fleet API's URL). */
  flower?: FlowerMembership;
  updatedAt: number;
}

export const federationIdOf = (relayUrl: string, token: string) => `${relayUrl}|${token}`;

export async function saveMembership(
  db: StoreDB,
  m: Omit<FedMembership, 'updatedAt'>,
): Promise<void> {
  const tx = db.transaction(['datasets', 'fedState'], 'readwrite');
  await requireDataset(tx, m.datasetId);
  await Promise.all([
    tx.objectStore('fedState').put({ ...m, updatedAt: Date.now() } as never),
    tx.done,
  ]);
}

export async function loadMembership(
  db: StoreDB,
  datasetId: string,
  federationId: string,
): Promise<FedMembership | undefined> {
  return (await db.get('fedState', [datasetId, federationId])) as unknown as
    FedMembership | undefined;
}

/** Memberships still running (the page offers to rejoin them). */
export async function runningMemberships(db: StoreDB): Promise<FedMembership[]> {
  return ((await db.getAll('fedState')) as unknown as FedMembership[]).filter(
    (m) => m.status === 'running',
  );
}
