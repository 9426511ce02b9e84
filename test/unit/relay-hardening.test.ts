// Issue 15: the relay survives hostile requests (one request used to end the process), bounds
// what an unauthenticated socket can make it buffer, and refuses inconsistent stored state. Every
// network check is on 127.0.0.1 with bounded waits; each case failed on the code before the fix.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startRelay,
  PRE_AUTH_MAX_BYTES,
  type Relay,
  type RelayOptions,
} from '../../src/node/relay/server.ts';
import { saveSnapshot } from '../../src/node/relay/persistence.ts';
import { decodeMessage, encodeMessage, MAX_HEADER_BYTES } from '../../src/fed/protocol.ts';
import { decodeChallenge, sealFrame } from '../../src/fed/identity/envelope.ts';
import { ephemeralIdentity } from '../../src/fed/identity/site-key.ts';
import { privacyConfig } from '../../src/fed/secagg/config.ts';
import { privacyFromArgs } from '../../src/cli/privacy-args.ts';
import { closedWithin, frame, rawRequest, rawWebSocket } from './helpers/raw-ws.ts';

const scratch = mkdtempSync(join(tmpdir(), 'relay-hard-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => join(scratch, `d${++dirs}`);

const CONFIG: RelayOptions['config'] = {
  method: 'fedavg',
  configuration: '3d_fullres',
  rounds: 2,
  itersPerRound: 1,
  minSites: 2,
  roundDeadlineMs: 60_000,
  weighting: 'uniform',
  encoding: 'fp32',
  expectedSites: 2,
  token: 'secret-token',
};

function staticRoot(): string {
  const root = join(scratch, 'app');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'index.html'), '<!doctype html>app');
  writeFileSync(join(scratch, 'outside.txt'), 'operator secret');
  symlinkSync(join(scratch, 'outside.txt'), join(root, 'leak.txt'));
  return root;
}

/** Opens a /fed socket and sends a signed hello; resolves with the relay's first reply after it. */
async function hello(
  relay: Relay,
  siteName: string,
  token: string,
): Promise<{ reply: ReturnType<typeof decodeMessage>['message']; ws: WebSocket }> {
  const ws = new WebSocket(relay.wsUrl);
  const next = () =>
    new Promise<Uint8Array>((ok, fail) => {
      ws.once('message', (d: Buffer) => ok(new Uint8Array(d)));
      ws.once('close', () => fail(new Error('closed')));
    });
  const challenge = next();
  challenge.catch(() => undefined); // a refused upgrade rejects the open below instead
  await new Promise((ok, fail) => {
    ws.once('open', ok);
    ws.once('error', fail);
  });
  const c = await challenge;
  const reply = next();
  ws.send(
    await sealFrame(
      await ephemeralIdentity(),
      decodeChallenge(c),
      0,
      encodeMessage({ type: 'hello', token, siteName, numCases: 1 }),
      true,
    ),
  );
  return { reply: decodeMessage(await reply).message, ws };
}

/** The status a WebSocket upgrade gets: 101, or the HTTP error it was refused with. */
async function upgradeStatus(
  port: number,
  path = '/fed',
): Promise<{ status: number; close: () => void }> {
  const { socket, status } = await rawWebSocket(port, path);
  return { status: Number(status.split(' ')[1]), close: () => socket.destroy() };
}

async function peerSocket(relay: Relay): Promise<Awaited<ReturnType<typeof rawWebSocket>>> {
  const id = await (await fetch(`${relay.url}peerjs/peerjs/id`)).text();
  const s = await rawWebSocket(relay.port, `/peerjs/peerjs?key=peerjs&id=${id}&token=abc`);
  expect(s.status).toContain('101');
  return s;
}

