// Site identity (issue 10): signed frames, the host's per-connection check, admission by key
// (registry, or trust on first use with the token), over the real relay on 127.0.0.1.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../src/node/relay/server.ts';
import { SiteClient, type Connect, type Transport } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import {
  decodeMessage,
  encodeMessage,
  type FederationConfig,
  type Message,
} from '../../src/fed/protocol.ts';
import { decodeChallenge, parseSignedFrame, sealFrame } from '../../src/fed/identity/envelope.ts';
import { signedConnect } from '../../src/fed/identity/signed-transport.ts';
import {
  ephemeralIdentity,
  fingerprintOf,
  normalizeFingerprint,
  toBase64,
  type SiteIdentity,
} from '../../src/fed/identity/site-key.ts';
import { SiteGate } from '../../src/fed/identity/gate.ts';
import { admit, type AdmissionPolicy } from '../../src/fed/identity/admission.ts';
import { parseRegistry } from '../../src/fed/identity/registry.ts';
import type { WeightSpec } from '../../src/model/named-weights.ts';
import { MockTrainer } from './helpers/mock-site.ts';

const base: WeightSpec = [
  { name: 'encoder.stages.0.0.convs.0.conv.weight', shape: [4, 1, 3, 3, 3] },
  { name: 'decoder.seg_layers.0.weight', shape: [3, 4, 1, 1, 1] },
];

let relay: Relay | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await relay?.close();
  relay = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(
  opts: {
    config?: Partial<FederationConfig> & { expectedSites?: number };
    admission?: AdmissionPolicy;
    dataDir?: string;
    log?: string[];
  } = {},
) {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'relay-id-'));
  if (!opts.dataDir) dirs.push(dataDir);
  relay = await startRelay({
    dataDir,
    log: (l) => (opts.log?.push(l), process.env.RELAY_DEBUG && console.log(l)),
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
      token: 'tok',
      ...opts.config,
    },
    admission: opts.admission,
  });
  return { relay, dataDir };
}

const until = async (cond: () => boolean, what: string, ms = 10_000) => {
  for (const t0 = Date.now(); !cond(); await new Promise((ok) => setTimeout(ok, 10)))
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
};

/** A site driven by hand over a correctly signed WebSocket: what it received, and whether the relay closed it. */
async function rawSite(url: string, id: SiteIdentity) {
  const got: Message[] = [];
  let closed = false;
  const t = await signedConnect(
    wsConnect(url, WebSocket as never),
    async () => id,
  )({ onMessage: (b) => got.push(decodeMessage(b).message), onClose: () => (closed = true) });
  return {
    got,
    closed: () => closed,
    send: (m: Message) => t.send(encodeMessage(m)),
    reply: async () => {
      await until(() => got.length > 0, 'a reply');
      return got[0];
    },
    close: () => t.close(),
  };
}

/** The raw socket, for frames no honest site would send: returns the challenge nonce and the replies. */
async function rawSocket(url: string) {
  const ws = new WebSocket(url);
  const got: Uint8Array[] = [];
  let closed = false;
  ws.on('message', (d: Buffer) => got.push(new Uint8Array(d)));
  ws.on('close', () => (closed = true));
  await new Promise((ok) => ws.once('open', ok));
  await until(() => got.length > 0, 'the challenge');
  const nonce = decodeChallenge(got.shift()!);
  return {
    nonce,
    send: (b: Uint8Array) => ws.send(b),
    refusal: async () => {
      await until(() => got.length > 0, 'a refusal');
      const m = decodeMessage(got[0]).message;
      await until(() => closed, 'the relay to close the connection');
      return m;
    },
  };
}

/** A man in the middle between a site's signing layer and the wire: `edit` maps each sealed frame to what is forwarded. */
function mitm(connect: Connect, edit: (sealed: Uint8Array) => Uint8Array[]): Connect {
  return async (h) => {
    const t = await connect(h);
    return {
      send: (b) => edit(b).forEach((x) => t.send(x)),
      close: () => t.close(),
    } satisfies Transport;
  };
}
const typeOf = (sealed: Uint8Array) => decodeMessage(parseSignedFrame(sealed).frame).message;

const hello = (
  siteName: string,
  extra: Partial<Extract<Message, { type: 'hello' }>> = {},
): Message => ({ type: 'hello', token: 'tok', siteName, numCases: 3, ...extra });

