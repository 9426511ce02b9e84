// The workshop's PeerJS plumbing (src/fed/peer-transport.ts) against a scripted stand-in for the
// `peerjs` package: what a participant and a host do when the signalling server fails or drops
// them, and when a data channel does not open in time. These are the states in which a workshop
// used to stall for good (issue 15 item 8): a participant kept its dead peer and failed every one of
// its retries for half an hour; a host that lost its signalling socket could be reached by no one.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// A stand-in for PeerJS' untyped event emitter: each event's handlers take whatever it carries.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Handler = (...a: any[]) => void;
class Emitter {
  private hs = new Map<string, Set<Handler>>();
  on(ev: string, f: Handler) {
    if (!this.hs.has(ev)) this.hs.set(ev, new Set());
    this.hs.get(ev)!.add(f);
    return this;
  }
  once(ev: string, f: Handler) {
    const g: Handler & { orig?: Handler } = (...a) => {
      this.off(ev, g);
      f(...a);
    };
    g.orig = f;
    return this.on(ev, g);
  }
  /** Removes `f`, also when it was added with once() (as eventemitter3, PeerJS' emitter, does). */
  off(ev: string, f: Handler) {
    for (const g of [...(this.hs.get(ev) ?? [])])
      if (g === f || (g as { orig?: Handler }).orig === f) this.hs.get(ev)!.delete(g);
    return this;
  }
  emit(ev: string, ...a: Parameters<Handler>) {
    for (const f of [...(this.hs.get(ev) ?? [])]) f(...a);
  }
  listeners(ev: string) {
    return this.hs.get(ev)?.size ?? 0;
  }
}

class FakeConn extends Emitter {
  closed = false;
  dataChannel = {
    binaryType: '',
    bufferedAmount: 0,
    bufferedAmountLowThreshold: 0,
    onbufferedamountlow: null,
    readyState: 'open',
    send: () => undefined,
    addEventListener: () => undefined,
  };
  constructor(readonly peer: string) {
    super();
  }
  close() {
    this.closed = true;
  }
}

/** What the next Peer does once made: open, or fail before opening. */
const script: Array<'open' | 'fail'> = [];
const peers: FakePeer[] = [];
class FakePeer extends Emitter {
  id: string;
  destroyed = false;
  disconnected = false;
  reconnects = 0;
  conns: FakeConn[] = [];
  /** Whether a connection opens (false: it never does). */
  opens = true;
  constructor(a?: unknown) {
    super();
    this.id = typeof a === 'string' ? a : `random-${peers.length}`;
    peers.push(this);
    const next = script.shift() ?? 'open';
    setTimeout(
      () =>
        next === 'open'
          ? this.emit('open', this.id)
          : this.emit('error', {
              type: 'server-error',
              message: 'Could not get an ID from the server.',
            }),
      0,
    );
  }
  connect(id: string) {
    // PeerJS: a disconnected peer cannot connect (it warns, emits 'disconnected' and returns undefined).
    if (this.disconnected || this.destroyed) {
      setTimeout(
        () =>
          this.emit('error', {
            type: 'disconnected',
            message: 'Cannot connect to new Peer after disconnecting from server.',
          }),
        0,
      );
      return undefined;
    }
    const c = new FakeConn(id);
    this.conns.push(c);
    if (this.opens) setTimeout(() => c.emit('open'), 0);
    return c;
  }
  /** The signalling socket closed. */
  lose() {
    this.disconnected = true;
    this.emit('error', { type: 'network', message: 'Lost connection to server.' });
    this.emit('disconnected', this.id);
  }
  reconnect() {
    this.reconnects++;
    this.disconnected = false;
    setTimeout(() => this.emit('open', this.id), 0);
  }
  destroy() {
    this.destroyed = true;
  }
}

vi.mock('peerjs', () => ({ Peer: FakePeer }));
const { peerConnect, hostOverPeerJS, CONNECT_TIMEOUT_MS, hostPeerId } =
  await import('../../src/fed/peer-transport.ts');
const { FederationHost } = await import('../../src/fed/host.ts');

const handlers = { onMessage: () => undefined, onClose: () => undefined };

beforeEach(() => {
  vi.stubGlobal('location', { protocol: 'http:', hostname: '127.0.0.1', port: '8080' });
  script.length = 0;
  peers.length = 0;
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe('workshop participant over PeerJS', () => {
  it('a peer whose signalling failed is replaced at the next try (not kept, failing every retry)', async () => {
    script.push('fail', 'open');
    const connect = peerConnect('wk77');
    await expect(connect(handlers)).rejects.toThrow(/signalling failed/);
    await expect(connect(handlers)).resolves.toBeDefined();
    expect(peers.length).toBe(2);
    expect(peers[1].conns.map((c) => c.peer)).toEqual([hostPeerId('wk77')]);
  });

  it('a peer that lost the signalling server after opening is replaced at the next try', async () => {
    const connect = peerConnect('wk77');
    await connect(handlers);
    peers[0].lose();
    await expect(connect(handlers)).resolves.toBeDefined();
    expect(peers.length).toBe(2);
    expect(peers[0].destroyed).toBe(true);
  });

  it('a try whose data channel does not open in time is closed, and leaves no listener behind', async () => {
    vi.useFakeTimers();
    const connect = peerConnect('wk77');
    const first = connect(handlers);
    await vi.advanceTimersByTimeAsync(1);
    peers[0].opens = false;
    // The first try connected at once; a second one (a reconnect) hangs.
    await first;
    const second = connect(handlers);
    second.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(CONNECT_TIMEOUT_MS + 1);
    await expect(second).rejects.toThrow(/did not answer/);
    expect(peers[0].conns[1].closed).toBe(true);
    expect(peers[0].conns[0].closed).toBe(false);
    expect(peers[0].listeners('error')).toBe(0);
    expect(peers[0].conns[1].listeners('open')).toBe(0);
  });

  it("another workshop's unavailable peer does not fail this try", async () => {
    vi.useFakeTimers();
    const connect = peerConnect('wk77');
    await (async () => {
      const p = connect(handlers);
      await vi.advanceTimersByTimeAsync(1);
      await p;
    })();
    peers[0].opens = false;
    const next = connect(handlers);
    next.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(1);
    peers[0].emit('error', {
      type: 'peer-unavailable',
      message: 'Could not connect to peer fednnunet-ws-other',
    });
    peers[0].conns[1].emit('open');
    await expect(next).resolves.toBeDefined();
  });
});

describe('workshop host over PeerJS', () => {
  it('registers its id again after losing the signalling server, so participants can still reach it', async () => {
    vi.useFakeTimers();
    const host = new FederationHost({
      config: {
        method: 'fedavg',
        configuration: '3d_fullres',
        rounds: 1,
        itersPerRound: 1,
        minSites: 1,
        roundDeadlineMs: 60_000,
        weighting: 'uniform',
        encoding: 'fp32',
        expectedSites: 2,
        token: 'wk77',
      },
    });
    const hosting = hostOverPeerJS(host, 'wk77');
    await vi.advanceTimersByTimeAsync(1);
    const h = await hosting;
    expect(h.peerId).toBe(hostPeerId('wk77'));
    const peer = peers[0];
    peer.lose();
    await vi.advanceTimersByTimeAsync(1500);
    expect(peer.reconnects).toBe(1);
    expect(peer.disconnected).toBe(false);
    // Lost again: registers again (backoff grows, bounded).
    peer.lose();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(peer.reconnects).toBe(2);
    // Closed hosting: no more registering.
    h.close();
    peer.lose();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(peer.reconnects).toBe(2);
  });
});
