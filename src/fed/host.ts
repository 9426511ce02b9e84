// The federation's server side over abstract links, platform-free: it decodes what links deliver,
// feeds the Coordinator and routes its answers. The Node relay (src/node/relay/server.ts) uses it for its
// WebSockets; the workshop host tab (issue 9) for PeerJS data channels (peer-transport.ts); tests
// for in-memory pairs.
//
// Every connection opens with an identity challenge, and every frame a site sends must be signed
// by its key; the signature is verified before the frame is decoded (identity/gate.ts). A frame
// that fails is answered with `refused` and the connection is closed. A workshop host tab also has
// a key of its own (`identity`), and proves it to a participant that opens with a host challenge
// (identity/host-proof.ts), before that participant sends anything.
import {
  Coordinator,
  type CoordinatorOptions,
  type CoordinatorSnapshot,
  type Outgoing,
} from './coordinator.ts';
import { decodeMessage, encodeMessage, ProtocolError } from './protocol.ts';
import { FrameRefused, SiteGate } from './identity/gate.ts';
import { ENVELOPE_OVERHEAD } from './identity/envelope.ts';
import { IdentityError, type SiteIdentity } from './identity/site-key.ts';
import { isHostChallenge } from './identity/host-proof.ts';
import { errorMessage } from '../util/errors.ts';

/** One site's connection as the host sees it. `send` may be asynchronous (chunked, back-pressured). */
const REFUSAL_CLOSE_DELAY_MS = 500;

export interface HostLink {
  send(bytes: Uint8Array): void | Promise<void>;
  /** `reason` when the host ends the connection (a refusal); none when a newer connection replaces it. */
  close(reason?: string): void;
  /**
   * The site proved its key and was admitted (before its welcome is sent): a transport lifts its
   * pre-authentication limits (the relay's 64 KiB frames and hello deadline) here.
   */
  admitted?(siteId: string): void;
}

export interface LinkHandlers {
  onMessage(bytes: Uint8Array): void;
  onClose(): void;
}

export interface HostOptions extends CoordinatorOptions {
  /** Largest accepted message (default 512 MiB). */
  maxMessageBytes?: number;
  /** State to continue from (the Node relay restores it from its data dir). */
  restored?: CoordinatorSnapshot;
  /** Names this server in error replies ('relay', 'host'). */
  role?: string;
  /** Called after every change of phase, round or roster (the host's UI). */
  onChange?: () => void;
  /**
   * The host's own key (a workshop host tab: its browser profile's key), proved to participants
   * that ask (their join link pins its fingerprint). None for the relay, whose sites trust TLS.
   */
  identity?: SiteIdentity | (() => Promise<SiteIdentity>);
}

export class FederationHost {
  readonly coordinator: Coordinator;
  private readonly links = new Map<string, HostLink>();
  private readonly maxBytes: number;
  private readonly log: (l: string) => void;
  /**
   * Outgoing messages wait here while an asynchronous save (persist returned a promise) is under
   * way, and keep their order: a site must never see a round a reload could lose, or it would
   * skip that round when the resumed host re-opens it.
   */
  private outbox: Promise<void> = Promise.resolve();
  private waiting = 0;
  private identity?: Promise<SiteIdentity>;

  constructor(private readonly opts: HostOptions) {
    // Say so now rather than refuse every site later: verifying their signatures needs WebCrypto.
    if (!(globalThis as { crypto?: Crypto }).crypto?.subtle)
      throw new IdentityError(
        "hosting a federation needs WebCrypto to check the sites' signatures; browsers offer it only on https:// or http://localhost pages",
      );
    this.log = opts.log ?? (() => undefined);
    const persist = opts.persist;
    // Unmasking a secure round's sum finishes asynchronously; its messages are routed when it does.
    this.coordinator = new Coordinator(
      {
        ...opts,
        emit: (out) => this.route(undefined, out),
        persist:
          persist &&
          ((snap) => {
            const saved = persist(snap);
            if (saved)
              this.hold(
                saved.catch((e) =>
                  this.log(
                    `could not save the federation state (a reload now would lose it): ${errorMessage(e)}`,
                  ),
                ),
              );
          }),
      },
      opts.restored,
    );
    this.maxBytes = opts.maxMessageBytes ?? 512 * 1024 * 1024;
  }

  private hold(job: Promise<unknown> | (() => unknown)): void {
    this.waiting++;
    this.outbox = this.outbox
      .then(async () => void (await (typeof job === 'function' ? job() : job)))
      .catch((e) => this.log(`error sending: ${e instanceof Error ? e.stack : e}`))
      .finally(() => void this.waiting--);
  }

  private route(from: HostLink | undefined, out: Outgoing[]): void {
    if (this.waiting) return this.hold(() => this.deliver(from, out));
    this.deliver(from, out);
  }