describe('signed frames and the host gate', () => {
  it('a frame verifies only with its nonce, counter, key and bytes', async () => {
    const a = await ephemeralIdentity();
    const frame = encodeMessage(hello('a'));
    const gate = new SiteGate();
    const nonce = decodeChallenge(gate.challenge());
    const first = await sealFrame(a, nonce, 0, frame, true);
    expect(Buffer.from(await gate.open(first)).equals(Buffer.from(frame))).toBe(true);
    expect(gate.key?.fingerprint).toBe(a.fingerprint);
    expect(gate.key?.spki).toBe(toBase64(a.publicKey));
    const second = await sealFrame(a, nonce, 1, frame, false);
    await gate.open(second);
    // The same frame again (a replay within the connection) is out of sequence.
    await expect(gate.open(second)).rejects.toThrow(/frame number 1 arrived where 2 was due/);
    // A fresh gate (another connection, another nonce) does not accept a recorded hello.
    await expect(new SiteGate().open(first)).rejects.toThrow(/not signed by the key it presents/);
    // Every single-bit change of a later frame fails (header, signature, payload).
    const g2 = new SiteGate();
    const n2 = decodeChallenge(g2.challenge());
    await g2.open(await sealFrame(a, n2, 0, frame, true));
    const next = await sealFrame(a, n2, 1, frame, false);
    for (const bit of [8 * 12 + 3, 8 * 40, 8 * (next.length - 1) + 7]) {
      const g = new SiteGate();
      const n = decodeChallenge(g.challenge());
      await g.open(await sealFrame(a, n, 0, frame, true));
      const bad = await sealFrame(a, n, 1, frame, false);
      bad[bit >> 3] ^= 1 << (bit & 7);
      await expect(g.open(bad)).rejects.toThrow(/valid signature/);
    }
  });

  it('fingerprints: 128 bits of SHA-256 over the SPKI, accepted as typed with any grouping', async () => {
    const a = await ephemeralIdentity();
    const hex = Buffer.from(
      await crypto.subtle.digest('SHA-256', a.publicKey as Uint8Array<ArrayBuffer>),
    )
      .toString('hex')
      .slice(0, 32);
    expect(a.fingerprint.replace(/:/g, '')).toBe(hex);
    expect(normalizeFingerprint(hex.toUpperCase())).toBe(a.fingerprint);
    expect(normalizeFingerprint(`SHA256:${hex.replace(/(.{8})/g, '$1 ')}`)).toBe(a.fingerprint);
    expect(() => normalizeFingerprint(hex.slice(1))).toThrow(
      /31 hex digits; a site key fingerprint has 32/,
    );
    expect(() => normalizeFingerprint('zz')).toThrow(/not a key fingerprint/);
  });
});

describe('site registry file', () => {
  it('reads fingerprints and SPKI keys; reports every bad entry', async () => {
    const [a, b] = await Promise.all([ephemeralIdentity(), ephemeralIdentity()]);
    const reg = await parseRegistry({
      sites: [
        { name: 'Hospital A', publicKeyFingerprint: a.fingerprint.toUpperCase() },
        { name: 'Hospital B', spki: toBase64(b.publicKey) },
      ],
    });
    expect(reg).toEqual([
      { name: 'Hospital A', fingerprint: a.fingerprint },
      { name: 'Hospital B', fingerprint: b.fingerprint },
    ]);
    expect(
      await parseRegistry([
        { name: 'B', spki: toBase64(b.publicKey), publicKeyFingerprint: b.fingerprint },
      ]),
    ).toEqual([{ name: 'B', fingerprint: b.fingerprint }]);
    await expect(
      parseRegistry({
        sites: [
          { name: 'A', publicKeyFingerprint: a.fingerprint },
          { name: 'A', publicKeyFingerprint: b.fingerprint },
          { name: 'C', publicKeyFingerprint: a.fingerprint },
          { name: 'D', spki: toBase64(a.publicKey), publicKeyFingerprint: b.fingerprint },
          { name: 'E', spki: 'AAAA' },
          { name: 'F' },
          { name: '', publicKeyFingerprint: a.fingerprint },
          { name: 'G', publicKeyFingerprint: a.fingerprint, role: 'admin' },
        ],
      }),
    ).rejects.toThrow(
      new RegExp(
        [
          "entry 2 \\('A'\\): the name is listed twice",
          "entry 3 \\('C'\\): the same key is already registered as 'A'",
          "entry 4 \\('D'\\): 'publicKeyFingerprint' .* is not the fingerprint of 'spki'",
          "entry 5 \\('E'\\): the public key is not an ECDSA P-256 key",
          "entry 6 \\('F'\\): needs 'publicKeyFingerprint' or 'spki'",
          "entry 7: 'name' must be a non-empty string",
          'entry 8: unknown field\\(s\\) role',
        ].join('.*'),
      ),
    );
    await expect(parseRegistry({ sites: [] })).rejects.toThrow(/no sites listed/);
    await expect(parseRegistry({ hosts: [] })).rejects.toThrow(/\{"sites": \[\.\.\.\]\}/);
  });
});

