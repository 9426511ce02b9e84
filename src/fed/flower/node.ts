// A Flower SuperNode's side of the REST Fleet API, without Flower's Python: join (register +
// activate), heartbeats for as long as the node is in, pull each message with its object tree
// (verified by SHA-256, bounded), confirm it, run a handler, push the reply and the objects the
// SuperLink asks for; leave (deactivate + unregister). Platform-free (fetch, WebCrypto, timers).
import Long from 'long';
import { flwr } from './generated/fleet.js';
import { FleetClient, FleetError, type FleetClientOptions } from './fleet-client.ts';
import {
  DEFAULT_LIMITS,
  allObjects,
  deflateMessage,
  inflateRecordDict,
  objectTree,
  parseObject,
  protoMessage,
  treeIds,
  verifyObject,
  type ObjectLimits,
  type RecordDict,
} from './objects.ts';
import { errorMessage } from '../../util/errors.ts';

/** A message the SuperLink delivered to this node. */
export interface IncomingMessage {
  /** 'train', 'evaluate', 'query' or '<one of those>.<action>'. */
  messageType: string;
  runId: Long;
  messageId: string;
  groupId: string;
  content: RecordDict;
  metadata: flwr.proto.IMetadata;
  /** The message's verified objects by id (what a site keeps to answer it after a restart). */
  objects: Map<string, Uint8Array>;
}

/** A message from its metadata and its verified objects (the root Message object and its tree). */
export function messageFromObjects(
  md: flwr.proto.IMetadata,
  objects: Map<string, Uint8Array>,
): IncomingMessage {
  const id = md.messageId ?? '';
  const rootBytes = objects.get(id);
  if (!rootBytes) throw new FleetError(`message ${id}: its root object is missing`);
  const root = parseObject(rootBytes);
  if (root.type !== 'Message' || root.childIds.length !== 1)
    throw new FleetError(
      `message ${id}: no content (a ${root.type} with ${root.childIds.length} children)`,
    );
  return {
    messageType: md.messageType ?? '',
    runId: Long.fromValue(md.runId ?? 0),
    messageId: id,
    groupId: md.groupId ?? '',
    content: inflateRecordDict(root.childIds[0], objects),
    metadata: md,
    objects,
  };
}

/** What a node does with a message: the reply's content (a thrown error is replied as an error). */
export type MessageHandler = (msg: IncomingMessage) => Promise<RecordDict>;

export interface FlowerNodeOptions extends FleetClientOptions {
  /** The SuperLink's REST Fleet API, e.g. http://127.0.0.1:9095 (or a same-origin gateway). */
  superlink: string;
  /**
   * The node's public key. With `--insecure` SuperLinks any unique bytes do; keep them to come back
   * as the same node after a restart (default: 32 random bytes).
   */
  publicKey?: Uint8Array;
  /** The node id this key had before a restart (lets join() take a still-online node over). */
  previousNodeId?: string;
  /** Seconds the SuperLink waits for a heartbeat (Flower's default 30). */
  heartbeatInterval?: number;
  /** Idle wait between pulls (default 1 s). */
  pollMs?: number;
  limits?: Partial<ObjectLimits>;
  log?: (line: string) => void;
  /**
   * After each reply reached the SuperLink: its message type and its size (every distinct object
   * of the reply, whether or not the SuperLink already held it): a site's audit of what it sent.
   */
  onReplied?: (r: { messageType: string; bytes: number; error?: string }) => void;
}

// Flower's ErrorCode.CLIENT_APP_RAISED_EXCEPTION.
const CLIENT_APP_RAISED_EXCEPTION = 2;

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });

/** Consecutive failed calls (SuperLink down or failing) before serve() gives up. */
const MAX_FAILURES = 30;

export class FlowerNode {
  readonly fleet: FleetClient;
  readonly publicKey: Uint8Array;
  private node?: flwr.proto.INode;
  private heartbeat?: ReturnType<typeof setTimeout>;
  private readonly limits: ObjectLimits;
  private readonly interval: number;
  private readonly log: (line: string) => void;

  constructor(private readonly o: FlowerNodeOptions) {
    this.fleet = new FleetClient(o.superlink, o);
    this.publicKey = o.publicKey ?? crypto.getRandomValues(new Uint8Array(32));
    this.limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.interval = o.heartbeatInterval ?? 30;
    if (!(this.interval >= 1)) throw new Error('heartbeat interval must be ≥ 1 s');
    this.log = o.log ?? (() => {});
  }

  /** The node id the SuperLink gave (a decimal string: ids are uint64). */
  get nodeId(): string | undefined {
    return this.node?.nodeId?.toString();
  }

  private get n(): flwr.proto.INode {
    if (!this.node) throw new FleetError('the node has not joined the SuperLink');
    return this.node;
  }