describe('one request does not end the relay (item 1, item 7)', () => {
  let relay: Relay;
  const logs: string[] = [];
  beforeAll(async () => {
    relay = await startRelay({
      dataDir: newDir(),
      staticDir: staticRoot(),
      log: (l) => logs.push(l),
      config: CONFIG,
    });
  });
  afterAll(() => relay.close());
  const alive = async () => expect((await fetch(relay.url)).status).toBe(200);

  it('a malformed percent-encoding is a 400', async () => {
    const { response, socket } = await rawRequest(relay.port, 'GET /% HTTP/1.1\r\nHost: x\r\n\r\n');
    expect((await response).split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    socket.destroy();
    expect((await fetch(`${relay.url}peerjs/%`)).status).toBe(400);
    await alive();
  });

  it('an upgrade whose target is not a URL is a 400', async () => {
    const { status, close } = await upgradeStatus(relay.port, 'http://[');
    expect(status).toBe(400);
    close();
    await alive();
  });

  it('the static server answers only GET/HEAD and stays inside its root', async () => {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const r = await fetch(relay.url, { method });
      expect(r.status, method).toBe(405);
      expect(r.headers.get('allow')).toBe('GET, HEAD');
    }
    const leak = await fetch(`${relay.url}leak.txt`);
    expect(leak.status).toBe(403);
    expect(await leak.text()).not.toContain('operator secret');
    await alive();
  });

  it('PeerJS signalling: a non-JSON text frame, invalid UTF-8 and RSV bits close only that socket', async () => {
    const bad = [
      frame(1, new TextEncoder().encode('this is not json')),
      frame(1, new Uint8Array([0xc3, 0x28, 0xff])),
      frame(1, new TextEncoder().encode('{}'), { rsv: 3 }),
    ];
    for (const f of bad) {
      const { socket } = await peerSocket(relay);
      socket.write(f);
      expect(await closedWithin(socket, 5000)).toBe('closed');
      await alive();
    }
    // Signalling still works for the next participant.
    const { socket } = await peerSocket(relay);
    socket.destroy();
  });

  it('site names reach the log without control characters', async () => {
    const { reply, ws } = await hello(relay, 'evil\u001b[2J\rforged\u0007', 'wrong');
    expect(reply).toMatchObject({ type: 'refused' });
    ws.terminate();
    const line = logs.find((l) => l.includes('evil'));
    expect(line).toBeDefined();
    expect([...line!].some((c) => c.charCodeAt(0) < 0x20)).toBe(false);
    expect(line).toContain('\\u{1b}[2J');
  });
});

describe('memory and time before authentication (item 2)', () => {
  let relay: Relay;
  beforeAll(async () => {
    relay = await startRelay({
      dataDir: newDir(),
      log: () => undefined,
      config: CONFIG,
      helloTimeoutMs: 500,
      limits: { maxPerAddress: 4, maxFailures: 100 },
    });
  });
  afterAll(() => relay.close());

  it('a first /fed frame declaring 200 MB is refused from its header, before it is buffered', async () => {
    const { socket } = await rawWebSocket(relay.port, '/fed');
    // Only the head and 100 KiB follow: a relay that waits to buffer all 200 MB never closes.
    socket.write(frame(2, new Uint8Array(100 * 1024), { declaredLength: 200 * 1024 * 1024 }));
    expect(await closedWithin(socket, 3000)).toBe('closed');
    expect(PRE_AUTH_MAX_BYTES).toBeLessThanOrEqual(64 * 1024);
  });

  it('a socket that sends no hello, or sends it one byte at a time, is closed at the hello deadline', async () => {
    const silent = await rawWebSocket(relay.port, '/fed');
    const slow = await rawWebSocket(relay.port, '/fed');
    const f = frame(2, new Uint8Array(1000));
    slow.socket.write(f.subarray(0, 1));
    const dripping = setInterval(() => slow.socket.write(f.subarray(1, 2)), 100);
    try {
      expect(await closedWithin(silent.socket, 5000)).toBe('closed');
      expect(await closedWithin(slow.socket, 5000)).toBe('closed');
    } finally {
      clearInterval(dripping);
    }
  });

  it('connections per address are capped', async () => {
    const open = [];
    for (let i = 0; i < 4; i++) open.push(await upgradeStatus(relay.port));
    expect(open.map((o) => o.status)).toEqual([101, 101, 101, 101]);
    const fifth = await upgradeStatus(relay.port);
    expect(fifth.status).toBe(429);
    for (const o of [...open, fifth]) o.close();
  });

  it('the JSON header is capped before it is parsed', () => {
    const big = encodeMessage({ type: 'error', message: 'x'.repeat(MAX_HEADER_BYTES) });
    expect(() => decodeMessage(big)).toThrow(/header of \d+ bytes exceeds the limit/);
  });

  it('PeerJS: a 1 MB signalling message and a message flood close the socket', async () => {
    const big = await peerSocket(relay);
    big.socket.write(
      frame(
        1,
        new TextEncoder().encode(
          JSON.stringify({ type: 'OFFER', dst: 'x', payload: 'y'.repeat(1 << 20) }),
        ),
      ),
    );
    expect(await closedWithin(big.socket, 3000)).toBe('closed');
    const flood = await peerSocket(relay);
    const heartbeat = frame(1, new TextEncoder().encode('{"type":"HEARTBEAT"}'));
    for (let i = 0; i < 1000; i++) flood.socket.write(heartbeat);
    expect(await closedWithin(flood.socket, 3000)).toBe('closed');
  });
});

