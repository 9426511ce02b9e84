// Bounded fuzz of the relay's three inputs — HTTP, the /fed WebSocket and PeerJS signalling —
// against a relay in its own process (its peak RSS is read from /proc, undisturbed by the fuzzer):
// random bytes, truncations and bit flips of valid requests and frames, huge declared lengths,
// oversized first frames. Then two honest sites run a federation on the same relay. Prints the
// relay's RSS before, its peak during the fuzz, and whether it stayed under the stated bound.
//
// The relay runs with the failed-authentication throttle raised (limits.maxFailures): with the
// default (10 a minute per address) nearly every fuzz connection from 127.0.0.1 would be turned
// away at the upgrade, and the frame parsers behind it would go untested.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { mulberry32 } from '../src/util/rng.ts';
import { encodeMessage } from '../src/fed/protocol.ts';
import { decodeChallenge, sealFrame } from '../src/fed/identity/envelope.ts';
import { ephemeralIdentity } from '../src/fed/identity/site-key.ts';
import { frame } from '../test/unit/helpers/raw-ws.ts';

const RSS_BOUND_MB = 150;
const CASES = { http: 400, fed: 400, peer: 300 };
const CONCURRENCY = 16;
const CASE_TIMEOUT_MS = 3000;

if (process.argv[2] === 'serve') {
  const { startRelay } = await import('../src/node/relay/server.ts');
  const { mergeSiteFingerprints } = await import('../src/fed/ffe-merge.ts');
  const dir = process.argv[3];
  const relay = await startRelay({
    dataDir: join(dir, 'data'),
    staticDir: join(dir, 'app'),
    log: () => undefined,
    aggregateFingerprints: mergeSiteFingerprints,
    config: {
      method: 'fedavg',
      configuration: '3d_fullres',
      rounds: 2,
      itersPerRound: 1,
      minSites: 2,
      roundDeadlineMs: 120_000,
      weighting: 'uniform',
      encoding: 'fp32',
      expectedSites: 2,
      token: 'fuzz-token',
    },
    limits: { maxFailures: 1_000_000 },
  });
  console.log(`PORT ${relay.port}`);
  process.on('SIGTERM', () => void relay.close().then(() => process.exit(0)));
} else {
  await main();
}

