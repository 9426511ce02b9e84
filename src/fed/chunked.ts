// Protocol messages over a WebRTC data channel (workshop host mode): a single data-channel message
// over ~256 KiB fails, and a channel whose send buffer overflows is closed by the browser. So
// every message is cut into chunks and sent with back-pressure: when the channel has more than
// `highWater` bytes queued, sending waits for its 'bufferedamountlow' event. The channel is
// ordered and reliable, so chunks arrive in order; each message starts with its total length.
//
// Chunk layout: byte 0 = 1 (first chunk of a message, then u32 LE total length) or 0
// (continuation); the rest is message bytes.

/** The subset of RTCDataChannel used here (a fake one in tests). */
export interface ByteChannel {
  send(data: Uint8Array<ArrayBuffer>): void;
  readonly bufferedAmount: number;
  bufferedAmountLowThreshold: number;
  onbufferedamountlow: ((ev: Event) => unknown) | null;
  readonly readyState: string;
}

export interface ChunkOptions {
  /** Bytes of message per chunk (default 64 KiB; keep well under 256 KiB). */
  chunkBytes?: number;
  /** Queue at most this many bytes in the channel before waiting (default 1 MiB). */
  highWater?: number;
  /** Resume when the queue drains below this (default 256 KiB). */
  lowWater?: number;
}

export class ChannelClosed extends Error {}

export class ChunkSender {
  private readonly chunkBytes: number;
  private readonly highWater: number;
  private tail: Promise<void> = Promise.resolve();
  /** Times sending waited for the channel to drain (tests and diagnostics). */
  waits = 0;

  constructor(
    private readonly ch: ByteChannel,
    opts: ChunkOptions = {},
  ) {
    this.chunkBytes = opts.chunkBytes ?? 64 * 1024;
    this.highWater = opts.highWater ?? 1024 * 1024;
    ch.bufferedAmountLowThreshold = opts.lowWater ?? 256 * 1024;
  }

  /** Queues a message; messages go out whole and in call order. Resolves once it is all handed to the channel. */
  send(message: Uint8Array): Promise<void> {
    const p = this.tail.then(() => this.sendNow(message));
    this.tail = p.catch(() => undefined);
    return p;
  }

  private drained(): Promise<void> {
    this.waits++;
    return new Promise((ok) => {
      this.ch.onbufferedamountlow = () => {
        this.ch.onbufferedamountlow = null;
        ok();
      };
    });
  }

  private async sendNow(message: Uint8Array): Promise<void> {
    let off = 0;
    let first = true;
    while (first || off < message.length) {
      if (this.ch.readyState !== 'open')
        throw new ChannelClosed(`data channel is ${this.ch.readyState}`);
      if (this.ch.bufferedAmount > this.highWater) await this.drained();
      const head = first ? 5 : 1;
      const n = Math.min(this.chunkBytes, message.length - off);
      const chunk = new Uint8Array(head + n);
      chunk[0] = first ? 1 : 0;
      if (first) new DataView(chunk.buffer).setUint32(1, message.length, true);
      chunk.set(message.subarray(off, off + n), head);
      this.ch.send(chunk);
      off += n;
      first = false;
    }
  }
}

export class ChunkReceiver {
  private buf?: Uint8Array;
  private filled = 0;

  constructor(
    private readonly onMessage: (m: Uint8Array) => void,
    private readonly maxBytes = 512 * 1024 * 1024,
  ) {}

  push(data: ArrayBuffer | Uint8Array): void {
    const c = data instanceof Uint8Array ? data : new Uint8Array(data);
    if (c.length < 1) throw new Error('empty chunk');
    if (c[0] === 1) {
      if (this.buf) throw new Error('a new message began before the last one ended');
      if (c.length < 5) throw new Error('truncated first chunk');
      const total = new DataView(c.buffer, c.byteOffset, c.byteLength).getUint32(1, true);
      if (total > this.maxBytes)
        throw new Error(`message of ${total} bytes exceeds the limit of ${this.maxBytes}`);
      this.buf = new Uint8Array(total);
      this.filled = 0;
      this.append(c.subarray(5));
    } else if (c[0] === 0) {
      if (!this.buf) throw new Error('continuation chunk without a message');
      this.append(c.subarray(1));
    } else throw new Error(`bad chunk kind ${c[0]}`);
  }

  private append(part: Uint8Array): void {
    const buf = this.buf!;
    if (this.filled + part.length > buf.length) throw new Error('message longer than announced');
    buf.set(part, this.filled);
    this.filled += part.length;
    if (this.filled === buf.length) {
      this.buf = undefined;
      this.onMessage(buf);
    }
  }
}
