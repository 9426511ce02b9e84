// The relay: one Node process serving the built web app (static), the federation WebSocket
// endpoint (/fed) and a PeerJS signalling server (/peerjs) for the workshop host mode, where a
// host tab coordinates and participants reach it over WebRTC data channels. With `tls` all three
// are served over HTTPS / wss on the same port.
//
// Hardening (docs/security.md): every parse of client input is caught and answered (400, or that
// socket closed), every library emitter has an `error` listener, and until a site's hello verifies
// its socket may send one frame of at most PRE_AUTH_MAX_BYTES and must do so within
// helloTimeoutMs; connections are capped per address and in total (guard.ts).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import express from 'express';
import { FLEET_PREFIX, flowerGateway } from './flower-gateway.ts';
import { ExpressPeerServer } from 'peer';
import type { Coordinator, CoordinatorOptions } from '../../fed/coordinator.ts';
import { FederationHost } from '../../fed/host.ts';
import { encodeMessage } from '../../fed/protocol.ts';
import { ENVELOPE_OVERHEAD } from '../../fed/identity/envelope.ts';
import { staticHandler } from '../static-server.ts';
import { configDifferences, loadSnapshot, saveSnapshot, StateFileError } from './persistence.ts';
import { ConnectionGuard, DEFAULT_GUARD_LIMITS, type GuardLimits } from './guard.ts';
import { logSafe } from '../../util/log-safe.ts';
import '../native-crc.ts';
import { errorMessage } from '../../util/errors.ts';

/** Where the PeerJS signalling server answers (PeerJS clients use path '/peerjs'). */
export const PEER_PATH = '/peerjs';

/** Largest frame a `/fed` socket may send before its hello verified (a sealed hello is < 2 KiB). */
export const PRE_AUTH_MAX_BYTES = 64 * 1024;
/** Largest PeerJS signalling message (offers, answers, ICE candidates are a few KiB). */
export const PEER_MAX_PAYLOAD = 64 * 1024;
/** Bytes per second a PeerJS socket may send: messages to absent peers wait in the server's queue. */
export const PEER_MAX_BYTES_PER_SECOND = 1024 * 1024;

export interface RelayOptions extends Omit<CoordinatorOptions, 'persist'> {
  port?: number;
  host?: string;
  dataDir: string;
  staticDir?: string;
  /** Largest accepted message; a 31 M parameter fp32 model is ~125 MB. */
  maxMessageBytes?: number;
  /** Messages per second a connection may send before it is cut off. */
  maxMessagesPerSecond?: number;
  /** PEM certificate (chain) and private key: serve https:// and wss://. */
  tls?: { cert: string; key: string };
  /** A `/fed` socket that has not been admitted after this long is closed (default 20 s). */
  helloTimeoutMs?: number;
  /** Connection caps and the failed-authentication throttle (guard.ts). */
  limits?: Partial<GuardLimits>;
  /**
   * Signalling messages per second a PeerJS socket may send (default 200: a workshop host answers
   * every participant's offer and trickles ICE candidates to each, often all at once), and at
   * most PEER_MAX_BYTES_PER_SECOND bytes.
   */
  peerMessagesPerSecond?: number;
  /** Forward the Flower REST Fleet API (`/api/v0/fleet/*`) to this SuperLink (flower-gateway.ts). */
  flowerSuperlink?: string;
}

export interface Relay {
  url: string;
  wsUrl: string;
  port: number;
  coordinator: Coordinator;
  close(): Promise<void>;
}

/** The relay cannot start with these options on this data dir (a usage error, nothing served). */
export class RelayStartError extends Error {}

/**
 * ws keeps its frame limit on each socket's receiver and checks it against a frame's declared
 * length before buffering it; it has no public setter, so the limit is lowered for a socket until
 * it authenticates and raised after. Checked at startup so that a ws upgrade that renames the
 * field fails loudly rather than silently accepting large unauthenticated frames.
 */
function setMaxPayload(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number')
    throw new Error(
      'ws internals changed: cannot set a per-socket frame limit (src/node/relay/server.ts setMaxPayload)',
    );
  receiver._maxPayload = bytes;
}

