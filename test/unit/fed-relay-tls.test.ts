// The relay over TLS: the app, the /fed WebSocket (wss) and PeerJS signalling on one https port;
// `fednnunet relay --tls-cert/--tls-key` refusing bad files, and `--tls-self-signed` making a
// certificate (with openssl) that it keeps across restarts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../src/node/relay/server.ts';
import { SiteClient } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import { MockTrainer } from './helpers/mock-site.ts';
import {
  ensureSelfSignedCert,
  loadTlsFiles,
  SELF_SIGNED_KEY,
  selfSignedAltNames,
} from '../../src/node/tls.ts';

const OPENSSL = '/usr/bin/openssl';
const haveOpenssl = existsSync(OPENSSL);
if (!haveOpenssl)
  console.warn(`[fed-relay-tls] skipped: ${OPENSSL} is missing (Debian: apt-get install openssl)`);

const bin = 'bin/fednnunet.js';
const scratch = mkdtempSync(join(tmpdir(), 'relay-tls-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A self-signed P-256 certificate for 127.0.0.1/localhost, made here with openssl (not with the code under test). */
function makeCert(name: string): { cert: string; key: string; certPath: string; keyPath: string } {
  const certPath = join(scratch, `${name}.crt`);
  const keyPath = join(scratch, `${name}.key`);
  const r = spawnSync(
    OPENSSL,
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=test',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return {
    cert: readFileSync(certPath, 'utf8'),
    key: readFileSync(keyPath, 'utf8'),
    certPath,
    keyPath,
  };
}

/** GET over https, trusting only `ca`. */
function httpsGet(
  url: string,
  ca: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((ok, fail) => {
    get(url, { ca }, (res) => {
      let body = '';
      res.on('data', (b) => (body += b));
      res.on('end', () => ok({ status: res.statusCode!, headers: res.headers, body }));
    }).on('error', fail);
  });
}

function staticDir(): string {
  const dir = join(scratch, 'static');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>tls test app</title>');
  return dir;
}

describe.skipIf(!haveOpenssl)('relay over TLS', () => {
  let relay: Relay;
  let ca: string;
  beforeAll(async () => {
    const c = makeCert('relay');
    ca = c.cert;
    relay = await startRelay({
      dataDir: join(scratch, 'data-inproc'),
      staticDir: staticDir(),
      log: () => undefined,
      tls: { cert: c.cert, key: c.key },
      config: {
        method: 'fedavg',
        configuration: '3d_fullres',
        rounds: 1,
        itersPerRound: 1,
        minSites: 2,
        roundDeadlineMs: 60_000,
        weighting: 'uniform',
        encoding: 'fp32',
        expectedSites: 2,
        token: 'tok',
      },
    });
  });
  afterAll(() => relay?.close());

  it('serves the app (cross-origin isolated) and PeerJS signalling over https', async () => {
    expect(relay.url).toBe(`https://127.0.0.1:${relay.port}/`);
    const page = await httpsGet(relay.url, ca);
    expect(page.status).toBe(200);
    expect(page.body).toContain('tls test app');
    expect(page.headers['cross-origin-embedder-policy']).toBe('require-corp');
    const id = await httpsGet(`${relay.url}peerjs/peerjs/id`, ca);
    expect(id.body).toMatch(/^[0-9a-f-]{8,}$/);
    // A malformed path is answered (it used to end the process), over TLS as over plain http.
    expect((await httpsGet(`${relay.url}%`, ca)).status).toBe(400);
    expect((await httpsGet(relay.url, ca)).status).toBe(200);
  });

  it('a client that does not trust the certificate is refused by TLS', async () => {
    const ws = new WebSocket(relay.wsUrl);
    const err = await new Promise<Error>((ok) => ws.once('error', ok));
    expect(err.message).toMatch(/self[- ]signed/i);
  });

  it('two sites join over wss and complete the federation', async () => {
    expect(relay.wsUrl).toBe(`wss://127.0.0.1:${relay.port}/fed`);
    // Trust the test certificate (and check the host name against its subjectAltName) rather than turn verification off.
    class TrustingWebSocket extends WebSocket {
      constructor(url: string) {
        super(url, { ca });
      }
    }
    const layout = [{ name: 'w', shape: [4] }];
    const clients = [1, 2].map(
      (s) =>
        new SiteClient({
          connect: wsConnect(relay.wsUrl, TrustingWebSocket),
          token: 'tok',
          siteName: `s${s}`,
          trainer: new MockTrainer(layout, s),
        }),
    );
    const results = await Promise.all(clients.map((c) => c.run()));
    expect(results.map((r) => r.rounds)).toEqual([1, 1]);
    expect(relay.coordinator.roster()).toHaveLength(2);
    expect([...results[0].global.get('w')!.data]).toEqual([...results[1].global.get('w')!.data]);
  });
});

describe.skipIf(!haveOpenssl)('self-signed certificate', () => {
  it('covers localhost and the LAN addresses; made again when an address is new or it is about to expire', () => {
    expect(selfSignedAltNames('0.0.0.0', ['192.168.1.20'])).toEqual([
      'DNS:localhost',
      'IP:127.0.0.1',
      'IP:192.168.1.20',
    ]);
    expect(selfSignedAltNames('relay.example', [])).toEqual([
      'DNS:localhost',
      'IP:127.0.0.1',
      'DNS:relay.example',
    ]);
    const dir = join(scratch, 'self-unit');
    const a = ensureSelfSignedCert(dir, ['DNS:localhost', 'IP:127.0.0.1'], { openssl: OPENSSL });
    expect(a.reused).toBe(false);
    expect(a.altNames).toEqual(['DNS:localhost', 'IP:127.0.0.1']);
    expect(ensureSelfSignedCert(dir, ['IP:127.0.0.1'], { openssl: OPENSSL })).toMatchObject({
      reused: true,
      fingerprint256: a.fingerprint256,
    });
    const b = ensureSelfSignedCert(dir, ['DNS:localhost', 'IP:127.0.0.1', 'IP:10.1.2.3'], {
      openssl: OPENSSL,
    });
    expect(b.reused).toBe(false);
    expect(b.altNames).toContain('IP:10.1.2.3');
    expect(b.fingerprint256).not.toBe(a.fingerprint256);
    const late = new Date(Date.now() + 29.5 * 24 * 3600e3); // 30-day certificate, half a day left
    const c = ensureSelfSignedCert(dir, ['IP:127.0.0.1'], { openssl: OPENSSL, now: late });
    expect(c.reused).toBe(false);
    expect(c.fingerprint256).not.toBe(b.fingerprint256);
    expect(() =>
      ensureSelfSignedCert(join(scratch, 'self-bad'), ['IP:1.2.3.4,DNS:evil'], {
        openssl: OPENSSL,
      }),
    ).toThrow(/subjectAltName/);
  });

  it("tolerates a few minutes of clock skew at the certificate's start, not more", () => {
    // openssl stamps notBefore when it runs, after the caller took its `now` (seconds later on a busy machine).
    const dir = join(scratch, 'self-skew');
    const made = ensureSelfSignedCert(dir, ['IP:127.0.0.1'], { openssl: OPENSSL });
    const [cert, key] = [made.certPath, join(dir, SELF_SIGNED_KEY)];
    const start = new Date(new X509Certificate(readFileSync(cert)).validFrom).getTime();
    expect(loadTlsFiles(cert, key, new Date(start - 10_000)).validTo.getTime()).toBeGreaterThan(
      start,
    );
    expect(() => loadTlsFiles(cert, key, new Date(start - 24 * 3600e3))).toThrow(
      /not valid before/,
    );
  });
});

/** Runs the CLI to its exit. */
function relayCli(args: string[], env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(
    process.execPath,
    [bin, 'relay', '--port', '0', '--static', '/nonexistent', ...args],
    { encoding: 'utf8', env },
  );
}

/** Starts the CLI relay; resolves once it printed its join code, with everything it printed so far. */
function startRelayCli(args: string[]): Promise<{ child: ChildProcess; out: () => string }> {
  const child = spawn(
    process.execPath,
    [bin, 'relay', '--port', '0', '--static', staticDir(), '--token', 'tok', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer) => {
      out += b;
      if (out.includes('join code')) resolve({ child, out: () => out });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (c) => reject(new Error(`relay exited ${c}: ${out}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  await exited;
}

describe.skipIf(!haveOpenssl)('fednnunet relay TLS options', () => {
  it('bad or missing certificate files: one line on stderr, exit 2, nothing started', () => {
    const good = makeCert('good');
    const other = makeCert('other');
    const garbage = join(scratch, 'garbage.pem');
    writeFileSync(garbage, 'not a pem\n');
    const cases: Array<[string[], RegExp]> = [
      [
        ['--tls-cert', join(scratch, 'missing.crt'), '--tls-key', good.keyPath],
        /--tls-cert .*missing\.crt: cannot read it \(ENOENT\)/,
      ],
      [
        ['--tls-cert', garbage, '--tls-key', good.keyPath],
        /--tls-cert .*garbage\.pem: not a PEM certificate/,
      ],
      [
        ['--tls-cert', good.certPath, '--tls-key', garbage],
        /--tls-key .*garbage\.pem: not a usable unencrypted PEM private key/,
      ],
      [
        ['--tls-cert', good.certPath, '--tls-key', other.keyPath],
        /--tls-key .*other\.key does not match the certificate/,
      ],
      [['--tls-cert', good.certPath], /--tls-cert and --tls-key go together/],
      [
        ['--tls-self-signed', '--tls-cert', good.certPath, '--tls-key', good.keyPath],
        /--tls-self-signed or --tls-cert\/--tls-key, not both/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = relayCli(['--data-dir', join(scratch, 'data-bad'), ...args]);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).not.toContain('open');
    }
  });

  it('without openssl, --tls-self-signed says how to pass a certificate instead', () => {
    const r = relayCli(['--data-dir', join(scratch, 'data-noopenssl'), '--tls-self-signed'], {
      ...process.env,
      PATH: '/nonexistent',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /needs the openssl command.*mkcert .*127\.0\.0\.1.*--tls-cert FILE --tls-key FILE/,
    );
  });

  it('--tls-self-signed makes a certificate for 127.0.0.1 with its fingerprint printed, and keeps it on a second start', async () => {
    const dataDir = join(scratch, 'data-self');
    const first = await startRelayCli([
      '--data-dir',
      dataDir,
      '--host',
      '0.0.0.0',
      '--tls-self-signed',
    ]);
    const certPath = join(dataDir, 'tls', 'self-signed-cert.pem');
    const cert = readFileSync(certPath, 'utf8');
    const x509 = new X509Certificate(cert);
    expect(x509.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(first.out()).toContain(`SHA-256 fingerprint: ${x509.fingerprint256}`);
    expect(first.out()).not.toContain('plain http');
    const url = /or (https:\/\/127\.0\.0\.1:\d+\/)\?join=tok/.exec(first.out())?.[1];
    expect(url, first.out()).toBeDefined();
    // The certificate verifies for 127.0.0.1 when trusted: the relay serves with this certificate.
    expect((await httpsGet(url!, cert)).body).toContain('tls test app');
    await stop(first.child);

    const second = await startRelayCli(['--data-dir', dataDir, '--tls-self-signed']);
    try {
      expect(second.out()).toContain(`SHA-256 fingerprint: ${x509.fingerprint256}`);
      expect(second.out()).toMatch(/self-signed \(kept/);
      expect(readFileSync(certPath, 'utf8')).toBe(cert);
    } finally {
      await stop(second.child);
    }
  });

  it('plain http on a non-loopback address warns that other machines cannot join', async () => {
    const r = await startRelayCli(['--data-dir', join(scratch, 'data-plain'), '--host', '0.0.0.0']);
    try {
      // The warning goes to stderr, the join code to stdout: the two pipes may arrive in either order.
      const warning =
        /warning: serving plain http on 0\.0\.0\.0: .*cannot join \(no secure context.*--tls-self-signed/;
      for (let i = 0; i < 100 && !warning.test(r.out()); i++)
        await new Promise((ok) => setTimeout(ok, 50));
      expect(r.out()).toMatch(warning);
    } finally {
      await stop(r.child);
    }
  });
});
