// An in-memory stand-in for a pair of RTCDataChannels: sends queue into bufferedAmount and are
// delivered to the other end asynchronously, a little at a time, like a real channel. It refuses
// what a real one fails on: a single message over 256 KiB, or more than 16 MiB queued (Chromium
// closes a channel whose send buffer overflows).
import { ChunkReceiver, ChunkSender, type ByteChannel } from '../../../src/fed/chunked.ts';
import type { FederationHost } from '../../../src/fed/host.ts';
import type { Transport, TransportHandlers } from '../../../src/fed/client.ts';

export const MAX_MESSAGE = 256 * 1024;
export const MAX_QUEUED = 16 * 1024 * 1024;

export class FakeChannel implements ByteChannel {
  bufferedAmount = 0;
  bufferedAmountLowThreshold = 0;
  onbufferedamountlow: ((ev: Event) => unknown) | null = null;
  readyState = 'open';
  peer?: FakeChannel;
  onData: (d: Uint8Array) => void = () => undefined;
  onClosed: () => void = () => undefined;
  maxQueued = 0;
  private queue: Uint8Array[] = [];
  private pumping = false;

  send(data: Uint8Array): void {
    if (this.readyState !== 'open') throw new Error('InvalidStateError: channel not open');
    if (data.length > MAX_MESSAGE)
      throw new Error(`OperationError: message of ${data.length} bytes is too large`);
    if (this.bufferedAmount + data.length > MAX_QUEUED) {
      this.close();
      throw new Error('send queue is full: channel closed');
    }
    this.queue.push(data.slice());
    this.bufferedAmount += data.length;
    this.maxQueued = Math.max(this.maxQueued, this.bufferedAmount);
    if (!this.pumping) {
      this.pumping = true;
      setTimeout(() => this.pump(), 0);
    }
  }

  /** Delivers up to 256 KiB per tick. */
  private pump(): void {
    let budget = 256 * 1024;
    while (this.queue.length && budget > 0 && this.readyState === 'open') {
      const d = this.queue.shift()!;
      budget -= d.length;
      const before = this.bufferedAmount;
      this.bufferedAmount -= d.length;
      this.peer?.onData(d);
      if (
        before > this.bufferedAmountLowThreshold &&
        this.bufferedAmount <= this.bufferedAmountLowThreshold
      )
        this.onbufferedamountlow?.({} as Event);
    }
    if (this.queue.length && this.readyState === 'open') setTimeout(() => this.pump(), 0);
    else this.pumping = false;
  }

  close(): void {
    if (this.readyState !== 'open') return;
    this.readyState = 'closed';
    this.peer?.close();
    this.onClosed();
  }
}

export function channelPair(): [FakeChannel, FakeChannel] {
  const a = new FakeChannel();
  const b = new FakeChannel();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/**
 * A site's transport to a FederationHost over a fresh in-memory channel pair, chunked both ways
 * (what a workshop participant gets over a PeerJS data channel).
 */
export function chunkedConnection(host: FederationHost, h: TransportHandlers): Transport {
  const [siteCh, hostCh] = channelPair();
  const hostTx = new ChunkSender(hostCh);
  const handlers = host.accept({ send: (b) => hostTx.send(b), close: () => hostCh.close() });
  const hostRx = new ChunkReceiver(handlers.onMessage);
  hostCh.onData = (d) => hostRx.push(d);
  hostCh.onClosed = () => handlers.onClose();
  const siteTx = new ChunkSender(siteCh);
  const siteRx = new ChunkReceiver(h.onMessage);
  siteCh.onData = (d) => siteRx.push(d);
  siteCh.onClosed = () => h.onClose();
  return { send: (b) => void siteTx.send(b).catch(() => undefined), close: () => siteCh.close() };
}