function procStatus(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)![1]) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'relay-fuzz-'));
  const appDir = join(dir, 'app');
  await import('node:fs').then((fs) => {
    fs.mkdirSync(appDir);
    fs.writeFileSync(join(appDir, 'index.html'), '<!doctype html>fuzz');
  });
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bench/relay-fuzz.bench.ts', 'serve', dir],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let exited: number | null | undefined;
  child.on('exit', (c) => (exited = c));
  const port = await new Promise<number>((ok, fail) => {
    let out = '';
    child.stdout!.on('data', (b) => {
      out += b;
      const m = /PORT (\d+)/.exec(out);
      if (m) ok(Number(m[1]));
    });
    child.once('exit', (c) => fail(new Error(`relay exited ${c}`)));
  });
  const rand = mulberry32(15);
  const int = (n: number) => Math.floor(rand() * n);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  const pick = <T>(a: T[]) => a[int(a.length)];
  const flip = (b: Uint8Array, n: number) => {
    const c = b.slice();
    for (let i = 0; i < n; i++) c[int(c.length)] ^= 1 << int(8);
    return c;
  };

  // Let the relay settle, then record where it starts.
  await new Promise((ok) => setTimeout(ok, 1000));
  await fetch(`http://127.0.0.1:${port}/`).then((r) => r.text());
  const before = procStatus(child.pid!);

  /** Opens a TCP connection, writes `parts` (with a pause between), waits for the close or the timeout. */
  const send = (parts: Uint8Array[], pauseMs = 0): Promise<void> =>
    new Promise((done) => {
      const s: Socket = connect(port, '127.0.0.1');
      const end = () => {
        clearTimeout(t);
        s.destroy();
        done();
      };
      const t = setTimeout(end, CASE_TIMEOUT_MS);
      s.on('error', end);
      s.on('close', end);
      s.on('data', () => undefined);
      s.on('connect', async () => {
        for (const p of parts) {
          if (s.destroyed) return;
          s.write(p);
          if (pauseMs) await new Promise((ok) => setTimeout(ok, pauseMs));
        }
        if (!parts.length) return;
        s.end();
      });
    });
  const enc = (s: string) => new TextEncoder().encode(s);
  const upgrade = (path: string) =>
    enc(
      `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Buffer.from(bytes(16)).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );

  const httpCase = (): Promise<void> => {
    const method = pick([
      'GET',
      'HEAD',
      'POST',
      'PUT',
      'DELETE',
      'OPTIONS',
      'PATCH',
      'TRACE',
      'G\u00ffT',
      '',
    ]);
    const path = pick([
      '/%',
      '/%zz',
      '/..%2f..%2fetc/passwd',
      '/peerjs/%',
      '/peerjs/peerjs/id',
      '/peerjs/peerjs/%ff/x/offer',
      'http://[',
      '*',
      `/${'a'.repeat(int(70_000))}`,
      `/${Buffer.from(bytes(40)).toString('latin1')}`,
      '/index.html',
      '/fed',
    ]);
    const valid = enc(
      `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${pick(['0', '5', '-1', '99999999999', 'x'])}\r\n\r\n`,
    );
    switch (int(4)) {
      case 0:
        return send([valid]);
      case 1:
        return send([valid.subarray(0, int(valid.length))]); // truncated
      case 2:
        return send([flip(valid, 1 + int(4))]);
      default:
        return send([bytes(1 + int(4096))]);
    }
  };

  // A validly signed hello with a guessed token, to mutate: the relay must refuse it, not fall. (A
  // holder of the join token may join; what it can do then is the aggregation's concern.)
  const id = await ephemeralIdentity();
  const sealedHello = async (nonce: Uint8Array) =>
    sealFrame(
      id,
      nonce,
      0,
      encodeMessage({
        type: 'hello',
        token: `guess-${int(1e9)}`,
        siteName: 'fuzz\u001b[2J',
        numCases: 1,
      }),
      true,
    );
  const helloTemplate = await sealedHello(new Uint8Array(32));
  const fedCase = async (): Promise<void> => {
    const head = upgrade(pick(['/fed', '/fed?x=%', '/fed#', 'http://[/fed']));
    const huge = pick([2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER, 200 * 2 ** 20]);
    switch (int(6)) {
      case 0:
        return send([head, bytes(1 + int(8192))]);
      case 1:
        return send([
          head,
          frame(2, new Uint8Array(0), { declaredLength: huge }),
          bytes(int(100_000)),
        ]);
      case 2:
        return send([head, frame(2, flip(helloTemplate, 1 + int(8)))]);
      case 3: {
        const f = frame(2, helloTemplate);
        return send([head, f.subarray(0, int(f.length))]);
      }
      case 4:
        return send([head, frame(2, new Uint8Array(PRE_AUTH_FRAME))]); // one byte over the pre-auth limit
      default:
        return fedAuthenticatedCase();
    }
  };
  // A correctly signed connection with a guessed token: the challenge is answered, then garbage follows.
  const fedAuthenticatedCase = (): Promise<void> =>
    new Promise((done) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/fed`);
      const end = () => {
        clearTimeout(t);
        ws.terminate();
        done();
      };
      const t = setTimeout(end, CASE_TIMEOUT_MS);
      ws.on('error', end);
      ws.on('close', end);
      ws.once('message', async (c: Buffer) => {
        try {
          const sealed = await sealedHello(decodeChallenge(new Uint8Array(c)));
          ws.send(sealed);
          ws.send(flip(sealed, 1 + int(16)));
          ws.send(bytes(int(4096)));
        } catch {
          end();
        }
      });
    });

  const peerCase = async (): Promise<void> => {
    const peerId = `fuzz${int(1e9)}`;
    const head = upgrade(`/peerjs/peerjs?key=peerjs&id=${peerId}&token=${pick(['t', '%', ''])}`);
    const offer = enc(
      JSON.stringify({ type: 'OFFER', dst: 'nobody', payload: { sdp: 'v=0', type: 'offer' } }),
    );
    switch (int(6)) {
      case 0:
        return send([head, bytes(1 + int(8192))]);
      case 1:
        return send([head, frame(1, flip(offer, 1 + int(8)))]);
      case 2:
        return send([head, frame(1, enc('x'.repeat(int(100))))]);
      case 3:
        return send([
          head,
          frame(1, new Uint8Array(0), { declaredLength: pick([20 * 2 ** 20, 2 ** 40]) }),
          bytes(int(100_000)),
        ]);
      case 4:
        return send([head, ...Array.from({ length: 1000 }, () => frame(1, offer))]); // a flood
      default:
        return send([head, frame(1, offer, { rsv: 1 + int(7) })]);
    }
  };

  /** Runs `n` cases, CONCURRENCY at a time. */
  const run = async (n: number, one: () => Promise<void>) => {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < n) {
          next++;
          await one();
        }
      }),
    );
    return (performance.now() - t0) / 1000;
  };
  const PRE_AUTH_FRAME = 64 * 1024 + 1;
  const rows: string[] = [];
  let worst = before.rss;
  const stage = async (name: string, n: number, one: () => Promise<void>) => {
    const s = await run(n, one);
    const now = procStatus(child.pid!);
    worst = Math.max(worst, now.hwm);
    rows.push(
      `| ${name} | ${n} | ${s.toFixed(1)} | ${now.rss.toFixed(0)} | ${(now.hwm - before.rss).toFixed(0)} | ${exited === undefined ? 'yes' : `no (exit ${exited})`} |`,
    );
  };
  await stage(
    'HTTP: methods × hostile paths, truncations, bit flips, random bytes',
    CASES.http,
    httpCase,
  );
  await stage(
    '/fed: random bytes, huge declared lengths, bit-flipped/truncated sealed hellos, signed hello + garbage',
    CASES.fed,
    fedCase,
  );
  await stage(
    '/peerjs: random bytes, bit-flipped OFFERs, non-JSON, 20 MB / 1 TB declared, floods, RSV bits',
    CASES.peer,
    peerCase,
  );
  // The issue's own attacks: four 150 MB first frames on /fed, ten 20 MB OFFERs (sent in full).
  const fed150 = frame(2, new Uint8Array(150 * 2 ** 20));
  const offer20 = frame(
    1,
    enc(JSON.stringify({ type: 'OFFER', dst: 'nobody', payload: 'x'.repeat(20 * 2 ** 20) })),
  );
  await stage(
    '4 × 150 MB first /fed frames, 10 × 20 MB PeerJS OFFERs (sent in full)',
    14,
    (() => {
      let i = 0;
      return () => {
        const k = i++;
        return k < 4
          ? send([upgrade('/fed'), fed150])
          : send([upgrade(`/peerjs/peerjs?key=peerjs&id=big${k}&token=t`), offer20]);
      };
    })(),
  );

  // An honest federation on the same relay afterwards.
  const { SiteClient } = await import('../src/fed/client.ts');
  const { wsConnect } = await import('../src/fed/ws-transport.ts');
  const { MockTrainer } = await import('../test/unit/helpers/mock-site.ts');
  const layout = [
    { name: 'w', shape: [64] },
    { name: 'b', shape: [4] },
  ];
  const t0 = performance.now();
  const results = await Promise.all(
    [1, 2].map((s) =>
      new SiteClient({
        connect: wsConnect(`ws://127.0.0.1:${port}/fed`, WebSocket),
        token: 'fuzz-token',
        siteName: `honest-${s}`,
        trainer: new MockTrainer(layout, s),
      }).run(),
    ),
  );
  const same = [...results[0].global.get('w')!.data].every(
    (v, i) => v === results[1].global.get('w')!.data[i],
  );
  const fedOk = results.every((r) => r.rounds === 2) && same;
  const after = procStatus(child.pid!);
  worst = Math.max(worst, after.hwm);
  const alive = exited === undefined;
  child.kill('SIGTERM');
  await new Promise((ok) => (exited === undefined ? child.once('exit', ok) : ok(undefined)));
  rmSync(dir, { recursive: true, force: true });

  const growth = worst - before.rss;
  console.log(
    `Relay in its own process (startRelay, fedavg, 2 sites, 2 rounds), fuzzed from 127.0.0.1 with ${CONCURRENCY} connections at a time, ${CASE_TIMEOUT_MS / 1000} s per case at most, seed 15.`,
  );
  console.log(
    `RSS before: ${before.rss.toFixed(0)} MB. Stated bound on peak RSS growth: ${RSS_BOUND_MB} MB.\n`,
  );
  console.log('| stage | cases | s | RSS after, MB | peak growth so far, MB | relay alive |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  console.log(
    `\nHonest 2-site federation afterwards: ${fedOk ? `completed 2 rounds, both sites on the same global (${((performance.now() - t0) / 1000).toFixed(1)} s)` : 'FAILED'}.`,
  );
  console.log(
    `Peak RSS growth ${growth.toFixed(0)} MB ${growth <= RSS_BOUND_MB ? '≤' : '>'} bound ${RSS_BOUND_MB} MB: ${growth <= RSS_BOUND_MB && fedOk && alive ? 'PASS' : 'FAIL'}`,
  );
  if (!(growth <= RSS_BOUND_MB && fedOk && alive)) process.exitCode = 1;
}
