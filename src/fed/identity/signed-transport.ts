// The site's side of signed frames, as a wrapper around any Connect (WebSocket, PeerJS bridge,
// in-memory): it waits for the host's challenge, then signs every frame the site sends, in order.
// Frames from the host pass through unchanged (see docs/site-identity.md for why they are not signed).
import type { Connect, Transport } from '../transport.ts';
import { decodeChallenge, isChallenge, sealFrame } from './envelope.ts';
import type { SiteIdentity } from './site-key.ts';

export interface SignedConnectOptions {
  /** How long to wait for the host's challenge (default 20 s). */
  challengeTimeoutMs?: number;
  /** A frame could not be signed (the connection is closed; the site reconnects). */
  onError?: (e: unknown) => void;
}

export function signedConnect(connect: Connect, identity: () => Promise<SiteIdentity>, opts: SignedConnectOptions = {}): Connect {
  return async (h) => {
    const id = await identity();
    let nonce: Uint8Array | undefined;
    let challenged!: (n: Uint8Array) => void;
    let failed!: (e: Error) => void;
    const challenge = new Promise<Uint8Array>((ok, fail) => {
      challenged = ok;
      failed = fail;
    });
    const inner = await connect({
      onMessage: (b) => {
        if (nonce) return h.onMessage(b);
        if (!isChallenge(b)) {
          // A refusal or error before any challenge (e.g. a rate limit): let the site see it.
          h.onMessage(b);
          return failed(new Error('the host answered without an identity challenge'));
        }
        try {
          nonce = decodeChallenge(b);
          challenged(nonce);
        } catch (e) {
          failed(e as Error);
        }
      },
      onClose: () => {
        if (nonce) h.onClose();
        else failed(new Error('the connection closed before the host sent its identity challenge'));
      },
    });
    const ms = opts.challengeTimeoutMs ?? 20_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([challenge, new Promise((_, fail) => (timer = setTimeout(() => fail(new Error(`the host sent no identity challenge within ${ms / 1000} s (an older relay?)`)), ms)))]);
    } catch (e) {
      inner.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    const n = nonce!;
    let counter = 0;
    let tail: Promise<void> = Promise.resolve();
    let closed = false;
    const t: Transport = {
      // Signing is asynchronous; the queue keeps frames in the order the site sent them.
      send(bytes) {
        const k = counter++;
        tail = tail.then(async () => {
          const sealed = await sealFrame(id, n, k, bytes, k === 0);
          if (!closed) inner.send(sealed);
        }).catch((e) => {
          opts.onError?.(e);
          closed = true;
          inner.close();
        });
      },
      // Frames already handed to send() go out first, as with a plain socket.
      close() {
        void tail.then(() => {
          closed = true;
          inner.close();
        });
      },
    };
    return t;
  };
}
