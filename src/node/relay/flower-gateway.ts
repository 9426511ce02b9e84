// The relay as a same-origin gateway to a Flower SuperLink's REST Fleet API: browsers cannot call
// the SuperLink themselves (it sends no CORS headers, and application/protobuf always preflights),
// so the relay forwards `POST /api/v0/fleet/<call>` to it. Only the Fleet calls a node makes are
// forwarded, bodies and answers are bounded, and nothing else of the SuperLink is reachable.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage } from '../../util/errors.ts';

export const FLEET_PREFIX = '/api/v0/fleet/';

/** The calls a SuperNode makes (flwr.server.superlink.fleet.rest_rere). */
const CALLS = new Set([
  'register-node',
  'activate-node',
  'deactivate-node',
  'unregister-node',
  'send-node-heartbeat',
  'pull-messages',
  'push-messages',
  'pull-object',
  'push-object',
  'confirm-message-received',
  'get-run',
  'get-fab',
]);

export interface FlowerGatewayOptions {
  /** Largest request body (default 16 MiB: one object of ≤ 5 MiB chunks plus protobuf framing). */
  maxBodyBytes?: number;
  /** Largest SuperLink answer passed back (default 64 MiB). */
  maxResponseBytes?: number;
  /** Per-call limit (default 120 s). */
  timeoutMs?: number;
  log?: (line: string) => void;
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > max) return resolve(undefined);
    const parts: Buffer[] = [];
    let n = 0;
    req.on('data', (d: Buffer) => {
      n += d.length;
      if (n > max) {
        req.removeAllListeners('data');
        req.resume();
        resolve(undefined);
      } else parts.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

/** A request handler forwarding the Fleet API to `superlink` (e.g. http://127.0.0.1:9095). */
export function flowerGateway(
  superlink: string,
  o: FlowerGatewayOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const target = new URL(superlink);
  if (target.protocol !== 'http:' && target.protocol !== 'https:')
    throw new Error(`--flower-superlink must be an http(s) URL: '${superlink}'`);
  const base = target.href.replace(/\/+$/, '');
  const maxBody = o.maxBodyBytes ?? 16 * 2 ** 20;
  const maxResponse = o.maxResponseBytes ?? 64 * 2 ** 20;
  const timeoutMs = o.timeoutMs ?? 120_000;
  const answer = (res: ServerResponse, status: number, text: string) => {
    if (!res.headersSent) res.writeHead(status, { 'Content-Type': 'text/plain' });
    res.end(`${text}\n`);
  };
  return (req, res) => {
    void (async () => {
      const call = (req.url ?? '').split('?')[0].slice(FLEET_PREFIX.length);
      if (!CALLS.has(call)) return answer(res, 404, `no Fleet API call '${call.slice(0, 60)}'`);
      if (req.method !== 'POST') return answer(res, 405, 'Fleet API calls are POST');
      if (!String(req.headers['content-type'] ?? '').startsWith('application/protobuf'))
        return answer(res, 415, 'Fleet API bodies are application/protobuf');
      const body = await readBody(req, maxBody);
      if (!body) return answer(res, 413, `request body over ${maxBody} bytes`);
      let up: Response;
      try {
        up = await fetch(`${base}${FLEET_PREFIX}${call}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/protobuf', Accept: 'application/protobuf' },
          body: new Uint8Array(body),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (e) {
        o.log?.(`flower gateway: ${call}: SuperLink unreachable (${errorMessage(e)})`);
        return answer(res, 502, 'the Flower SuperLink is unreachable');
      }
      const declared = Number(up.headers.get('content-length') ?? NaN);
      if (declared > maxResponse) {
        await up.body?.cancel();
        return answer(res, 502, 'the SuperLink answer is too large');
      }
      const bytes = new Uint8Array(await up.arrayBuffer());
      if (bytes.length > maxResponse) return answer(res, 502, 'the SuperLink answer is too large');
      res.writeHead(up.status, {
        'Content-Type': up.headers.get('content-type') ?? 'application/octet-stream',
        'Content-Length': bytes.length,
      });
      res.end(bytes);
    })().catch((e: unknown) => {
      o.log?.(`flower gateway: ${errorMessage(e)}`);
      answer(res, 400, 'bad request');
    });
  };
}
