// One site's whole part in a Flower federation, resumable: join the SuperLink as a node (the same
// node again when the key was kept), serve our ServerApp's messages with a FlowerSite until the
// run has finished, leave. What a restarted site needs (its key, node id, the federation's
// settings, the rounds it answered) goes to `persist` after every step, so a reloaded tab comes
// back as the same node with its planned network (FlowerSite.resume). Platform-free: the browser's
// training worker keeps the record in IndexedDB.
import { FlowerNode, type FlowerNodeOptions } from './node.ts';
import { FlowerSite, type FlowerSiteTrainer } from './site.ts';
import type { FederationConfig } from '../protocol.ts';

/** What a restarted site needs to be the same node (the browser keeps it in IndexedDB). */
export interface FlowerMembership {
  /** The node's public key (base64): the SuperLink gives the same key the same node id back. */
  publicKey: string;
  nodeId?: string;
  /** The run the node last answered (a decimal uint64). */
  runId?: string;
  /** The federation's settings from the ServerApp's plan message, once planned. */
  config?: FederationConfig;
  /** Rounds this site trained and replied (their metrics and the shared keys). */
  rounds?: Array<{ round: number; metrics: Record<string, number>; keys: string[] }>;
}

export interface FlowerSessionOptions extends Omit<FlowerNodeOptions, 'publicKey'> {
  trainer: FlowerSiteTrainer;
  /** What an earlier run of this site persisted (undefined: a new node). */
  saved?: FlowerMembership;
  /** Called with the record after each change (join, plan, every round). */
  persist: (m: FlowerMembership) => Promise<void>;
  signal?: AbortSignal;
  /** After the node joined the SuperLink (resumed: it continues a saved state). */
  onJoined?: (nodeId: string, resumed: boolean) => void;
  /** How long to wait for the run to finish at the SuperLink after the final model (default 10 min). */
  maxWaitAfterDoneMs?: number;
}

export interface FlowerSessionResult {
  site: FlowerSite;
  nodeId: string;
  /** True when the site continued from a saved state (a reload mid-federation). */
  resumed: boolean;
}

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

export async function runFlowerSession(o: FlowerSessionOptions): Promise<FlowerSessionResult> {
  const log = o.log ?? (() => {});
  const publicKey = o.saved ? unb64(o.saved.publicKey) : undefined;
  const node = new FlowerNode({ ...o, publicKey, previousNodeId: o.saved?.nodeId });
  const site = new FlowerSite(o.trainer, log);
  const record: FlowerMembership = { ...o.saved, publicKey: b64(node.publicKey) };
  let resumed = false;
  if (record.config) {
    resumed = await site.resume(record.config, record.rounds ?? []);
    if (!resumed) log('no saved training state: this site starts as a new one');
  }
  // Persist the key before joining: a reload right after would otherwise register a second node.
  await o.persist(record);
  const nodeId = await node.join();
  if (record.nodeId && record.nodeId !== nodeId)
    log(`the SuperLink gave node id ${nodeId} (was ${record.nodeId})`);
  record.nodeId = nodeId;
  await o.persist(record);
  o.onJoined?.(nodeId, resumed);
  const handle: typeof site.handle = async (msg) => {
    const reply = await site.handle(msg);
    record.runId = msg.runId.toString();
    record.config = site.state.config;
    record.rounds = site.state.rounds;
    await o.persist(record);
    return reply;
  };
  try {
    await node.serve(handle, {
      done: () => site.done,
      signal: o.signal,
      maxWaitAfterDoneMs: o.maxWaitAfterDoneMs,
    });
  } finally {
    // A stopped tab (signal) leaves for good; a reload never gets here (the worker is gone).
    await node.leave();
  }
  if (!site.done)
    throw new Error(
      o.signal?.aborted
        ? 'left the Flower federation before it ended'
        : 'the Flower run ended before this site received the final model',
    );
  return { site, nodeId, resumed };
}
