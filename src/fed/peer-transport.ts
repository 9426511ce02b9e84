// Workshop host mode in the page: PeerJS data channels, signalled by the relay's /peerjs server
// (the relay carries no federation data). The host tab registers the peer id derived from its
// join code and hands every incoming connection to a FederationHost; a participant's SiteClient
// connects to that id. Messages are chunked with back-pressure (chunked.ts). Browser only
// (RTCPeerConnection is not available in workers: the train worker reaches it through the page,
// see LinkBridge).
import { Peer, type DataConnection, type PeerOptions } from 'peerjs';
import { ChunkReceiver, ChunkSender } from './chunked.ts';
import type { Connect } from './client.ts';
import type { FederationHost } from './host.ts';
import { retryWithBackoff } from '../util/retry.ts';

export const hostPeerId = (code: string) =>
  `fednnunet-ws-${code
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '')}`;

/** The relay that served this page is the signalling server; no STUN/TURN (same network). */
export function peerOptions(): PeerOptions {
  const secure = location.protocol === 'https:';
  return {
    host: location.hostname,
    port: Number(location.port || (secure ? 443 : 80)),
    path: '/peerjs',
    secure,
    config: { iceServers: [] },
    debug: 0,
  };
}

/** The signalling server still gives the code's peer id to another tab (perhaps a host tab that just died). */
export class WorkshopCodeTaken extends Error {
  override name = 'WorkshopCodeTaken';
}

function openPeer(id: string | undefined): Promise<Peer> {
  return new Promise((ok, fail) => {
    const peer = id ? new Peer(id, peerOptions()) : new Peer(peerOptions());
    // Only errors before 'open' fail the peer; later ones (e.g. a host not there yet) belong to a connect.
    const failed = (e: { type: string; message: string }) => {
      peer.destroy();
      fail(
        e.type === 'unavailable-id'
          ? new WorkshopCodeTaken('this workshop code is already hosted elsewhere')
          : new Error(`signalling failed: ${e.message}`),
      );
    };
    peer.once('open', () => {
      peer.off('error', failed);
      ok(peer);
    });
    peer.once('error', failed);
  });
}

/**
 * How long a host waits for its code's peer id. The signalling server frees an id when its
 * socket closes: at once when a tab reloads or its process dies, but only after PeerJS'
 * alive_timeout (90 s without a heartbeat) when the old tab's machine vanished from the network.
 */
export const HOST_ID_WAIT_MS = 150_000;

/** Wires an open DataConnection to chunked send/receive. */
function wire(
  conn: DataConnection,
  onMessage: (b: Uint8Array) => void,
  onClose: () => void,
): { send(b: Uint8Array): Promise<void>; close(): void } {
  const ch = conn.dataChannel;
  ch.binaryType = 'arraybuffer';
  const tx = new ChunkSender(ch);
  const rx = new ChunkReceiver(onMessage);
  ch.addEventListener('message', (e) => {
    if (e.data instanceof ArrayBuffer) rx.push(e.data);
  });
  let closed = false;
  const closeOnce = () => {
    if (closed) return;
    closed = true;
    onClose();
  };
  conn.on('close', closeOnce);
  ch.addEventListener('close', closeOnce);
  return { send: (b) => tx.send(b), close: () => conn.close() };
}

/**
 * Hosts `host` under the code's peer id until `close()`. While another tab holds the id (the host
 * tab this one replaces, after a reload), retries with backoff for up to `waitMs`, telling `onWait`.
 */
