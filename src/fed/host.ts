// The federation's server side over abstract links, platform-free: it decodes what links deliver,
// feeds the Coordinator and routes its answers. The Node relay (relay/server.ts) uses it for its
// WebSockets; the workshop host tab (issue 9) for PeerJS data channels (peer-transport.ts); tests
// for in-memory pairs.
import { Coordinator, type CoordinatorOptions, type CoordinatorSnapshot, type Outgoing } from './coordinator.ts';
import { decodeMessage, encodeMessage, ProtocolError } from './protocol.ts';

/** One site's connection as the host sees it. `send` may be asynchronous (chunked, back-pressured). */
export interface HostLink {
  send(bytes: Uint8Array): void | Promise<void>;
  close(): void;
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
}

export class FederationHost {
  readonly coordinator: Coordinator;
  private readonly links = new Map<string, HostLink>();
  private readonly maxBytes: number;
  private readonly log: (l: string) => void;

  constructor(private readonly opts: HostOptions) {
    this.log = opts.log ?? (() => undefined);
    this.coordinator = new Coordinator(opts, opts.restored);
    this.maxBytes = opts.maxMessageBytes ?? 512 * 1024 * 1024;
  }

  private route(from: HostLink | undefined, out: Outgoing[]): void {
    for (const o of out) {
      const link = o.to === '' ? from : this.links.get(o.to);
      if (!link) continue;
      Promise.resolve(link.send(encodeMessage(o.message, o.payload))).catch((e) => this.log(`send to ${o.to || 'a new site'} failed: ${e instanceof Error ? e.message : e}`));
    }
    this.opts.onChange?.();
  }

  /** A new connection; returns what its transport should call. */
  accept(link: HostLink): LinkHandlers {
    let siteId: string | undefined;
    return {
      onMessage: (bytes) => {
        let frame;
        try {
          frame = decodeMessage(bytes, this.maxBytes);
        } catch (e) {
          const reason = e instanceof ProtocolError ? e.message : String(e);
          this.log(`malformed message from ${siteId ?? 'unknown'}: ${reason}`);
          void link.send(encodeMessage({ type: 'error', message: reason }));
          return;
        }
        try {
          const r = this.coordinator.handle(siteId, frame.message, frame.payload);
          if (r.siteId && r.siteId !== siteId) {
            siteId = r.siteId;
            const old = this.links.get(siteId);
            if (old && old !== link) old.close();
            this.links.set(siteId, link);
          }
          this.route(link, r.out);
        } catch (e) {
          this.log(`error handling ${frame.message.type} from ${siteId}: ${e instanceof Error ? e.stack : e}`);
          void link.send(encodeMessage({ type: 'error', message: `internal ${this.opts.role ?? 'host'} error` }));
        }
      },
      onClose: () => {
        if (siteId && this.links.get(siteId) === link) {
          this.links.delete(siteId);
          this.route(undefined, this.coordinator.disconnected(siteId));
        }
      },
    };
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