  /** Register (a key seen before is fine: then it only activates) and activate; heartbeats start. */
  async join(): Promise<string> {
    try {
      await this.fleet.registerNode(this.publicKey);
    } catch (e) {
      // A SuperLink refuses to register a key twice: a node that comes back only activates.
      if (!(e instanceof FleetError) || e.status === undefined) throw e;
      this.log(`register-node refused (${e.message}); activating the known key`);
    }
    let nodeId: flwr.proto.INode['nodeId'];
    try {
      nodeId = (await this.fleet.activateNode(this.publicKey, this.interval)).nodeId;
    } catch (e) {
      // A SuperLink activates only a registered or offline node; a restarted site (a reloaded
      // tab) finds its node still online until the heartbeats it no longer sends run out. It
      // takes the node back with a heartbeat under the id it kept (Flower's SuperLink accepts a
      // heartbeat from any registered node, online or offline, and keeps it online). It does NOT
      // deactivate and re-activate: while a node is offline, the SuperLink answers the ServerApp's
      // wait for a reply from it with a NODE_UNAVAILABLE error, which fails a round whose train
      // message the tab was answering when it reloaded (it answers it after the restart).
      const known = this.o.previousNodeId;
      if (!known || !(e instanceof FleetError) || e.status === undefined) throw e;
      nodeId = Long.fromString(known, true);
      this.log(`activate-node refused (${e.message}); taking node ${known} back by a heartbeat`);
      const beat = await this.fleet.sendHeartbeat({ nodeId }, this.interval);
      if (!beat.success)
        throw new FleetError(`the SuperLink no longer knows node ${known} (unregistered)`);
    }
    this.node = { nodeId };
    this.startHeartbeat();
    this.log(`joined as node ${this.nodeId}`);
    return this.nodeId!;
  }

  private startHeartbeat(): void {
    const beat = async () => {
      try {
        const r = await this.fleet.sendHeartbeat(this.n, this.interval);
        if (!r.success) this.log('heartbeat: the SuperLink does not know this node');
      } catch (e) {
        this.log(`heartbeat failed: ${errorMessage(e)}`);
      }
      // Well inside the interval, so one lost beat does not make the node unavailable.
      if (this.node) this.heartbeat = setTimeout(beat, (this.interval * 1000) / 3);
    };
    this.heartbeat = setTimeout(beat, (this.interval * 1000) / 3);
  }

  /** One pull: the next message with its content, or undefined when none is waiting. */
  async receive(): Promise<IncomingMessage | undefined> {
    const res = await this.fleet.pullMessages(this.n);
    const msg = res.messagesList[0];
    const tree = res.messageObjectTrees[0];
    if (!msg) return undefined;
    const md = msg.metadata;
    if (!md || !tree || !md.messageId || tree.objectId !== md.messageId)
      throw new FleetError('pull-messages: a message without metadata or object tree');
    const runId = Long.fromValue(md.runId ?? 0);
    const ids = treeIds(tree, this.limits);
    const objects = new Map<string, Uint8Array>();
    let total = 0;
    for (const id of ids) {
      if (objects.has(id)) continue;
      const content = await this.pullObject(runId, id);
      total += content.length;
      if (total > this.limits.maxMessageBytes)
        throw new FleetError(
          `message ${md.messageId}: more than ${this.limits.maxMessageBytes} bytes`,
        );
      objects.set(id, content);
    }
    const message = messageFromObjects(md, objects);
    await this.fleet.confirmMessageReceived(this.n, runId, md.messageId);
    return message;
  }

  private async pullObject(runId: Long, id: string): Promise<Uint8Array> {
    // An object may be registered before its bytes arrive: wait for it (bounded).
    for (let attempt = 0; attempt < 600; attempt++) {
      const r = await this.fleet.pullObject(this.n, runId, id);
      if (!r.objectFound) throw new FleetError(`pull-object: ${id.slice(0, 12)}… not found`);
      if (r.objectAvailable) {
        if (r.objectContent.length > this.limits.maxObjectBytes)
          throw new FleetError(
            `pull-object: ${r.objectContent.length} bytes exceeds ${this.limits.maxObjectBytes}`,
          );
        await verifyObject(id, r.objectContent);
        return r.objectContent;
      }
      await sleep(Math.min(1000, 50 * 2 ** Math.min(attempt, 5)));
    }
    throw new FleetError(`pull-object: ${id.slice(0, 12)}… never became available`);
  }

