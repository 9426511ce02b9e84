// Flower's REST Fleet API (flwr.server.superlink.fleet.rest_rere, Flower 1.20+): every call is
// `POST <base>/api/v0/fleet/<name>`, body and answer the protobuf messages of fleet.proto, typed
// by the code protobufjs generated from Flower's .proto files (generated/fleet.{js,d.ts}).
// Platform-free: fetch only. Answers are read with a size bound before decoding.
import { flwr } from './generated/fleet.js';

const P = flwr.proto;

export class FleetError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface FleetClientOptions {
  /** Largest answer accepted (default 64 MiB: one object, or a message list of object trees). */
  maxResponseBytes?: number;
  /** A fetch to use instead of the global one (tests, proxies). */
  fetch?: typeof fetch;
  /** Per-request time limit (default 120 s). */
  timeoutMs?: number;
}

interface Codec<T> {
  encode(m: T): { finish(): Uint8Array };
}
interface Decoder<T> {
  decode(b: Uint8Array): T;
}

/** Reads a response body, refusing more than `max` bytes (without buffering the excess). */
async function readBounded(res: Response, max: number, what: string): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > max) throw new FleetError(`${what}: answer of ${declared} bytes exceeds ${max}`);
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > max) {
      await reader.cancel();
      throw new FleetError(`${what}: answer exceeds ${max} bytes`);
    }
    parts.push(value);
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export class FleetClient {
  private readonly base: string;
  private readonly maxResponse: number;
  private readonly fetchFn: typeof fetch;
  private readonly timeoutMs: number;

  constructor(superlink: string, o: FleetClientOptions = {}) {
    let url: URL;
    try {
      url = new URL(superlink);
    } catch {
      throw new FleetError(`not a SuperLink URL: '${superlink}' (e.g. http://127.0.0.1:9095)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new FleetError(`SuperLink URL must be http(s): '${superlink}'`);
    this.base = url.href.replace(/\/+$/, '');
    this.maxResponse = o.maxResponseBytes ?? 64 * 2 ** 20;
    this.fetchFn = o.fetch ?? ((...a) => fetch(...a));
    this.timeoutMs = o.timeoutMs ?? 120_000;
  }

  private async call<Req, Res>(
    name: string,
    reqType: Codec<Req>,
    req: Req,
    resType: Decoder<Res>,
  ): Promise<Res> {
    const body = reqType.encode(req).finish();
    const send = () =>
      this.fetchFn(`${this.base}/api/v0/fleet/${name}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/protobuf', Accept: 'application/protobuf' },
        body: body as Uint8Array<ArrayBuffer>,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    let res: Response;
    try {
      res = await send().catch(async (e: unknown) => {
        // A kept-alive connection the server closed meanwhile fails at once: one fresh try.
        if ((e as Error).name === 'TimeoutError') throw e;
        await new Promise((r) => setTimeout(r, 200));
        return send();
      });
    } catch (e) {
      throw new FleetError(
        `${name}: SuperLink unreachable at ${this.base} (${(e as Error).message})`,
      );
    }
    if (res.status !== 200) {
      const text = new TextDecoder().decode(
        await readBounded(res, 4096, name).catch(() => new Uint8Array()),
      );
      throw new FleetError(
        `${name}: SuperLink answered ${res.status} ${text.slice(0, 300)}`.trim(),
        res.status,
      );
    }
    const type = res.headers.get('content-type') ?? '';
    if (!type.startsWith('application/protobuf')) {
      await res.body?.cancel();
      throw new FleetError(`${name}: answer is '${type}', not application/protobuf`);
    }
    const bytes = await readBounded(res, this.maxResponse, name);
    try {
      return resType.decode(bytes);
    } catch (e) {
      throw new FleetError(`${name}: malformed answer (${(e as Error).message})`);
    }
  }

  registerNode(publicKey: Uint8Array) {
    return this.call(
      'register-node',
      P.RegisterNodeFleetRequest,
      { publicKey },
      P.RegisterNodeFleetResponse,
    );
  }
  activateNode(publicKey: Uint8Array, heartbeatInterval: number) {
    return this.call(
      'activate-node',
      P.ActivateNodeRequest,
      { publicKey, heartbeatInterval },
      P.ActivateNodeResponse,
    );
  }
  sendHeartbeat(node: flwr.proto.INode, heartbeatInterval: number) {
    return this.call(
      'send-node-heartbeat',
      P.SendNodeHeartbeatRequest,
      { node, heartbeatInterval },
      P.SendNodeHeartbeatResponse,
    );
  }
  pullMessages(node: flwr.proto.INode) {
    return this.call('pull-messages', P.PullMessagesRequest, { node }, P.PullMessagesResponse);
  }
  pullObject(
    node: flwr.proto.INode,
    runId: flwr.proto.IPullObjectRequest['runId'],
    objectId: string,
  ) {
    return this.call(
      'pull-object',
      P.PullObjectRequest,
      { node, runId, objectId },
      P.PullObjectResponse,
    );
  }
  confirmMessageReceived(
    node: flwr.proto.INode,
    runId: flwr.proto.IConfirmMessageReceivedRequest['runId'],
    messageObjectId: string,
  ) {
    return this.call(
      'confirm-message-received',
      P.ConfirmMessageReceivedRequest,
      { node, runId, messageObjectId },
      P.ConfirmMessageReceivedResponse,
    );
  }
  pushMessages(req: flwr.proto.IPushMessagesRequest) {
    return this.call('push-messages', P.PushMessagesRequest, req, P.PushMessagesResponse);
  }
  pushObject(
    node: flwr.proto.INode,
    runId: flwr.proto.IPushObjectRequest['runId'],
    objectId: string,
    objectContent: Uint8Array,
  ) {
    return this.call(
      'push-object',
      P.PushObjectRequest,
      { node, runId, objectId, objectContent },
      P.PushObjectResponse,
    );
  }
  getRun(node: flwr.proto.INode, runId: flwr.proto.IGetRunRequest['runId']) {
    return this.call('get-run', P.GetRunRequest, { node, runId }, P.GetRunResponse);
  }
  deactivateNode(nodeId: flwr.proto.IDeactivateNodeRequest['nodeId']) {
    return this.call(
      'deactivate-node',
      P.DeactivateNodeRequest,
      { nodeId },
      P.DeactivateNodeResponse,
    );
  }
  unregisterNode(nodeId: flwr.proto.IUnregisterNodeFleetRequest['nodeId']) {
    return this.call(
      'unregister-node',
      P.UnregisterNodeFleetRequest,
      { nodeId },
      P.UnregisterNodeFleetResponse,
    );
  }
}
