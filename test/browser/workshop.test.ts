// Workshop host mode (issue 9): a host tab coordinates (the Coordinator runs in the page) and two
// participant tabs federate with it over PeerJS data channels. The relay only serves the app and
// signals (/peerjs): its own federation endpoint sees no site. Run twice: plain, and with the host's
// "Secure aggregation" box ticked and DP on (the threshold fixed at Start for the two participants).
//
// WebRTC needs a non-loopback interface to gather ICE candidates (headless Chromium gathers none
// when `lo` is the only one). So this file runs only inside the isolated network namespace that
// workshop-netns.test.ts creates (loopback + a veth pair on 192.0.2.0/24, nothing routed out of
// it): WebRTC traffic never touches the machine's real interfaces.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../src/fed/relay/server.ts';
import { mergeSiteFingerprints } from '../../src/fed/ffe-merge.ts';
import { chromiumArgs, findChromium } from '../../src/node/chromium.ts';
import { screenshot } from './harness.ts';


describe.skipIf(process.env.FEDNNUNET_NETNS !== '1')('workshop: a host tab and two participants over PeerJS data channels', () => {
  let relay: Relay;
  let browser: Browser;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'workshop-'));
    relay = await startRelay({
      dataDir: dir,
      staticDir: join(process.cwd(), 'dist'),
      log: () => undefined,
      aggregateFingerprints: mergeSiteFingerprints,
      config: { method: 'ffe', configuration: '3d_fullres', rounds: 1, itersPerRound: 1, minSites: 2, roundDeadlineMs: 600_000, weighting: 'uniform', encoding: 'fp16', expectedSites: 2, token: 'relay-only' },
    });
    // Plain host candidates (no mDNS names) between the tabs of this one browser.
    browser = await chromium.launch({ executablePath: findChromium()!, args: [...chromiumArgs(true), '--disable-features=WebRtcHideLocalIpsWithMdns'] });
  });
  afterAll(async () => {
    await browser?.close();
    await relay?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const SECURE_TYPES = ['hello', 'spec', 'update', 'secagg-advert', 'secagg-shares', 'secagg-masked', 'secagg-reveal'];

  it.each([false, true])('FFE, 2 rounds (secure aggregation + DP: %s): both participants finish with the same global weights; the relay carried no federation message', async (secure) => {
    const errors: string[] = [];
    const shot = (page: Page, name: string) => screenshot(page, secure ? name.replace('workshop-', 'workshop-secure-') : name);
    const open = async (url: string, name: string) => {
      const page = await (await browser.newContext()).newPage();
      page.on('console', (m) => m.type() === 'error' && errors.push(`${name}: ${m.text()}`));
      page.on('pageerror', (e) => errors.push(`${name}: ${e}`));
      await page.goto(url);
      await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
      return page;
    };
    const code = secure ? 'wk43' : 'wk42';
    const host = await open(`${relay.url}?host-code=${code}#federation`, 'host');
    await host.fill('#ws-rounds', '2');
    await host.fill('#ws-iters', '1');
    if (secure) {
      await host.check('#ws-secure');
      await host.fill('#ws-dp-epsilon', '100');
      await host.fill('#ws-clip', '1');
    }
    await host.click('#ws-host');
    await host.waitForSelector('#ws-link');
    const link = await host.getAttribute('#ws-link', 'href');
    expect(link).toBe(`${relay.url}?workshop=${code}${secure ? '&secure=1' : ''}`);
    if (secure) expect(await host.textContent('#ws-privacy')).toMatch(/threshold is fixed at Start/);
    const sites: Page[] = [];
    for (const i of [0, 1]) {
      const page = await open(`${link}&site=participant-${i}`, `site ${i}`);
      expect(await page.inputValue('#ws-code')).toBe(code);
      await page.evaluate((k) => { const f = (window as any).__fednnunet; return f.data.importDemo(k, f.proxy(() => undefined)); }, i);
      await page.click('#tab-data');
      await page.click('#tab-federation');
      await page.waitForFunction(() => document.querySelectorAll('#fed-dataset option').length === 1);
      await page.fill('#fed-tiny-patch', '8');
      await page.click('#ws-join');
      sites.push(page);
    }
    await host.waitForFunction(() => document.querySelectorAll('#ws-roster li[data-connected="true"]').length === 2, undefined, { timeout: 60_000 });
    await shot(host, 'workshop-1-roster');
    // The host lists each participant's key fingerprint: the one that participant's browser shows.
    const rosterKeys = await host.$$eval('#ws-roster li', (li) => li.map((x) => [x.getAttribute('data-site'), x.getAttribute('data-key')]));
    for (const [i, p] of sites.entries()) {
      const own = await p.evaluate(() => (window as any).__fednnunet.train.siteKey().then((k: { fingerprint: string }) => k.fingerprint));
      expect(rosterKeys).toContainEqual([`participant-${i}`, own]);
    }
    // Every value the host's secure-phase attribute takes (old values of each change, then the last).
    await host.evaluate(() => {
      const seen: string[] = [];
      (window as any).__securePhases = seen;
      const status = document.querySelector('#ws-status')!;
      new MutationObserver((rs) => rs.forEach((r) => seen.push(r.oldValue ?? ''))).observe(status, { attributes: true, attributeFilter: ['data-secure-phase'], attributeOldValue: true });
    });
    if (secure) expect(await host.$$eval('#ws-roster li', (li) => li.map((x) => x.textContent))).toEqual([expect.stringContaining('case count not shared'), expect.stringContaining('case count not shared')]);
    await host.click('#ws-start');
    await Promise.all(sites.map((p) => p.waitForSelector('#fed-status[data-done="true"]', { timeout: 600_000 })));
    await host.waitForSelector('#ws-status[data-phase="done"]');
    expect(await host.getAttribute('#ws-status', 'data-round')).toBe('2');
    const digests = await Promise.all(sites.map((p) => p.getAttribute('#fed-status', 'data-digest')));
    expect(digests[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(digests[1]).toBe(digests[0]);
    for (const p of sites) {
      const types = await p.$$eval('#egress-rows tr', (rows) => rows.map((r) => r.getAttribute('data-type')));
      if (!secure) {
        expect(new Set(types)).toEqual(new Set(['hello', 'fingerprint', 'spec', 'update']));
        continue;
      }
      // No fingerprint and no trained weights in the clear: the one plain update is the first
      // site's untrained initial model (round 0).
      expect(types.every((t) => SECURE_TYPES.includes(t!))).toBe(true);
      expect(types.filter((t) => t === 'secagg-masked').length).toBe(3); // FFE + 2 rounds
      const updateRounds = await p.$$eval('#egress-rows tr[data-type="update"] td:nth-child(2)', (td) => td.map((x) => x.textContent));
      expect(updateRounds.every((r) => r === '0')).toBe(true);
    }
    if (secure) {
      // The host shows the ε spent, the same the participants show; and it went through every secure phase.
      const hostEps = Number(await host.getAttribute('#ws-privacy', 'data-epsilon'));
      expect(hostEps).toBeGreaterThan(0);
      expect(hostEps).toBeLessThanOrEqual(100);
      expect(await host.textContent('#ws-privacy')).toMatch(/threshold 2 of 2 sites, clip 1\. Differential privacy: ε = [0-9.]+ spent after round 2/);
      for (const p of sites) expect(Number(await p.getAttribute('#fed-privacy', 'data-epsilon'))).toBe(hostEps);
      const phases: string[] = await host.evaluate(() => [...(window as any).__securePhases, document.querySelector('#ws-status')!.getAttribute('data-secure-phase') ?? '']);
      const seen = new Set(phases);
      for (const tag of ['fingerprint:0', 'model:1', 'model:2']) for (const ph of ['advert', 'shares', 'masked', 'unmask']) expect(seen, `${tag}:${ph} in ${phases.join(' ')}`).toContain(`${tag}:${ph}`);
    }
    // The relay's own federation never saw a site: everything went over the data channels.
    expect(relay.coordinator.snapshot.sites).toEqual([]);
    await shot(host, 'workshop-2-done');
    await shot(sites[0], 'workshop-3-participant');
    expect(errors).toEqual([]);
  });
});
