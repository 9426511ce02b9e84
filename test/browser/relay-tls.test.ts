// A browser on another machine gets WebCrypto (site keys) and WebGPU only from an https:// relay.
// "Another machine" here: the host name relay.test, which Chromium resolves to 127.0.0.1 but, not
// being localhost, does not treat as potentially trustworthy over plain http. The certificate is
// self-signed; the browser context accepts it as a participant clicking through the warning does.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../src/node/relay/server.ts';
import { isChallenge } from '../../src/fed/identity/envelope.ts';
import { chromiumArgs, findChromium } from '../../src/node/chromium.ts';

const OPENSSL = '/usr/bin/openssl';
if (!existsSync(OPENSSL))
  console.warn(`[relay-tls] skipped: ${OPENSSL} is missing (Debian: apt-get install openssl)`);

describe.skipIf(!existsSync(OPENSSL))('relay over TLS in the browser', () => {
  let dir: string;
  let https: Relay;
  let http: Relay;
  let browser: Browser;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'relay-tls-browser-'));
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
        '/CN=relay.test',
        '-addext',
        'subjectAltName=DNS:relay.test',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    const config = {
      method: 'fedavg',
      configuration: '3d_fullres',
      rounds: 1,
      itersPerRound: 1,
      minSites: 1,
      roundDeadlineMs: 60_000,
      weighting: 'uniform',
      encoding: 'fp16',
      expectedSites: 1,
      token: 't',
    } as const;
    const common = { staticDir: join(process.cwd(), 'dist'), log: () => undefined, config };
    https = await startRelay({
      ...common,
      dataDir: join(dir, 'https'),
      tls: {
        cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
        key: readFileSync(join(dir, 'key.pem'), 'utf8'),
      },
    });
    http = await startRelay({ ...common, dataDir: join(dir, 'http') });
    browser = await chromium.launch({
      executablePath: findChromium()!,
      args: [...chromiumArgs(true), '--host-resolver-rules=MAP relay.test 127.0.0.1'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await https?.close();
    await http?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const probe = () => ({
    secure: isSecureContext,
    isolated: crossOriginIsolated,
    subtle: typeof crypto.subtle,
    gpu: 'gpu' in navigator,
  });

  it('over plain http the page is no secure context: no WebCrypto, no WebGPU', async () => {
    const page = await (await browser.newContext({ serviceWorkers: 'block' })).newPage();
    await page.goto(`http://relay.test:${http.port}/`);
    expect(await page.evaluate(probe)).toEqual({
      secure: false,
      isolated: false,
      subtle: 'undefined',
      gpu: false,
    });
  });

  it('over https it is a secure, cross-origin isolated context, and reaches the relay over wss', async () => {
    const page = await (
      await browser.newContext({ ignoreHTTPSErrors: true, serviceWorkers: 'block' })
    ).newPage();
    await page.goto(`https://relay.test:${https.port}/`);
    expect(await page.evaluate(probe)).toEqual({
      secure: true,
      isolated: true,
      subtle: 'object',
      gpu: true,
    });
    // A site key can be made, and the federation endpoint answers with its challenge.
    const first = await page.evaluate(async (url) => {
      await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      const data = await new Promise<ArrayBuffer>((ok, fail) => {
        ws.onmessage = (e) => ok(e.data as ArrayBuffer);
        ws.onerror = () => fail(new Error(`cannot connect to ${url}`));
      });
      ws.close();
      return [...new Uint8Array(data)];
    }, `wss://relay.test:${https.port}/fed`);
    expect(isChallenge(new Uint8Array(first))).toBe(true);
  });
});