/** Answers an upgrade request with an HTTP error and ends the socket. */
function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  if (socket.destroyed) return;
  const body = `${text}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}
const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/** Starts the closing handshake; a peer that does not answer it within 2 s is cut off. */
function closeSoon(ws: WebSocket, code: number, reason: string): void {
  ws.close(code, reason);
  setTimeout(() => ws.terminate(), 2000).unref();
}

/** Counts messages (and bytes) per one-second window; true once a socket exceeds either budget. */
function rateLimiter(maxMessages: number, maxBytes = Infinity): (bytes?: number) => boolean {
  let windowStart = Date.now();
  let count = 0;
  let total = 0;
  return (bytes = 0) => {
    const now = Date.now();
    if (now - windowStart > 1000) {
      windowStart = now;
      count = 0;
      total = 0;
    }
    total += bytes;
    return ++count > maxMessages || total > maxBytes;
  };
}

export async function startRelay(opts: RelayOptions): Promise<Relay> {
  const rawLog = opts.log ?? ((l: string) => console.log(`[relay] ${l}`));
  // Every line may quote what a site sent (its name, a refusal reason): no control characters.
  const log = (l: string) => rawLog(logSafe(l));
  let restored;
  try {
    restored = loadSnapshot(opts.dataDir);
  } catch (e) {
    throw e instanceof StateFileError ? new RelayStartError(e.message) : e;
  }
  if (restored) {
    const { token: _token, ...given } = opts.config;
    const diff = configDifferences(restored.config, given);
    if (diff.length) {
      // One line (the command line prints an error's first line only).
      throw new RelayStartError(
        `${join(opts.dataDir, 'state.json')} holds a federation with other settings than this start asks for (${diff.join('; ')}). ` +
          `Start the relay with the stored settings to continue that federation, or start a new federation with another --data-dir (or move ${opts.dataDir} away)`,
      );
    }
    log(`restored state from ${opts.dataDir}: phase ${restored.phase}, round ${restored.round}`);
  }
  const maxBytes = opts.maxMessageBytes ?? 512 * 1024 * 1024;
  const fed = new FederationHost({
    ...opts,
    log,
    persist: (s) => saveSnapshot(opts.dataDir, s),
    restored,
    maxMessageBytes: maxBytes,
    role: 'relay',
  });
  const coordinator = fed.coordinator;
  const maxRate = opts.maxMessagesPerSecond ?? 50;
  const peerRate = opts.peerMessagesPerSecond ?? 200;
  const helloTimeoutMs = opts.helloTimeoutMs ?? 20_000;
  const guard = new ConnectionGuard({ ...DEFAULT_GUARD_LIMITS, ...opts.limits });

  const serveApp =
    opts.staticDir && existsSync(join(opts.staticDir, 'index.html'))
      ? staticHandler(opts.staticDir)
      : undefined;
  const flower = opts.flowerSuperlink ? flowerGateway(opts.flowerSuperlink, { log }) : undefined;
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    try {
      if (flower && req.url?.startsWith(FLEET_PREFIX)) flower(req, res);
      else if (peerApp && req.url?.startsWith(PEER_PATH + '/')) peerApp(req, res);
      else if (serveApp) serveApp(req, res);
      else res.writeHead(404).end('this relay serves no app');
    } catch (e) {
      log(`error answering ${req.method} request: ${errorMessage(e)}`);
      if (!res.headersSent) res.writeHead(400).end('bad request');
      else res.destroy();
    }
  };
  // An https.Server emits the same request/upgrade events; the PeerJS server accepts either.
  const server = (
    opts.tls
      ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handle)
      : createServer(handle)
  ) as Server;
  // Slow senders: a request's headers must arrive within 20 s and the whole request within 60 s
  // (Node answers 408 to one that drips), and a connection that goes silent, before or inside its
  // request, is dropped after 30 s (ws clears this idle timeout on the sockets it upgrades).
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  server.timeout = 30_000;
  // Plain HTTP connections too (the app's files, PeerJS ids): beyond twice the WebSocket cap, drop.
  server.maxConnections = 2 * (opts.limits?.maxConnections ?? DEFAULT_GUARD_LIMITS.maxConnections);
  // Both WebSocket servers run without binding to `server` (ws would reject the other's upgrade
  // requests); upgrades are routed by path here.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: maxBytes + ENVELOPE_OVERHEAD,
    perMessageDeflate: false,
  });
  wss.on('error', (e) => log(`federation socket server: ${e.message}`));
  let peerWss: WebSocketServer | undefined;
  // The peer server only sets itself up when mounted in an express app ('mount' event).
  const peerHost = express();
  const peerServer = ExpressPeerServer(server, {
    path: '/',
    allow_discovery: false,
    createWebSocketServer: (o) => {
      const w = new WebSocketServer({
        noServer: true,
        path: o.path,
        maxPayload: PEER_MAX_PAYLOAD,
        perMessageDeflate: false,
      });
      w.on('error', (e) => log(`PeerJS socket server: ${e.message}`));
      // Registered before the peer library's own listeners: a socket that floods, or sends what
      // is not a JSON object, is closed here (the library would only emit an error and go on).
      w.on('connection', (ws: WebSocket) => {
        ws.on('error', () => undefined);
        const over = rateLimiter(peerRate, PEER_MAX_BYTES_PER_SECOND);
        ws.on('message', (data: Buffer, isBinary) => {
          if (over(data.length)) return closeSoon(ws, 1008, 'rate limit');
          let ok = !isBinary;
          try {
            const m: unknown = ok && JSON.parse(data.toString('utf8'));
            ok = typeof m === 'object' && m !== null && !Array.isArray(m);
          } catch {
            ok = false;
          }
          if (!ok) closeSoon(ws, 1003, 'signalling messages are JSON objects');
        });
      });
      peerWss = w;
      return w;
    },
  });
  // The library re-emits every socket error (invalid UTF-8, bad frames, a message that is not
  // JSON) on this app; without a listener each would end the process.
  peerServer.on('error', (e: unknown) => log(`PeerJS signalling: ${errorMessage(e)}`));
  peerHost.use(PEER_PATH, peerServer);
  peerHost.disable('x-powered-by');
  // Express's own fallback prints every failed request's stack (a malformed %-escape in a PeerJS
  // path) to stderr: a log flood. Answer it here instead.
  peerHost.use((err: unknown, _req: IncomingMessage, res: ServerResponse, _next: unknown) => {
    const status = (err as { status?: unknown }).status;
    if (!res.headersSent)
      res
        .writeHead(typeof status === 'number' && status >= 400 && status < 500 ? status : 400)
        .end('bad request');
    else res.destroy();
  });
  // `handle` reads this only on requests, which come after listen() below.
  const peerApp = peerHost as unknown as (req: IncomingMessage, res: ServerResponse) => void;
  // Malformed HTTP and failed TLS handshakes: Node's defaults answer 400 / drop that socket.
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://x').pathname;
    } catch {
      return refuseUpgrade(socket, 400, 'bad request: malformed URL');
    }
    const target =
      path === '/fed' ? wss : peerWss && path === `${PEER_PATH}/peerjs` ? peerWss : undefined;
    if (!target) return refuseUpgrade(socket, 404, 'not found');
    const addr = (socket as Socket).remoteAddress ?? 'unknown';
    const refusal = guard.check(addr);
    if (refusal) return refuseUpgrade(socket, refusal.status, refusal.reason);
    socket.once('close', guard.opened(addr));
    try {
      target.handleUpgrade(req, socket, head, (ws) => target.emit('connection', ws, req));
    } catch (e) {
      log(`upgrade failed: ${errorMessage(e)}`);
      socket.destroy();
    }
  });
  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    const addr = req.socket.remoteAddress ?? 'unknown';
    ws.on('error', () => undefined);
    setMaxPayload(ws, PRE_AUTH_MAX_BYTES);
    let admitted = false;
    const helloTimer = setTimeout(() => {
      if (!admitted) ws.terminate();
    }, helloTimeoutMs);
    helloTimer.unref();
    const link = fed.accept({
      send: (b) => {
        if (ws.readyState === ws.OPEN) ws.send(b);
      },
      // The full reason went out in the `refused` message (a close reason holds only 123 bytes).
      close: (reason) =>
        reason
          ? closeSoon(ws, 1008, 'refused')
          : closeSoon(ws, 1000, 'replaced by a new connection'),
      admitted: () => {
        admitted = true;
        clearTimeout(helloTimer);
        setMaxPayload(ws, maxBytes + ENVELOPE_OVERHEAD);
      },
    });
    const over = rateLimiter(maxRate);
    ws.on('message', (data: Buffer, isBinary) => {
      if (over()) {
        ws.send(
          encodeMessage({
            type: 'error',
            message: `rate limit: more than ${maxRate} messages per second`,
          }),
        );
        closeSoon(ws, 1008, 'rate limit');
        return;
      }
      if (!isBinary) {
        ws.send(
          encodeMessage({ type: 'error', message: 'text frames are not part of the protocol' }),
        );
        return;
      }
      // ws hands over one Buffer per message (binaryType 'nodebuffer'): viewed, not copied.
      link.onMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    });
    ws.on('close', () => {
      clearTimeout(helloTimer);
      // Every way of not getting in counts: a refused hello (wrong token, bad signature), no hello
      // in time, an oversized or garbled first frame.
      if (!admitted) guard.failed(addr);
      link.onClose();
    });
  });

  const timer = setInterval(() => fed.tick(), 100);
  timer.unref();

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => ok());
  });
  server.on('error', (e) => log(`server error: ${e.message}`));
  const { port } = server.address() as AddressInfo;
  const host = opts.host ?? '127.0.0.1';
  const s = opts.tls ? 's' : '';
  return {
    url: `http${s}://${host}:${port}/`,
    wsUrl: `ws${s}://${host}:${port}/fed`,
    port,
    coordinator,
    async close() {
      clearInterval(timer);
      for (const ws of wss.clients) ws.terminate();
      for (const ws of peerWss?.clients ?? []) ws.terminate();
      await new Promise<void>((ok) => wss.close(() => ok()));
      await new Promise<void>((ok) => (peerWss ? peerWss.close(() => ok()) : ok()));
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}