describe('failed authentications (item 7)', () => {
  let relay: Relay;
  beforeAll(async () => {
    relay = await startRelay({
      dataDir: newDir(),
      log: () => undefined,
      config: CONFIG,
      limits: { maxFailures: 3 },
    });
  });
  afterAll(() => relay.close());

  it('failed authentications from one address are throttled', async () => {
    for (let i = 0; i < 3; i++) {
      const { reply, ws } = await hello(relay, 'guesser', `guess-${i}`);
      expect(reply).toMatchObject({ type: 'refused' });
      ws.terminate();
    }
    // Even the right token waits out the window now.
    await expect(hello(relay, 'guesser', CONFIG.token)).rejects.toBeDefined();
    expect((await upgradeStatus(relay.port)).status).toBe(429);
  });
});

describe('stored state and configuration (item 4)', () => {
  it('refuses to run a stored plain federation under secure-aggregation options, naming the difference', async () => {
    const dir = newDir();
    const { token: _t, ...stored } = CONFIG;
    saveSnapshot(dir, { config: stored, phase: 'join', round: 0, sites: [], history: [] });
    const privacy = privacyConfig(2, CONFIG, { dpEpsilon: 1, clip: 1 });
    await expect(
      startRelay({ dataDir: dir, log: () => undefined, config: { ...CONFIG, privacy } }),
    ).rejects.toThrow(
      /state\.json holds a federation with other settings[\s\S]*privacy: stored none, given \{"secureAggregation":true[\s\S]*another --data-dir/,
    );
    await expect(
      startRelay({ dataDir: dir, log: () => undefined, config: { ...CONFIG, rounds: 5 } }),
    ).rejects.toThrow(/rounds: stored 2, given 5/);
    // The same options continue it.
    const relay = await startRelay({ dataDir: dir, log: () => undefined, config: CONFIG });
    await relay.close();
  });

  it('state files are private to the operator', () => {
    const dir = newDir();
    const { token: _t, ...stored } = CONFIG;
    saveSnapshot(dir, { config: stored, phase: 'join', round: 0, sites: [], history: [] });
    expect(statSync(join(dir, 'state.json')).mode & 0o777).toBe(0o600);
  });

  it('a corrupt or inconsistent state file is refused, naming the file', async () => {
    const { token: _t, ...stored } = CONFIG;
    const cases: Array<[unknown, RegExp]> = [
      ['{ not json', /not readable as JSON/],
      [
        { config: stored, phase: 'flying', round: 0, sites: [], history: [] },
        /unknown phase "flying"/,
      ],
      [
        {
          config: stored,
          phase: 'rounds',
          round: 99,
          sites: [{ siteId: 'a', siteName: 'a', numCases: 1 }],
          history: [],
        },
        /round 99 is not in 0\.\.2/,
      ],
      [
        { config: { ...stored, method: 42 }, phase: 'join', round: 0, sites: [], history: [] },
        /invalid federation config/,
      ],
      [
        { config: stored, phase: 'join', round: 0, sites: [{ siteId: 'a' }], history: [] },
        /site 0 is not a valid site record/,
      ],
      [
        {
          config: stored,
          phase: 'rounds',
          round: 1,
          sites: [{ siteId: 'a', siteName: 'a', numCases: 1 }],
          history: [],
          globalEntries: [
            { name: 'w', shape: [4], encoding: 'fp32', offset: 0, byteLength: 16, crc32: 0 },
          ],
        },
        /global\.bin/,
      ],
    ];
    for (const [content, why] of cases) {
      const dir = newDir();
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        join(dir, 'state.json'),
        typeof content === 'string' ? content : JSON.stringify(content),
      );
      const started = startRelay({ dataDir: dir, log: () => undefined, config: CONFIG });
      await expect(started, String(why)).rejects.toThrow(why);
      await expect(started).rejects.toThrow(
        join(dir, why.source.includes('global') ? 'global.bin' : 'state.json'),
      );
    }
  });
});