describe('admission rules', () => {
  const key = (fingerprint: string) => ({ fingerprint, spki: '' });
  it('trust on first use: the token admits a new key; after that only the bound key speaks for the site', () => {
    const tofu: AdmissionPolicy = { mode: 'tofu' };
    const sites = [{ siteId: 's1', key: key('k1') }, { siteId: 'legacy' }];
    expect(admit(tofu, 'tok', { token: 'tok', siteName: 'n', key: key('k9') }, sites)).toEqual({
      ok: true,
      siteId: undefined,
      siteName: 'n',
      bind: true,
    });
    expect(admit(tofu, 'tok', { token: 'nope', siteName: 'n', key: key('k9') }, sites)).toEqual({
      ok: false,
      reason: 'wrong or missing join token',
    });
    // The bound key continues its site without the token; another key cannot take it, token or not.
    expect(
      admit(tofu, 'tok', { token: 'old', siteName: 'n', siteId: 's1', key: key('k1') }, sites),
    ).toEqual({ ok: true, siteId: 's1', siteName: 'n', bind: false });
    expect(
      admit(tofu, 'tok', { token: 'tok', siteName: 'n', siteId: 's1', key: key('k2') }, sites),
    ).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/s1 is bound to another key \(k1\)/),
    });
    expect(admit(tofu, 'tok', { token: 'tok', siteName: 'n', siteId: 's1' }, sites)).toMatchObject({
      ok: false,
    });
    // A record from before site keys is bound by the first key that brings the token.
    expect(
      admit(tofu, 'tok', { token: 'tok', siteName: 'n', siteId: 'legacy', key: key('k3') }, sites),
    ).toEqual({ ok: true, siteId: 'legacy', siteName: 'n', bind: true });
    expect(
      admit(tofu, 'tok', { token: 'bad', siteName: 'n', siteId: 'legacy', key: key('k3') }, sites),
    ).toMatchObject({ ok: false });
  });

  it('registry: only registered keys, under their registered names; the key finds its site without a siteId', () => {
    const reg: AdmissionPolicy = {
      mode: 'registry',
      sites: [
        { name: 'Hospital A', fingerprint: 'k1' },
        { name: 'Hospital B', fingerprint: 'k2' },
      ],
    };
    const sites = [{ siteId: 's1', key: key('k1') }];
    expect(admit(reg, 'tok', { token: 'tok', siteName: 'x', key: key('k9') }, sites)).toMatchObject(
      { ok: false, reason: expect.stringMatching(/k9 is not registered/) },
    );
    expect(admit(reg, 'tok', { token: 'tok', siteName: 'x' }, sites)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/presented none/),
    });
    expect(admit(reg, 'tok', { token: 'anything', siteName: 'x', key: key('k2') }, sites)).toEqual({
      ok: true,
      siteId: undefined,
      siteName: 'Hospital B',
      bind: true,
    });
    expect(admit(reg, 'tok', { token: 'tok', siteName: 'x', key: key('k1') }, sites)).toEqual({
      ok: true,
      siteId: 's1',
      siteName: 'Hospital A',
      bind: false,
    });
    expect(
      admit(reg, 'tok', { token: 'tok', siteName: 'x', siteId: 's1', key: key('k2') }, sites),
    ).toMatchObject({ ok: false });
  });
});