export async function hostOverPeerJS(
  host: FederationHost,
  code: string,
  o: { waitMs?: number; onWait?: (attempt: number, delayMs: number) => void } = {},
): Promise<{ close(): void; peerId: string }> {
  const waitMs = o.waitMs ?? HOST_ID_WAIT_MS;
  const peer = await retryWithBackoff(() => openPeer(hostPeerId(code)), {
    retryable: (e) => e instanceof WorkshopCodeTaken,
    initialDelayMs: 1000,
    maxDelayMs: 10_000,
    giveUpAfterMs: waitMs,
    onRetry: (attempt, delayMs) => o.onWait?.(attempt, delayMs),
  }).catch((e) => {
    throw e instanceof WorkshopCodeTaken && waitMs > 0
      ? new WorkshopCodeTaken(
          `workshop code ${code} was still in use after ${Math.round(waitMs / 1000)} s: another tab or browser hosts it`,
        )
      : e;
  });
  peer.on('connection', (conn) => {
    conn.on('open', () => {
      // wire() only calls back on later channel events, after `h` is set.
      const h: ReturnType<FederationHost['accept']> = host.accept(
        wire(
          conn,
          (b) => h.onMessage(b),
          () => h.onClose(),
        ),
      );
    });
  });
  // Errors after 'open' (a participant's connection failing, the signalling socket lost) must not
  // end the hosting; they are logged (PeerJS emits them to no one otherwise).
  peer.on('error', (e) => console.log(`[workshop host] signalling: ${e.type}: ${e.message}`));
  // A host whose signalling socket closed keeps its data channels but can no longer be reached by a
  // new or reconnecting participant: register the same id again (PeerJS keeps its token) until closed.
  let closed = false;
  let tries = 0;
  peer.on('disconnected', () => {
    if (closed || peer.destroyed) return;
    const ms = Math.min(10_000, 1000 * 2 ** Math.min(tries++, 4));
    setTimeout(() => {
      if (!closed && !peer.destroyed && peer.disconnected) peer.reconnect();
    }, ms);
  });
  peer.on('open', () => void (tries = 0));
  return {
    peerId: peer.id,
    close: () => {
      closed = true;
      peer.destroy();
    },
  };
}

/** How long a participant waits for its data channel to the host to open before trying anew. */
export const CONNECT_TIMEOUT_MS = 20_000;

/**
 * A participant's Connect to the workshop host with this code (one PeerJS peer, a connection per
 * (re)connect). A peer that lost the signalling server (or never reached it) is replaced by a new
 * one at the next try: PeerJS' peer cannot connect any more once disconnected, and a participant
 * keeps retrying for half an hour. A try that fails closes its connection, so one that opens late
 * does not linger at both ends beside the next.
 */
export function peerConnect(code: string): Connect {
  let peer: Promise<Peer> | undefined;
  const livePeer = async (): Promise<Peer> => {
    const p = peer && (await peer.catch(() => undefined));
    if (p && !p.destroyed && !p.disconnected) return p;
    p?.destroy();
    return (peer = openPeer(undefined));
  };
  return async (h) => {
    const p = await livePeer();
    const target = hostPeerId(code);
    const conn = p.connect(target, { serialization: 'raw', reliable: true }) as
      DataConnection | undefined;
    if (!conn) throw new Error('lost the signalling server; trying again');
    await new Promise<void>((ok, fail) => {
      const end = (e?: Error) => {
        clearTimeout(t);
        conn.off('open', opened);
        p.off('error', failed);
        if (!e) return ok();
        conn.close();
        fail(e);
      };
      const opened = () => end();
      // Peer-level errors: only those about this host, or the signalling itself, end this try.
      const failed = (e: { type: string; message: string }) => {
        if (e.type === 'peer-unavailable')
          return e.message.endsWith(target)
            ? end(new Error('no workshop is hosted with this code'))
            : undefined;
        end(new Error(e.message));
      };
      const t = setTimeout(
        () =>
          end(
            new Error(
              'the workshop host did not answer (is the host tab open, and the code right?)',
            ),
          ),
        CONNECT_TIMEOUT_MS,
      );
      conn.on('open', opened);
      p.on('error', failed);
    });
    return wire(conn, h.onMessage, h.onClose);
  };
}

/** The page side of a participant's link, handed to the train worker with Comlink.proxy. */
export interface LinkBridge {
  open(onMessage: (b: Uint8Array) => void, onClose: () => void): Promise<void>;
  send(b: Uint8Array): Promise<void>;
  close(): void;
}

export function pageBridge(connect: Connect): LinkBridge {
  let t: { send(b: Uint8Array): unknown; close(): void } | undefined;
  return {
    async open(onMessage, onClose) {
      t = await connect({ onMessage: (b) => onMessage(b), onClose: () => onClose() });
    },
    async send(b) {
      await t?.send(b);
    },
    close() {
      t?.close();
    },
  };
}
