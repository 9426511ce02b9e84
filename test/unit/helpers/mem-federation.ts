// A federation in memory: a FederationHost and SiteClients joined by direct links that record every
// byte the host receives (the relay's view) and can cut a site off at a chosen protocol step.
import { FederationHost, type HostOptions } from '../../../src/fed/host.ts';
import { SiteClient, type Connect, type SiteResult, type SiteTrainer } from '../../../src/fed/client.ts';
import { decodeMessage, type FederationConfig, type MessageType } from '../../../src/fed/protocol.ts';

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
  /** Every frame the host received, in order, with the sending site's name. */
  received: Received[];
  /** Every frame the host sent to a site. */
  sent: Received[];
  runs: Array<Promise<SiteResult>>;
  /** The sites that were not dropped. */
  survivors(): Promise<SiteResult[]>;
}

export function memFederation(o: {
  config: FederationConfig & { expectedSites: number };
  trainers: SiteTrainer[];
  drops?: Drop[];
  host?: Partial<HostOptions>;
  log?: (l: string) => void;
  /** Rewrites a frame a site sends (a misbehaving site), before the host sees it. */
  tamper?: (site: number, bytes: Uint8Array) => Uint8Array;
}): MemFederation {
  const host = new FederationHost({ config: { ...o.config, token: 'mem' }, ...(o.log ? { log: o.log } : {}), ...o.host });
  const received: Received[] = [];
  const sent: Received[] = [];
  const dropped = new Set<number>();
  const clients: SiteClient[] = [];
  const connect = (k: number, name: string): Connect => async (h) => {
    let open = true;
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
      const m = decodeMessage(bytes).message;
      return m.type === d.type && (d.round === undefined || ('round' in m && m.round === d.round));
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
        setTimeout(() => {
          if (!open) return;
          if (o.drops?.some((d) => matches(d, copy, 'received'))) return leave();
          h.onMessage(copy);
        }, 0);
      },
      close: shut,
    });
    return {
      send: (b) => {
        if (!open) return;
        const copy = o.tamper ? o.tamper(k, b.slice()) : b.slice();
        received.push({ site: name, bytes: copy });
        setTimeout(() => handlers.onMessage(copy), 0);
        if (o.drops?.some((d) => matches(d, copy, 'sent'))) leave();
      },
      close: shut,
    };
  };
  o.trainers.forEach((t, k) => {
    const name = `site${k}`;
    clients.push(new SiteClient({ connect: connect(k, name), token: 'mem', siteName: name, trainer: t, hideCaseCount: !!o.config.privacy, reconnect: { initialMs: 5, maxMs: 20, maxTries: 3 } }));
  });
  const runs = clients.map((c) => c.run());
  for (const r of runs) r.catch(() => undefined);
  const tick = setInterval(() => host.tick(), 10);
  const all = Promise.allSettled(runs).finally(() => clearInterval(tick));
  return {
    host, clients, received, sent, runs,
    async survivors() {
      await all;
      const out: SiteResult[] = [];
      for (const [k, r] of runs.entries()) if (!dropped.has(k)) out.push(await r);
      return out;
    },
  };
}
