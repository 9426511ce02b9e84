// The site's side of signed frames, as a wrapper around any Connect (WebSocket, PeerJS bridge,
// in-memory): it waits for the host's challenge, then signs every frame the site sends, in order.
// Frames from the host pass through unchanged (see docs/site-identity.md for why they are not signed).
// With `hostKey` (a workshop join link's fingerprint) the site first challenges the host and hands
// nothing to the protocol until the host proved that key (host-proof.ts).
import type { Connect, Transport } from '../transport.ts';
import { decodeChallenge, isChallenge, sealFrame } from './envelope.ts';
import { hostChallenge, HostKeyRefused, isHostProof, verifyHostProof } from './host-proof.ts';
import type { SiteIdentity } from './site-key.ts';

export interface SignedConnectOptions {
  /** How long to wait for the host's challenge (default 20 s). */
  challengeTimeoutMs?: number;
  /** A frame could not be signed (the connection is closed; the site reconnects). */
  onError?: (e: unknown) => void;
  /**
   * The fingerprint of the key the host must prove before this site sends anything (a workshop
   * host tab; from the join link). A host that proves another key, or none, fails the connect
   * with HostKeyRefused (an IdentityError: the site stops rather than retry).
   */
  hostKey?: string;
}

export function signedConnect(
  connect: Connect,
  identity: () => Promise<SiteIdentity>,
  opts: SignedConnectOptions = {},
): Connect {
  return async (h) => {
    const id = await identity();
    let nonce: Uint8Array | undefined;
    let proof: Uint8Array | undefined;
    let ready = false;
    let lost = false;
    let challenged!: () => void;
    let failed!: (e: Error) => void;
    const challenge = new Promise<void>((ok, fail) => {
      challenged = ok;
      failed = fail;
    });
    const pinned = opts.hostKey !== undefined;
    const inner = await connect({
      onMessage: (b) => {
        if (ready) return h.onMessage(b);
        try {
          if (!nonce && isChallenge(b)) nonce = decodeChallenge(b);
          else if (pinned && !proof && isHostProof(b)) proof = b;
          else {
            // A refusal or error before the handshake ended (e.g. a rate limit, or a host that
            // cannot prove a key): let the site see it, unless the host still owes its proof.
            if (!pinned) h.onMessage(b);
            return failed(
              pinned
                ? new HostKeyRefused(
                    'the workshop host answered without proving its key (an older version of the app, or not the host of this link); nothing was sent to it',
                  )
                : new Error('the host answered without an identity challenge'),
            );
          }
        } catch (e) {
          return failed(e as Error);
        }
        if (nonce && (proof || !pinned)) {
          // Unpinned, what follows the challenge is the protocol's; pinned, only once the proof verified.
          if (!pinned) ready = true;
          challenged();
        }
      },
      onClose: () => {
        if (ready) return h.onClose();
        lost = true;
        failed(new Error('the connection closed before the host sent its identity challenge'));
      },
    });
    // Our challenge to the host: a random nonce, nothing about this site.
    const ours = pinned ? hostChallenge() : undefined;
    if (ours) inner.send(ours.bytes);
    const ms = opts.challengeTimeoutMs ?? 20_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        challenge,
        new Promise(
          (_, fail) =>
            (timer = setTimeout(
              () =>
                fail(
                  new Error(
                    `the host sent no identity challenge within ${ms / 1000} s (an older relay?)`,
                  ),
                ),
              ms,
            )),
        ),
      ]);
      if (ours) await verifyHostProof(proof!, ours.nonce, nonce!, opts.hostKey!);
      if (lost) throw new Error('the connection closed during the identity handshake');
    } catch (e) {
      inner.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    ready = true;
    const n = nonce!;
    let counter = 0;
    let tail: Promise<void> = Promise.resolve();
    let closed = false;
    const t: Transport = {
      // Signing is asynchronous; the queue keeps frames in the order the site sent them.
      send(bytes) {
        const k = counter++;
        tail = tail
          .then(async () => {
            const sealed = await sealFrame(id, n, k, bytes, k === 0);
            if (!closed) inner.send(sealed);
          })
          .catch((e) => {
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