describe('fednnunet relay (command line)', () => {
  const bin = 'bin/fednnunet.js';

  it('refuses to start on a data dir holding other settings, saying which and how to start anew', () => {
    const dir = newDir();
    const { token: _t, ...stored } = CONFIG;
    saveSnapshot(dir, {
      config: {
        ...stored,
        encoding: 'fp16',
        rounds: 10,
        itersPerRound: 250,
        roundDeadlineMs: 3_600_000,
        method: 'ffe',
      },
      phase: 'join',
      round: 0,
      sites: [],
      history: [],
    });
    const r = spawnSync(
      process.execPath,
      [
        bin,
        'relay',
        '--port',
        '0',
        '--data-dir',
        dir,
        '--static',
        dir,
        '--secure-agg',
        '--dp-epsilon',
        '1',
        '--clip',
        '1',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/privacy: stored none, given \{"secureAggregation":true/);
    expect(r.stderr).toMatch(/another --data-dir/);
    expect(r.stdout).not.toMatch(/join code/);
  });

  it('the default join code carries at least 96 bits', async () => {
    const dir = newDir();
    const p = spawn(
      process.execPath,
      [bin, 'relay', '--port', '0', '--data-dir', dir, '--static', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    try {
      for (let i = 0; i < 300 && !out.includes('join code'); i++)
        await new Promise((ok) => setTimeout(ok, 50));
      const code = /join code: (\S+)/.exec(out)?.[1];
      expect(code).toMatch(/^[A-Za-z0-9_-]{16,}$/); // base64url: 6 bits a character
    } finally {
      p.kill('SIGTERM');
      await new Promise((ok) => p.once('exit', ok));
    }
  }, 30_000);
});

describe('secure-aggregation threshold', () => {
  it('below a majority only with --allow-minority-threshold', () => {
    const fed = { rounds: 2, weighting: 'uniform' as const, minSites: 5 };
    expect(() => privacyFromArgs({ 'secure-agg': true, threshold: '2' }, 5, fed)).toThrow(
      /below a majority/,
    );
    expect(
      privacyFromArgs(
        { 'secure-agg': true, threshold: '2', 'allow-minority-threshold': true },
        5,
        fed,
      )?.threshold,
    ).toBe(2);
    expect(privacyFromArgs({ 'secure-agg': true, threshold: '3' }, 5, fed)?.threshold).toBe(3);
  });
});