describe('identity over the relay', () => {
  it('registry mode: an unregistered site is refused even with the right token; registered sites complete a federation', async () => {
    const [a, b, intruder] = await Promise.all([
      ephemeralIdentity(),
      ephemeralIdentity(),
      ephemeralIdentity(),
    ]);
    const sites = await parseRegistry({
      sites: [
        { name: 'Hospital A', publicKeyFingerprint: a.fingerprint },
        { name: 'Hospital B', spki: toBase64(b.publicKey) },
      ],
    });
    const { relay: r } = await start({ admission: { mode: 'registry', sites } });
    const x = await rawSite(r.wsUrl, intruder);
    x.send(hello('intruder'));
    expect(await x.reply()).toEqual({
      type: 'refused',
      reason: `this site's key ${intruder.fingerprint} is not registered with this relay; send this fingerprint to the relay operator`,
    });
    await until(x.closed, 'the relay to close the refused connection');
    expect(r.coordinator.roster()).toEqual([]);

    const ta = new MockTrainer(base, 1);
    const tb = new MockTrainer(base, 2);
    // The registry, not the token, admits: B's token is wrong and does not matter.
    const runs = [
      new SiteClient({
        connect: wsConnect(r.wsUrl, WebSocket as never),
        token: 'tok',
        siteName: 'a',
        trainer: ta,
        identity: a,
      }).run(),
      new SiteClient({
        connect: wsConnect(r.wsUrl, WebSocket as never),
        token: 'stale',
        siteName: 'b',
        trainer: tb,
        identity: async () => b,
      }).run(),
    ];
    const results = await Promise.all(runs);
    expect(results.map((res) => res.rounds)).toEqual([1, 1]);
    expect(
      r.coordinator
        .roster()
        .map((s) => [s.siteName, s.fingerprint])
        .sort(),
    ).toEqual([
      ['Hospital A', a.fingerprint],
      ['Hospital B', b.fingerprint],
    ]);
    expect(r.coordinator.snapshot.history[0].contributors.length).toBe(2);
  });

  it('refuses an unsigned hello, a hello signed by another key than it presents, and a hello recorded on another connection', async () => {
    const { relay: r } = await start();
    const [a, b] = await Promise.all([ephemeralIdentity(), ephemeralIdentity()]);
    const plain = await rawSocket(r.wsUrl);
    plain.send(encodeMessage(hello('a')));
    expect(await plain.refusal()).toEqual({
      type: 'refused',
      reason: 'the frame is not signed; this federation accepts signed site frames only',
    });

    const spliced = await rawSocket(r.wsUrl);
    const sealed = await sealFrame(a, spliced.nonce, 0, encodeMessage(hello('a')), true);
    // Present B's public key (same length) with A's signature.
    sealed.set(b.publicKey, 76);
    spliced.send(sealed);
    expect(await spliced.refusal()).toEqual({
      type: 'refused',
      reason: 'the hello is not signed by the key it presents',
    });

    const first = await rawSocket(r.wsUrl);
    const recorded = await sealFrame(a, first.nonce, 0, encodeMessage(hello('a')), true);
    const replay = await rawSocket(r.wsUrl);
    replay.send(recorded);
    expect(await replay.refusal()).toEqual({
      type: 'refused',
      reason: 'the hello is not signed by the key it presents',
    });

    const notHello = await rawSocket(r.wsUrl);
    notHello.send(
      await sealFrame(a, notHello.nonce, 0, encodeMessage({ type: 'spec', spec: base }), true),
    );
    expect(await notHello.refusal()).toEqual({
      type: 'refused',
      reason: "the first message must be a hello, not 'spec'",
    });
    expect(r.coordinator.roster()).toEqual([]);
  });

  it('a bit flipped in a later frame in transit: the site is refused and disconnected, its update never counted', async () => {
    const log: string[] = [];
    const { relay: r } = await start({ log });
    const honest = new MockTrainer(base, 1);
    const victim = new MockTrainer(base, 2);
    const good = new SiteClient({
      connect: wsConnect(r.wsUrl, WebSocket as never),
      token: 'tok',
      siteName: 'good',
      trainer: honest,
    }).run();
    await until(() => r.coordinator.roster().length === 1, 'the first site');
    const flipped = mitm(wsConnect(r.wsUrl, WebSocket as never), (sealed) => {
      const m = typeOf(sealed);
      if (m.type !== 'update' || m.round !== 1) return [sealed];
      const bad = sealed.slice();
      bad[bad.length - 5] ^= 0x10; // inside the tensor payload
      return [bad];
    });
    const hit = new SiteClient({
      connect: flipped,
      token: 'tok',
      siteName: 'victim',
      trainer: victim,
    }).run();
    await expect(hit).rejects.toThrow(
      /refused this site: frame 2 does not carry a valid signature of this site's key/,
    );
    const res = await good;
    expect(res.rounds).toBe(1);
    const h = r.coordinator.snapshot.history;
    expect(h[0].contributors).toEqual([
      r.coordinator.roster().find((s) => s.siteName === 'good')!.siteId,
    ]);
    await until(
      () => r.coordinator.roster().find((s) => s.siteName === 'victim')!.connected === false,
      'the victim to be disconnected',
    );
    expect(
      log.some((l) =>
        /refused site-.* \(key .*\): frame 2 does not carry a valid signature/.test(l),
      ),
    ).toBe(true);
  });

  it('a frame replayed within a connection: the site is refused and disconnected', async () => {
    const { relay: r } = await start({ config: { expectedSites: 1 } });
    const doubled = mitm(wsConnect(r.wsUrl, WebSocket as never), (sealed) =>
      typeOf(sealed).type === 'spec' ? [sealed, sealed] : [sealed],
    );
    await expect(
      new SiteClient({
        connect: doubled,
        token: 'tok',
        siteName: 'x',
        trainer: new MockTrainer(base, 1),
      }).run(),
    ).rejects.toThrow(/refused this site: frame number 1 arrived where 2 was due/);
    await until(() => r.coordinator.roster()[0].connected === false, 'the site to be disconnected');
  });

  it('trust on first use: another key cannot take a bound siteId with the token, before or after a relay restart', async () => {
    const { relay: r1, dataDir } = await start({ config: { expectedSites: 3 } });
    const [a, b] = await Promise.all([ephemeralIdentity(), ephemeralIdentity()]);
    const sa = await rawSite(r1.wsUrl, a);
    sa.send(hello('a'));
    const welcome = (await sa.reply()) as Extract<Message, { type: 'welcome' }>;
    expect(welcome.type).toBe('welcome');
    const siteId = welcome.siteId;
    const takeover = async (url: string) => {
      const sb = await rawSite(url, b);
      sb.send(hello('b', { siteId }));
      const m = await sb.reply();
      await until(sb.closed, 'the relay to close the refused connection');
      return m;
    };
    const refusal = {
      type: 'refused',
      reason: `site ${siteId} is bound to another key (${a.fingerprint}); this key is ${b.fingerprint}, and the join token cannot hand a site to a new key`,
    };
    expect(await takeover(r1.wsUrl)).toEqual(refusal);
    sa.close();
    // The binding is on disk as soon as the site joined.
    const state = JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8'));
    expect(state.sites).toEqual([
      expect.objectContaining({
        siteId,
        key: { fingerprint: a.fingerprint, spki: toBase64(a.publicKey) },
      }),
    ]);
    expect(await fingerprintOf(Buffer.from(state.sites[0].key.spki, 'base64'))).toBe(a.fingerprint);

    await r1.close();
    relay = undefined;
    const { relay: r2 } = await start({ config: { expectedSites: 3 }, dataDir });
    expect(await takeover(r2.wsUrl)).toEqual(refusal);
    // The bound key comes back as the same site, even with a stale token.
    const back = await rawSite(r2.wsUrl, a);
    back.send(hello('a', { siteId, token: 'rotated' }));
    expect(await back.reply()).toMatchObject({ type: 'welcome', siteId });
    expect(r2.coordinator.roster()).toEqual([
      expect.objectContaining({ siteId, connected: true, fingerprint: a.fingerprint }),
    ]);
    back.close();
  });
});

