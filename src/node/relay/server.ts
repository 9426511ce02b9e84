// The relay: one Node process serving the built web app (static), the federation WebSocket
// endpoint (/fed) and a PeerJS signalling server (/peerjs) for the workshop host mode, where a
// host tab coordinates and participants reach it over WebRTC data channels. With `tls` all three
// are served over HTTPS / wss on the same port.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import express from 'express';
import { ExpressPeerServer } from 'peer';
import type { Coordinator, CoordinatorOptions } from '../../fed/coordinator.ts';
import { FederationHost } from '../../fed/host.ts';
import { encodeMessage } from '../../fed/protocol.ts';
import { ENVELOPE_OVERHEAD } from '../../fed/identity/envelope.ts';
import { staticHandler } from '../static-server.ts';
import { loadSnapshot, saveSnapshot } from './persistence.ts';

/** Where the PeerJS signalling server answers (PeerJS clients use path '/peerjs'). */
export const PEER_PATH = '/peerjs';

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
}

export interface Relay {
  url: string;
  wsUrl: string;
  port: number;
  coordinator: Coordinator;
  close(): Promise<void>;
}

export async function startRelay(opts: RelayOptions): Promise<Relay> {
  const log = opts.log ?? ((l: string) => console.log(`[relay] ${l}`));
  const restored = loadSnapshot(opts.dataDir);
  if (restored) log(`restored state from ${opts.dataDir}: phase ${restored.phase}, round ${restored.round}`);
  const maxBytes = opts.maxMessageBytes ?? 512 * 1024 * 1024;
  const fed = new FederationHost({ ...opts, log, persist: (s) => saveSnapshot(opts.dataDir, s), restored, maxMessageBytes: maxBytes, role: 'relay' });
  const coordinator = fed.coordinator;
  const maxRate = opts.maxMessagesPerSecond ?? 50;

  const serveApp = opts.staticDir && existsSync(join(opts.staticDir, 'index.html')) ? staticHandler(opts.staticDir) : undefined;
  let peerApp: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    if (peerApp && req.url?.startsWith(PEER_PATH + '/')) peerApp(req, res);
    else if (serveApp) serveApp(req, res);
    else res.writeHead(404).end('this relay serves no app');
  };
  // An https.Server emits the same request/upgrade events; the PeerJS server accepts either.
  const server = (opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handle) : createServer(handle)) as Server;
  // Both WebSocket servers run without binding to `server` (ws would reject the other's upgrade
  // requests); upgrades are routed by path here.
  const wss = new WebSocketServer({ noServer: true, maxPayload: maxBytes + ENVELOPE_OVERHEAD });
  let peerWss: WebSocketServer | undefined;
  // The peer server only sets itself up when mounted in an express app ('mount' event).
  const peerHost = express();
  peerHost.use(PEER_PATH, ExpressPeerServer(server, {
    path: '/',
    allow_discovery: false,
    createWebSocketServer: (o) => (peerWss = new WebSocketServer({ noServer: true, path: o.path })),
  }));
  peerApp = peerHost as unknown as (req: IncomingMessage, res: ServerResponse) => void;
  server.on('upgrade', (req, socket, head) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/fed') wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    else if (peerWss && path === `${PEER_PATH}/peerjs`) peerWss.handleUpgrade(req, socket, head, (ws) => peerWss!.emit('connection', ws, req));
    else socket.destroy();
  });
  wss.on('connection', (ws: WebSocket) => {
    const link = fed.accept({
      send: (b) => {
        if (ws.readyState === ws.OPEN) ws.send(b);
      },
      // The full reason went out in the `refused` message (a close reason holds only 123 bytes).
      close: (reason) => (reason ? ws.close(1008, 'refused') : ws.close(1000, 'replaced by a new connection')),
    });
    let windowStart = Date.now();
    let count = 0;
    ws.on('message', (data, isBinary) => {
      const now = Date.now();
      if (now - windowStart > 1000) {
        windowStart = now;
        count = 0;
      }
      if (++count > maxRate) {
        ws.send(encodeMessage({ type: 'error', message: `rate limit: more than ${maxRate} messages per second` }));
        ws.close(1008, 'rate limit');
        return;
      }
      if (!isBinary) {
        ws.send(encodeMessage({ type: 'error', message: 'text frames are not part of the protocol' }));
        return;
      }
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      link.onMessage(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    });
    ws.on('close', () => link.onClose());
    ws.on('error', () => undefined);
  });

  const timer = setInterval(() => fed.tick(), 100);
  timer.unref();

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => ok());
  });
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
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}
