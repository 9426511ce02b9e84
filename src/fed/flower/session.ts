// One site's whole part in a Flower federation, resumable: join the SuperLink as a node (the same
// node again when the key was kept), serve our ServerApp's messages with a FlowerSite until the
// run has finished, leave. What a restarted site needs (its key, node id, the federation's
// settings, the rounds it answered) goes to `persist` after every step, so a reloaded tab comes
// back as the same node with its planned network (FlowerSite.resume). The message the site is
// answering is kept too (`saveMessage`, one at a time: Flower delivers a message once), so a site
// restarted in the middle of a round trains that round again from its checkpoint (the start of
// the round) and replies to the original message: the ServerApp never notices the restart.
// Platform-free: the browser's training worker keeps both in IndexedDB.
import { FleetError } from './fleet-client.ts';
import { FlowerNode, type FlowerNodeOptions, type IncomingMessage } from './node.ts';
import { decodeInFlight, encodeInFlight, secondsLeft } from './in-flight.ts';
import { errorMessage } from '../../util/errors.ts';
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
  /** The message an earlier run of this site was answering when it stopped (encodeInFlight). */
  savedMessage?: Uint8Array;
  /**
   * Keeps the message being answered (its metadata and objects, global arrays included) before
   * the site works on it, and drops it (undefined) once the reply reached the SuperLink.
   */
  saveMessage?: (message: Uint8Array | undefined) => Promise<void>;
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
  /** The type of the message it answered after the restart (a reload mid-round), if any. */
  resumedMessage?: string;
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
  const keep = async (bytes: Uint8Array | undefined) => {
    try {
      await o.saveMessage?.(bytes);
    } catch (e) {
      // Not fatal: only a restart in the middle of this message would need it.
      log(`the message was not kept for a restart: ${errorMessage(e)}`);
    }
  };
  const handle: typeof site.handle = async (msg) => {
    if (o.saveMessage) {
      await keep(encodeInFlight(msg));
      // The raw objects are kept now; the (long) handling needs only the decoded content.
      msg.objects.clear();
    }
    const reply = await site.handle(msg);
    record.runId = msg.runId.toString();
    record.config = site.state.config;
    record.rounds = site.state.rounds;
    await o.persist(record);
    return reply;
  };
  let resumedMessage: string | undefined;
  try {
    if (o.savedMessage) {
      const msg = await savedMessage(node, o.savedMessage, log, o.limits);
      if (msg) {
        const round = serverRound(msg);
        log(
          `resumed mid-round: answering the ${msg.messageType}${round ? ` (round ${round})` : ''} message received before the restart`,
        );
        try {
          await node.answer(msg, handle);
          resumedMessage = msg.messageType;
        } catch (e) {
          if (!(e instanceof FleetError)) throw e;
          log(`dropped the saved ${msg.messageType} message: ${errorMessage(e)}`);
        }
      }
      await keep(undefined);
    }
  } catch (e) {
    await node.leave();
    throw e;
  }
  try {
    await node.serve(handle, {
      done: () => site.done,
      signal: o.signal,
      maxWaitAfterDoneMs: o.maxWaitAfterDoneMs,
      afterReply: () => keep(undefined),
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
  return { site, nodeId, resumed, ...(resumedMessage ? { resumedMessage } : {}) };
}

/** The server round a train message names (its config record's 'server-round'). */
function serverRound(msg: IncomingMessage): number | undefined {
  const c = msg.content.get('config');
  const r = c?.kind === 'config' ? c.items.get('server-round') : undefined;
  return typeof r === 'bigint' || typeof r === 'number' ? Number(r) : undefined;
}

/**
 * The saved message when it can still be answered; undefined (after saying why) when it is
 * unreadable, expired at the SuperLink, or its run has ended: a stale record is dropped, never
 * fatal.
 */
async function savedMessage(
  node: FlowerNode,
  bytes: Uint8Array,
  log: (line: string) => void,
  limits: FlowerNodeOptions['limits'],
): Promise<IncomingMessage | undefined> {
  let msg: IncomingMessage;
  try {
    msg = await decodeInFlight(bytes, limits);
  } catch (e) {
    log(`dropped the saved message (unreadable: ${errorMessage(e)})`);
    return undefined;
  }
  const what = `the saved ${msg.messageType} message of run ${msg.runId.toString()}`;
  if (secondsLeft(msg) <= 0) {
    log(`dropped ${what}: it expired at the SuperLink`);
    return undefined;
  }
  let status: string;
  try {
    status = await node.runStatus(msg.runId);
  } catch (e) {
    if (!(e instanceof FleetError)) throw e;
    log(`dropped ${what}: the SuperLink does not know its run (${errorMessage(e)})`);
    return undefined;
  }
  if (status === 'finished') {
    log(`dropped ${what}: the run has finished`);
    return undefined;
  }
  return msg;
}
