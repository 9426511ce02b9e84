// A WebSocket client at the byte level, for sending what no well-behaved client library would:
// frames with RSV bits set, invalid UTF-8 text, declared lengths far beyond what follows, and
// request targets that are not URLs. Loopback only.
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';

/** Opens a TCP connection to 127.0.0.1:port and sends `request` (a full HTTP request head). */
export function rawRequest(
  port: number,
  request: string,
): Promise<{ socket: Socket; response: Promise<string> }> {
  return new Promise((ok, fail) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(request);
      let got = '';
      const response = new Promise<string>((done) => {
        const onData = (b: Buffer) => {
          got += b.toString('latin1');
          if (got.includes('\r\n\r\n')) {
            socket.off('data', onData);
            done(got);
          }
        };
        socket.on('data', onData);
        socket.once('close', () => done(got));
      });
      ok({ socket, response });
    });
    socket.on('error', () => undefined);
    socket.once('error', fail);
  });
}

/** A WebSocket handshake on `path`; resolves with the socket once the server answered 101. */
export async function rawWebSocket(
  port: number,
  path: string,
): Promise<{ socket: Socket; status: string }> {
  const key = randomBytes(16).toString('base64');
  const { socket, response } = await rawRequest(
    port,
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const head = await response;
  return { socket, status: head.split('\r\n')[0] };
}

/** One masked client frame. `declaredLength` (default: the payload's) may exceed what is sent. */
export function frame(
  opcode: number,
  payload: Uint8Array,
  o: { fin?: boolean; rsv?: number; declaredLength?: number } = {},
): Buffer {
  const len = o.declaredLength ?? payload.length;
  const head: number[] = [((o.fin ?? true) ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | opcode];
  if (len < 126) head.push(0x80 | len);
  else if (len < 65536) head.push(0x80 | 126, len >> 8, len & 255);
  else {
    head.push(0x80 | 127);
    const big = Buffer.alloc(8);
    big.writeBigUInt64BE(BigInt(len));
    head.push(...big);
  }
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([Buffer.from(head), mask, body]);
}

/** Resolves when the socket closes, or with 'open' after `ms` (a bounded wait). */
export function closedWithin(socket: Socket, ms: number): Promise<'closed' | 'open'> {
  if (socket.destroyed) return Promise.resolve('closed');
  return new Promise((ok) => {
    const t = setTimeout(() => ok('open'), ms);
    socket.once('close', () => {
      clearTimeout(t);
      ok('closed');
    });
  });
}