describe('fednnunet relay --registry', () => {
  const relayCli = (args: string[]) =>
    spawn(
      process.execPath,
      ['bin/fednnunet.js', 'relay', '--port', '0', '--static', '/nonexistent', ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );

  it('starts in registry mode with a valid file, and stops with every problem of a bad one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-reg-'));
    dirs.push(dir);
    const a = await ephemeralIdentity();
    writeFileSync(
      join(dir, 'sites.json'),
      JSON.stringify({ sites: [{ name: 'Hospital A', publicKeyFingerprint: a.fingerprint }] }),
    );
    writeFileSync(
      join(dir, 'bad.json'),
      JSON.stringify({
        sites: [{ name: 'Hospital A', publicKeyFingerprint: 'abcd' }, { name: 'B' }],
      }),
    );
    const good = relayCli([
      '--data-dir',
      join(dir, 'state'),
      '--registry',
      join(dir, 'sites.json'),
    ]);
    let out = '';
    good.stdout!.on('data', (b) => (out += b));
    good.stderr!.on('data', (b) => (out += b));
    await until(() => out.includes('join code'), 'the relay to start', 30_000);
    expect(out).toContain(
      `admission: registry ${join(dir, 'sites.json')} (Hospital A); unregistered site keys are refused`,
    );
    good.kill('SIGTERM');
    await new Promise((ok) => good.once('exit', ok));

    const bad = relayCli(['--data-dir', join(dir, 'state2'), '--registry', join(dir, 'bad.json')]);
    let err = '';
    bad.stderr!.on('data', (b) => (err += b));
    const code = await new Promise((ok) => bad.once('exit', ok));
    expect(code).toBe(2);
    expect(err).toMatch(
      /--registry .*bad\.json: site registry: entry 1 \('Hospital A'\): 'abcd' has 4 hex digits; .*entry 2 \('B'\): needs 'publicKeyFingerprint' or 'spki'/,
    );
  });
});
