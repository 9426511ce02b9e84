// The relay's Flower gateway (src/node/relay/flower-gateway.ts) against a stand-in SuperLink:
// Fleet calls are forwarded byte for byte; other paths, methods, content types and oversized
// bodies are refused before anything reaches the SuperLink.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flowerGateway } from '../../src/node/relay/flower-gateway.ts';

const listen = (s: Server) =>
  new Promise<string>((r) =>
    s.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)),
  );

describe('Flower gateway', () => {
  const seen: string[] = [];
  let upstream: Server;
  let gateway: Server;
  let url = '';
  beforeAll(async () => {
    upstream = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        seen.push(`${req.url} ${Buffer.concat(parts).toString('hex')}`);
        res.writeHead(200, { 'Content-Type': 'application/protobuf' });
        res.end(Buffer.from([8, 42]));
      });
    });
    const target = await listen(upstream);
    gateway = createServer(flowerGateway(target, { maxBodyBytes: 1024 }));
    url = await listen(gateway);
  });
  afterAll(() => {
    upstream.close();
    gateway.close();
  });

  const post = (path: string, body: Uint8Array, type = 'application/protobuf') =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': type },
      body: body as Uint8Array<ArrayBuffer>,
    });

  it('forwards Fleet calls and their answers', async () => {
    const r = await post('/api/v0/fleet/pull-messages', Uint8Array.from([10, 2, 8, 1]));
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/protobuf');
    expect([...new Uint8Array(await r.arrayBuffer())]).toEqual([8, 42]);
    expect(seen).toEqual(['/api/v0/fleet/pull-messages 0a020801']);
  });

  it('refuses what a SuperNode does not send', async () => {
    const n = seen.length;
    expect((await post('/api/v0/fleet/../control/start-run', new Uint8Array(1))).status).toBe(404);
    expect((await post('/api/v0/fleet/create-run', new Uint8Array(1))).status).toBe(404);
    expect((await fetch(`${url}/api/v0/fleet/pull-messages`)).status).toBe(405);
    expect(
      (await post('/api/v0/fleet/pull-messages', new Uint8Array(1), 'text/plain')).status,
    ).toBe(415);
    expect((await post('/api/v0/fleet/push-object', new Uint8Array(2048))).status).toBe(413);
    expect(seen.length).toBe(n);
  });
});