  /** Replies to `to` with `content` (or an error), pushing every object the SuperLink lacks. */
  async reply(
    to: IncomingMessage,
    content: RecordDict | undefined,
    error?: { code: number; reason: string },
    runtimeSeconds = 0,
  ): Promise<number> {
    const now = Date.now() / 1000;
    const md = to.metadata;
    // Flower's rule: a reply expires no later than the message it answers.
    const ttl = (md.createdAt ?? now) + (md.ttl ?? 0) - now;
    const metadata: flwr.proto.IMetadata = {
      runId: to.runId,
      srcNodeId: md.dstNodeId,
      dstNodeId: md.srcNodeId,
      replyToMessageId: to.messageId,
      groupId: to.groupId,
      createdAt: now,
      ttl: ttl > 0 ? ttl : 1,
      messageType: to.messageType,
    };
    const obj = await deflateMessage(metadata, content, error);
    const res = await this.fleet.pushMessages({
      node: this.n,
      messagesList: [protoMessage({ ...metadata, messageId: obj.id }, !error, error)],
      messageObjectTrees: [objectTree(obj)],
      clientappRuntimeList: [runtimeSeconds],
    });
    const stored = Object.keys(res.results ?? {});
    if (!stored.includes(obj.id))
      throw new FleetError(
        `push-messages: the SuperLink did not store the reply to ${to.messageType} (expired, or the run ended)`,
      );
    const all = allObjects(obj);
    for (const id of res.objectsToPush ?? []) {
      const o = all.get(id);
      if (!o) throw new FleetError(`push-messages: asked for unknown object ${id.slice(0, 12)}…`);
      await this.fleet.pushObject(this.n, to.runId, id, o.content);
    }
    let bytes = 0;
    for (const o of all.values()) bytes += o.content.length;
    return bytes;
  }

  /** The run's status ('starting', 'running', 'finished') as the SuperLink reports it. */
  async runStatus(runId: Long): Promise<string> {
    try {
      const r = await this.fleet.getRun(this.n, runId);
      return r.run?.status?.status ?? '';
    } catch (e) {
      // Flower's REST get-run answers a finished run with 500 (InvalidRunStatusException "Run is
      // finished"; gRPC gets a proper abort status).
      if (e instanceof FleetError && e.status === 500) return 'finished';
      throw e;
    }
  }

  /**
   * Pulls and answers messages until `done()` says so and the run has finished at the SuperLink
   * (a node that left before the ServerApp collected its last reply would be "unavailable").
   */
  async serve(
    handler: MessageHandler,
    o: {
      done?: () => boolean;
      signal?: AbortSignal;
      maxWaitAfterDoneMs?: number;
      /** After each reply reached the SuperLink (a site drops its saved copy of the message). */
      afterReply?: (msg: IncomingMessage) => Promise<void>;
    } = {},
  ): Promise<void> {
    const poll = this.o.pollMs ?? 1000;
    let lastRun: Long | undefined;
    let doneSince: number | undefined;
    let failures = 0;
    let idle = 0;
    while (!o.signal?.aborted) {
      try {
        const msg = await this.receive();
        failures = 0;
        if (msg) {
          lastRun = msg.runId;
          await this.answer(msg, handler);
          await o.afterReply?.(msg);
          continue;
        }
        if (lastRun && !o.done?.() && ++idle % 10 === 0) {
          // A run that ends without this node's last message (failed, stopped): nothing more comes.
          const status = await this.runStatus(lastRun);
          if (status === 'finished') {
            this.log(`run ${lastRun.toString()} finished before this node's part ended`);
            return;
          }
        }
        if (o.done?.() && lastRun) {
          doneSince ??= Date.now();
          const status = await this.runStatus(lastRun);
          if (status === 'finished') return;
          if (Date.now() - doneSince > (o.maxWaitAfterDoneMs ?? 600_000)) {
            this.log(
              `run ${lastRun.toString()} still '${status}' after this node's last reply; leaving`,
            );
            return;
          }
        }
      } catch (e) {
        // A SuperLink that restarts or fails one call: retry with backoff, not forever.
        if (!(e instanceof FleetError) || ++failures > MAX_FAILURES) throw e;
        this.log(`${errorMessage(e)} (retrying, ${failures}/${MAX_FAILURES})`);
        await sleep(Math.min(30_000, poll * 2 ** Math.min(failures, 5)), o.signal);
        continue;
      }
      await sleep(poll, o.signal);
    }
  }

  /** Runs the handler on `msg` and pushes its reply (a thrown handler error is replied as an error). */
  async answer(msg: IncomingMessage, handler: MessageHandler): Promise<void> {
    const t0 = Date.now();
    let content: RecordDict | undefined;
    let error: { code: number; reason: string } | undefined;
    try {
      content = await handler(msg);
    } catch (e) {
      this.log(`${msg.messageType}: ${errorMessage(e)}`);
      error = { code: CLIENT_APP_RAISED_EXCEPTION, reason: errorMessage(e) };
    }
    const bytes = await this.reply(msg, content, error, (Date.now() - t0) / 1000);
    this.o.onReplied?.({ messageType: msg.messageType, bytes, error: error?.reason });
  }

  /** Stops heartbeats, deactivates and unregisters (errors are logged: leaving is best effort). */
  async leave(o: { unregister?: boolean } = {}): Promise<void> {
    const node = this.node;
    this.node = undefined;
    clearTimeout(this.heartbeat);
    if (!node) return;
    try {
      await this.fleet.deactivateNode(node.nodeId);
      if (o.unregister !== false) await this.fleet.unregisterNode(node.nodeId);
    } catch (e) {
      this.log(`leaving: ${errorMessage(e)}`);
    }
  }
}
