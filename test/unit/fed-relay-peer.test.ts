// The relay also answers PeerJS signalling (workshop host mode) on the same port as /fed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../src/node/relay/server.ts';
import { decodeMessage, encodeMessage } from '../../src/fed/protocol.ts';
import { decodeChallenge, isChallenge, sealFrame } from '../../src/fed/identity/envelope.ts';
import { ephemeralIdentity } from '../../src/fed/identity/site-key.ts';

describe('relay PeerJS signalling', () => {
  let relay: Relay;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'relay-peer-'));
    relay = await startRelay({
      dataDir: dir,
      log: () => undefined,
      config: {
        method: 'fedavg',
        configuration: '3d_fullres',
        rounds: 1,
        itersPerRound: 1,
        minSites: 1,
        roundDeadlineMs: 1000,
        weighting: 'uniform',
        encoding: 'fp16',
        expectedSites: 2,
        token: 't',
      },
    });
  });
  afterAll(async () => {
    await relay.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('hands out peer ids and opens a signalling socket', async () => {
    const id = await (await fetch(`${relay.url}peerjs/peerjs/id`)).text();
    expect(id).toMatch(/^[0-9a-f-]{8,}$/);
    const ws = new WebSocket(
      `ws://127.0.0.1:${relay.port}/peerjs/peerjs?key=peerjs&id=${id}&token=abc`,
    );
    const first = await new Promise<string>((ok, fail) => {
      ws.once('message', (d) => ok(String(d)));
      ws.once('error', fail);
    });
    expect(JSON.parse(first).type).toBe('OPEN');
    ws.close();
  });

  it('the federation endpoint still answers beside it; other paths are refused', async () => {
    const ws = new WebSocket(relay.wsUrl);
    const next = () =>
      new Promise<Uint8Array>((ok) => ws.once('message', (d: Buffer) => ok(new Uint8Array(d))));
    const challenge = next();
    await new Promise((ok) => ws.once('open', ok));
    const c = await challenge;
    expect(isChallenge(c)).toBe(true);
    const reply = next();
    ws.send(
      await sealFrame(
        await ephemeralIdentity(),
        decodeChallenge(c),
        0,
        encodeMessage({ type: 'hello', token: 'wrong', siteName: 'x', numCases: 1 }),
        true,
      ),
    );
    expect(decodeMessage(await reply).message).toEqual({
      type: 'refused',
      reason: 'wrong or missing join token',
    });
    // The relay ends a refused connection.
    await new Promise((ok) => ws.once('close', ok));
    const other = new WebSocket(`ws://127.0.0.1:${relay.port}/elsewhere`);
    await expect(
      new Promise((ok, fail) => {
        other.once('open', ok);
        other.once('error', fail);
      }),
    ).rejects.toThrow();
  });
});
