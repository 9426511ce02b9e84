// A federation in memory: a FederationHost and SiteClients joined by direct links that record every
// byte the host receives (the relay's view) and can cut a site off at a chosen protocol step.
// Site frames are signed (identity/signed-transport.ts, under the protocol); the recorded bytes are
// those signed frames, and `frames` unwraps them.
import { FederationHost, type HostOptions } from '../../../src/fed/host.ts';
import {
  SiteClient,
  type Connect,
  type SiteResult,
  type SiteTrainer,
  type Transport,
} from '../../../src/fed/client.ts';
import {
  decodeMessage,
  type FederationConfig,
  type Frame,
  type MessageType,
} from '../../../src/fed/protocol.ts';
import {
  decodeChallenge,
  isChallenge,
  parseSignedFrame,
  sealFrame,
} from '../../../src/fed/identity/envelope.ts';
import { ephemeralIdentity, type SiteIdentity } from '../../../src/fed/identity/site-key.ts';
import { signedConnect } from '../../../src/fed/identity/signed-transport.ts';

export interface Received {
  site: string;
  bytes: Uint8Array;
}

/** When a site leaves: right after it sends (or on receiving) a message of `type` in `round`. */
export interface Drop {
  site: number;
  after: 'sent' | 'received';
  type: MessageType;
  round?: number;
}

export interface MemFederation {
  host: FederationHost;
  clients: SiteClient[];
  /** Every frame the host received, in order, as it arrived (signed), with the sending site's name. */
  received: Received[];
  /** Every frame the host sent to a site (identity challenges included). */
  sent: Received[];
  runs: Array<Promise<SiteResult>>;
  /** The sites that were not dropped. */
  survivors(): Promise<SiteResult[]>;
}

/** The protocol frame inside bytes a site sent (signed) or the host sent (plain); null for a challenge. */
export function frameOf(bytes: Uint8Array): Frame | null {
  if (isChallenge(bytes)) return null;
  return decodeMessage(
    bytes[0] === 0x46 && bytes[2] === 0x53 ? parseSignedFrame(bytes).frame : bytes,
  );
}

/** Decoded protocol frames of a recording, challenges left out. */
export function frames(rs: Received[]): Array<{ site: string } & Frame> {
  return rs.flatMap((r) => {
    const f = frameOf(r.bytes);
    return f ? [{ site: r.site, ...f }] : [];
  });
}

export function memFederation(o: {
  config: FederationConfig & { expectedSites: number };
  trainers: SiteTrainer[];
  drops?: Drop[];
  host?: Partial<HostOptions>;
  log?: (l: string) => void;
  /** Rewrites a protocol frame a site sends (a misbehaving site; re-signed, so it passes the identity check). */
  tamper?: (site: number, frame: Uint8Array) => Uint8Array;
  /** Sites leave their case count out of hello (default: when the config is secure). */
  hideCaseCount?: boolean;
}): MemFederation {
  const host = new FederationHost({
    config: { ...o.config, token: 'mem' },
    ...(o.log ? { log: o.log } : {}),
    ...o.host,
  });
  const received: Received[] = [];
  const sent: Received[] = [];
  const dropped = new Set<number>();
  const clients: SiteClient[] = [];
  const identities = o.trainers.map(() => ephemeralIdentity());
  const connect =
    (k: number, name: string): Connect =>
    async (h) => {
      let open = true;
      let nonce: Uint8Array | undefined;
      const shut = () => {
        if (!open) return;
        open = false;
        setTimeout(() => {
          handlers.onClose();
          h.onClose();
        }, 0);
      };
      const matches = (d: Drop, bytes: Uint8Array, after: Drop['after']) => {
        if (d.site !== k || d.after !== after) return false;
        const m = frameOf(bytes)?.message;
        return (
          !!m &&
          m.type === d.type &&
          (d.round === undefined || ('round' in m && m.round === d.round))
        );
      };
      // stop() first, so the client does not reconnect when its link closes.
      const leave = () => {
        dropped.add(k);
        clients[k].stop();
        shut();
      };
      const handlers = host.accept({
        send: (b) => {
          if (!open) return;
          const copy = b.slice();
          sent.push({ site: name, bytes: copy });
          if (isChallenge(copy)) nonce = decodeChallenge(copy);
          setTimeout(() => {
            if (!open) return;
            if (o.drops?.some((d) => matches(d, copy, 'received'))) return leave();
            h.onMessage(copy);
          }, 0);
        },
        close: shut,
      });
      let chain: Promise<void> = Promise.resolve();
      const deliver = (bytes: Uint8Array) => {
        if (!open) return;
        received.push({ site: name, bytes });
        setTimeout(() => handlers.onMessage(bytes), 0);
        if (o.drops?.some((d) => matches(d, bytes, 'sent'))) leave();
      };
      const t: Transport = {
        send: (b) => {
          const copy = b.slice();
          if (!o.tamper) return deliver(copy);
          chain = chain.then(async () => {
            const f = parseSignedFrame(copy);
            const changed = o.tamper!(k, f.frame.slice());
            deliver(
              changed === f.frame ||
                Buffer.compare(Buffer.from(changed), Buffer.from(f.frame)) === 0
                ? copy
                : await sealFrame(
                    await identities[k],
                    nonce!,
                    f.counter,
                    changed,
                    f.key.length > 0,
                  ),
            );
          });
        },
        close: shut,
      };
      return t;
    };
  o.trainers.forEach((t, k) => {
    const name = `site${k}`;
    clients.push(
      new SiteClient({
        connect: connect(k, name),
        token: 'mem',
        siteName: name,
        trainer: t,
        identity: () => identities[k],
        hideCaseCount: o.hideCaseCount ?? !!o.config.privacy,
        reconnect: { initialMs: 5, maxMs: 20, maxTries: 3 },
      }),
    );
  });
  const runs = clients.map((c) => c.run());
  for (const r of runs) r.catch(() => undefined);
  const tick = setInterval(() => host.tick(), 10);
  const all = Promise.allSettled(runs).finally(() => clearInterval(tick));
  return {
    host,
    clients,
    received,
    sent,
    runs,
    async survivors() {
      await all;
      const out: SiteResult[] = [];
      for (const [k, r] of runs.entries()) if (!dropped.has(k)) out.push(await r);
      return out;
    },
  };
}

/** A site speaking the protocol by hand over a correctly signed link to `host`. */
export async function handSite(
  host: FederationHost,
  onMessage: (f: Frame) => void,
): Promise<Transport> {
  const inMemory: Connect = async (h) => {
    const handlers = host.accept({
      send: (b) => void setTimeout(() => h.onMessage(b.slice()), 0),
      close: () => undefined,
    });
    return {
      send: (b) => void setTimeout(() => handlers.onMessage(b.slice()), 0),
      close: () => handlers.onClose(),
    };
  };
  return signedConnect(
    inMemory,
    ephemeralIdentity,
  )({ onMessage: (b) => onMessage(decodeMessage(b)), onClose: () => undefined });
}

export type { SiteIdentity };