  private deliver(from: HostLink | undefined, out: Outgoing[]): void {
    for (const o of out) {
      const link = o.to === '' ? from : this.links.get(o.to);
      if (!link) continue;
      const sent = Promise.resolve(link.send(encodeMessage(o.message, o.payload)));
      sent.catch((e) => this.log(`send to ${o.to || 'a new site'} failed: ${errorMessage(e)}`));
      // A refusal ends the connection, a little after it was sent: a data channel (workshop
      // mode) closed at once may drop what is still queued, and the site closes on its own.
      if (o.message.type === 'refused') {
        const reason = o.message.reason;
        void sent
          .catch(() => undefined)
          .then(() => setTimeout(() => link.close(`refused: ${reason}`), REFUSAL_CLOSE_DELAY_MS));
      }
    }
    this.opts.onChange?.();
  }

  /** A new connection; returns what its transport should call. */
  accept(link: HostLink): LinkHandlers {
    let siteId: string | undefined;
    const gate = new SiteGate();
    // Verifying is asynchronous (WebCrypto); the queue keeps frames in arrival order.
    let queue: Promise<void> = Promise.resolve();
    let ended = false;
    const refuse = (reason: string) => {
      ended = true;
      this.log(
        `refused ${siteId ?? 'a connecting site'}${gate.key ? ` (key ${gate.key.fingerprint})` : ''}: ${reason}`,
      );
      this.route(link, [{ to: '', message: { type: 'refused', reason } }]);
    };
    void Promise.resolve(link.send(gate.challenge())).catch(() => undefined);
    const onFrame = async (bytes: Uint8Array) => {
      if (ended) return;
      if (isHostChallenge(bytes)) {
        try {
          const proof = await gate.proveHost(await this.hostIdentity(), bytes);
          if (!ended) void Promise.resolve(link.send(proof)).catch(() => undefined);
        } catch (e) {
          refuse(
            e instanceof FrameRefused
              ? e.message
              : `could not prove the host key: ${errorMessage(e)}`,
          );
        }
        return;
      }
      if (bytes.length > this.maxBytes + ENVELOPE_OVERHEAD)
        return refuse(`message of ${bytes.length} bytes exceeds the limit of ${this.maxBytes}`);
      let inner: Uint8Array;
      try {
        inner = await gate.open(bytes);
      } catch (e) {
        return refuse(
          e instanceof FrameRefused ? e.message : `identity check failed: ${errorMessage(e)}`,
        );
      }
      if (ended) return;
      let frame;
      try {
        frame = decodeMessage(inner, this.maxBytes);
      } catch (e) {
        const reason = e instanceof ProtocolError ? e.message : String(e);
        this.log(`malformed message from ${siteId ?? 'unknown'}: ${reason}`);
        if (!siteId) return refuse(`the first message must be a hello: ${reason}`);
        void link.send(encodeMessage({ type: 'error', message: reason }));
        return;
      }
      if (!siteId && frame.message.type !== 'hello')
        return refuse(`the first message must be a hello, not '${frame.message.type}'`);
      try {
        const r = this.coordinator.handle(siteId, frame.message, frame.payload, gate.key);
        if (r.siteId && r.siteId !== siteId) {
          siteId = r.siteId;
          const old = this.links.get(siteId);
          if (old && old !== link) old.close();
          this.links.set(siteId, link);
          link.admitted?.(siteId);
        }
        if (r.out.some((o) => o.to === '' && o.message.type === 'refused')) ended = true;
        this.route(link, r.out);
      } catch (e) {
        this.log(
          `error handling ${frame.message.type} from ${siteId}: ${e instanceof Error ? e.stack : e}`,
        );
        void link.send(
          encodeMessage({ type: 'error', message: `internal ${this.opts.role ?? 'host'} error` }),
        );
      }
    };
    return {
      onMessage: (bytes) => {
        queue = queue
          .then(() => onFrame(bytes))
          .catch((e) => this.log(`error on a connection: ${e instanceof Error ? e.stack : e}`));
      },
      // Frames that arrived before the close are still being verified: handle them first (a
      // site may send its update and leave at once), then the disconnect.
      onClose: () => {
        queue = queue
          .then(() => {
            ended = true;
            if (siteId && this.links.get(siteId) === link) {
              this.links.delete(siteId);
              this.route(undefined, this.coordinator.disconnected(siteId));
            }
          })
          .catch((e) => this.log(`error on a connection: ${e instanceof Error ? e.stack : e}`));
      },
    };
  }

  private hostIdentity(): Promise<SiteIdentity | undefined> {
    const given = this.opts.identity;
    if (!given) return Promise.resolve(undefined);
    return (this.identity ??= typeof given === 'function' ? given() : Promise.resolve(given));
  }

  /** Round deadlines: call periodically. */
  tick(): void {
    const out = this.coordinator.tick();
    if (out.length) this.route(undefined, out);
  }

  /** Starts with the sites present now (see Coordinator.startNow). */
  start(): void {
    this.route(undefined, this.coordinator.startNow());
  }

  close(): void {
    for (const l of this.links.values()) l.close();
    this.links.clear();
  }
}
