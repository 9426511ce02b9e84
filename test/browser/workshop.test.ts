// Workshop host mode (issue 9): a host tab coordinates (the Coordinator runs in the page) and two
// participant tabs federate with it over PeerJS data channels. The relay only serves the app and
// signals (/peerjs): its own federation endpoint sees no site. Run twice: plain, and with the host's
// "Secure aggregation" box ticked and DP on (the threshold fixed at Start for the two participants).
//
// WebRTC needs a non-loopback interface to gather ICE candidates (headless Chromium gathers none
// when `lo` is the only one). So this file runs only inside the isolated network namespace that
// workshop-netns.test.ts creates (loopback + a veth pair on 192.0.2.0/24, nothing routed out of
// it): WebRTC traffic never touches the machine's real interfaces.
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { demoSiteReady, gotoReady, screenshot, useRelaySession } from './harness.ts';
import type { HookedWindow } from '../../src/ui/main.ts';

describe.skipIf(process.env.FEDNNUNET_NETNS !== '1')(
  'workshop: a host tab and two participants over PeerJS data channels',
  () => {
    const s = useRelaySession({
      config: { token: 'relay-only' },
      // Plain host candidates (no mDNS names) between the tabs of this one browser.
      chromiumArgs: ['--disable-features=WebRtcHideLocalIpsWithMdns'],
    });

    const SECURE_TYPES = [
      'hello',
      'spec',
      'update',
      'secagg-advert',
      'secagg-shares',
      'secagg-masked',
      'secagg-reveal',
    ];

    it.each([false, true])(
      'FFE, 2 rounds (secure aggregation + DP: %s): both participants finish with the same global weights; the relay carried no federation message',
      async (secure) => {
        const { relay } = s;
        const errors: string[] = [];
        const shot = (page: Page, name: string) =>
          screenshot(page, secure ? name.replace('workshop-', 'workshop-secure-') : name);
        const open = (url: string, name: string) => s.open(url, name, errors);
        const code = secure ? 'wk43' : 'wk42';
        const host = await open(`${relay.url}?host-code=${code}#federation`, 'host');
        await host.fill('#ws-rounds', '2');
        await host.fill('#ws-iters', '1');
        if (secure) {
          // Privacy settings are folded in the host card.
          await host.$eval('#ws-advanced', (d) => ((d as HTMLDetailsElement).open = true));
          await host.check('#ws-secure');
          await host.fill('#ws-dp-epsilon', '100');
          await host.fill('#ws-clip', '1');
        }
        await host.click('#ws-host');
        await host.waitForSelector('#ws-link');
        const link = (await host.getAttribute('#ws-link', 'href'))!;
        // The link pins the host tab's key: its browser profile's key, the one its "This browser" tab shows.
        const hostKey = await host.evaluate(() =>
          (window as unknown as HookedWindow).__fednnunet.train
            .siteKey()
            .then((k) => k.fingerprint),
        );
        expect(link).toBe(
          `${relay.url}?workshop=${code}&hostkey=${hostKey.replaceAll(':', '')}${secure ? '&secure=1' : ''}`,
        );
        expect(await host.textContent('#ws-host-key-shown')).toBe(hostKey);
        if (secure)
          expect(await host.textContent('#ws-privacy')).toMatch(/threshold is fixed at Start/);
        const sites: Page[] = [];
        for (const i of [0, 1]) {
          const page = await open(`${link}&site=participant-${i}`, `site ${i}`);
          expect(await page.inputValue('#ws-code')).toBe(code);
          await demoSiteReady(page, i);
          if (i === 0 && !secure) {
            // A link without the host key (an older link): refused before anything is sent.
            expect(await page.inputValue('#ws-host-key')).toBe(hostKey.replaceAll(':', ''));
            await page.fill('#ws-host-key', '');
            await page.click('#ws-join');
            await page.waitForSelector('#fed-status[data-refused="host-key"]');
            expect(await page.textContent('#fed-status')).toMatch(/no host key/);
            expect(await page.$$('#egress-rows tr')).toEqual([]);
            await page.fill('#ws-host-key', hostKey);
          }
          await page.click('#ws-join');
          sites.push(page);
        }
        await host.waitForFunction(
          () => document.querySelectorAll('#ws-roster li[data-connected="true"]').length === 2,
          undefined,
          { timeout: 180_000 },
        );
        await shot(host, 'workshop-1-roster');
        // The host lists each participant's key fingerprint: the one that participant's browser shows.
        const rosterKeys = await host.$$eval('#ws-roster li', (li) =>
          li.map((x) => [x.getAttribute('data-site'), x.getAttribute('data-key')]),
        );
        for (const [i, p] of sites.entries()) {
          const own = await p.evaluate(() =>
            (window as unknown as HookedWindow).__fednnunet.train
              .siteKey()
              .then((k: { fingerprint: string }) => k.fingerprint),
          );
          expect(rosterKeys).toContainEqual([`participant-${i}`, own]);
        }
        // Every value the host's secure-phase attribute takes (old values of each change, then the last).
        await host.evaluate(() => {
          const seen: string[] = [];
          (window as unknown as { __securePhases: string[] }).__securePhases = seen;
          const status = document.querySelector('#ws-status')!;
          new MutationObserver((rs) => rs.forEach((r) => seen.push(r.oldValue ?? ''))).observe(
            status,
            { attributes: true, attributeFilter: ['data-secure-phase'], attributeOldValue: true },
          );
        });
        if (secure)
          expect(await host.$$eval('#ws-roster li', (li) => li.map((x) => x.textContent))).toEqual([
            expect.stringContaining('case count not shared'),
            expect.stringContaining('case count not shared'),
          ]);
        await host.click('#ws-start');
        await Promise.all(
          sites.map((p) =>
            p.waitForSelector('#fed-status[data-done="true"]', { timeout: 600_000 }),
          ),
        );
        await host.waitForSelector('#ws-status[data-phase="done"]');
        expect(await host.getAttribute('#ws-status', 'data-round')).toBe('2');
        const digests = await Promise.all(
          sites.map((p) => p.getAttribute('#fed-status', 'data-digest')),
        );
        expect(digests[0]).toMatch(/^[0-9a-f]{64}$/);
        expect(digests[1]).toBe(digests[0]);
        for (const p of sites) {
          const types = await p.$$eval('#egress-rows tr', (rows) =>
            rows.map((r) => r.getAttribute('data-type')),
          );
          if (!secure) {
            // After the final model, one report of numbers (held-out Dice) to the host.
            expect(new Set(types)).toEqual(
              new Set(['hello', 'fingerprint', 'spec', 'update', 'held-out-dice']),
            );
            expect(types.filter((t) => t === 'held-out-dice').length).toBe(1);
            continue;
          }
          // No fingerprint and no trained weights in the clear: the one plain update is the first
          // site's untrained initial model (round 0).
          expect(types.every((t) => SECURE_TYPES.includes(t!))).toBe(true);
          expect(types.filter((t) => t === 'secagg-masked').length).toBe(3); // FFE + 2 rounds
          const updateRounds = await p.$$eval(
            '#egress-rows tr[data-type="update"] td:nth-child(3)',
            (td) => td.map((x) => x.textContent),
          );
          expect(updateRounds.every((r) => r === '0')).toBe(true);
        }
        if (secure) {
          // The host shows the ε spent, the same the participants show; and it went through every secure phase.
          const hostEps = Number(await host.getAttribute('#ws-privacy', 'data-epsilon'));
          expect(hostEps).toBeGreaterThan(0);
          expect(hostEps).toBeLessThanOrEqual(100);
          expect(await host.textContent('#ws-privacy')).toMatch(
            /threshold 2 of 2 sites, clip 1\. Differential privacy: ε = [0-9.]+ spent after round 2/,
          );
          for (const p of sites)
            expect(Number(await p.getAttribute('#fed-privacy', 'data-epsilon'))).toBe(hostEps);
          const phases: string[] = await host.evaluate(() => [
            ...(window as unknown as { __securePhases: string[] }).__securePhases,
            document.querySelector('#ws-status')!.getAttribute('data-secure-phase') ?? '',
          ]);
          const seen = new Set(phases);
          for (const tag of ['fingerprint:0', 'model:1', 'model:2'])
            for (const ph of ['advert', 'shares', 'masked', 'unmask'])
              expect(seen, `${tag}:${ph} in ${phases.join(' ')}`).toContain(`${tag}:${ph}`);
        }
        if (secure) expect(await host.$$('#ws-compare-table')).toEqual([]);
        else {
          // The host's table (`fednnunet compare`'s layout): a row per participant, its held-out
          // Dice of the final model; no participant trained a local model, so that column is "—".
          await host.waitForSelector('#ws-compare-table tr.mean');
          expect(
            await host.$$eval('#ws-compare-table thead th', (th) => th.map((x) => x.textContent)),
          ).toEqual(['site', 'held-out cases', 'local', 'FFE']);
          const rows = await host.$$eval('#ws-compare-table tbody tr', (tr) =>
            tr.map((r) => [...r.children].map((c) => c.textContent ?? '')),
          );
          expect(rows.map((r) => r[0]).sort()).toEqual(['mean', 'participant-0', 'participant-1']);
          for (const r of rows.filter((x) => x[0] !== 'mean')) {
            expect(Number(r[1])).toBeGreaterThanOrEqual(1);
            expect(r[2]).toBe('—');
            expect(Number(r[3])).toBeGreaterThanOrEqual(0);
            expect(Number(r[3])).toBeLessThanOrEqual(1);
          }
          // The figure's bars carry the same numbers (two sites and the mean, one method).
          expect(
            (await host.$$eval('#ws-compare svg rect[data-dice]', (rs) => rs.length)) as number,
          ).toBe(3);
        }
        // The relay's own federation never saw a site: everything went over the data channels.
        expect(relay.coordinator.snapshot.sites).toEqual([]);
        await shot(host, 'workshop-2-done');
        await shot(sites[0], 'workshop-3-participant');
        expect(errors).toEqual([]);
      },
    );

    // WSDEBUG=1 prints every page's console with times.
    it('a secure host tab reloads after round 1, resumes from IndexedDB with its privacy settings and its key, and the same participants finish every round', async () => {
      const { relay } = s;
      const errors: string[] = [];
      const open = async (url: string, name: string) => {
        const page = await s.newPage(name, errors);
        if (process.env.WSDEBUG)
          page.on('console', (m) =>
            console.log(`[${(Date.now() / 1000).toFixed(1)} ${name}] ${m.type()}: ${m.text()}`),
          );
        await gotoReady(page, url);
        return page;
      };
      const host = await open(`${relay.url}?host-code=wk77#federation`, 'host');
      await host.fill('#ws-rounds', '3');
      await host.fill('#ws-iters', '1');
      await host.$eval('#ws-advanced', (d) => ((d as HTMLDetailsElement).open = true));
      await host.check('#ws-secure');
      await host.click('#ws-host');
      const link = await (await host.waitForSelector('#ws-link')).getAttribute('href');
      expect(link).toMatch(
        new RegExp(
          `^${relay.url.replace(/[.?]/g, '\\$&')}\\?workshop=wk77&hostkey=[0-9a-f]{32}&secure=1$`,
        ),
      );
      const sites: Page[] = [];
      for (const i of [0, 1]) {
        const page = await open(`${link}&site=reload-${i}`, `site ${i}`);
        await demoSiteReady(page, i);
        await page.click('#ws-join');
        sites.push(page);
      }
      await host.waitForFunction(
        () => document.querySelectorAll('#ws-roster li[data-connected="true"]').length === 2,
        undefined,
        { timeout: 180_000 },
      );
      const keysBefore = await host.$$eval('#ws-roster li', (li) =>
        li.map((x) => `${x.getAttribute('data-site')} ${x.getAttribute('data-key')}`).sort(),
      );
      await host.click('#ws-start');
      await host.waitForSelector('#ws-status[data-round="1"]', { timeout: 300_000 });

      await host.reload();
      await host.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
      // Offered, with where it was: round 1 (or 2, if round 2 closed before the reload) of 3.
      const offer = await host.waitForSelector('.ws-resume[data-code="wk77"]', { timeout: 30_000 });
      expect(await offer.textContent()).toMatch(
        /^Resume hosting workshop wk77 \(round [12] of 3, 2 sites\)$/,
      );
      expect(await host.$('.ws-discard[data-code="wk77"]')).not.toBeNull();
      await screenshot(host, 'workshop-4-resume-offer');
      // The host takes a while to click: the participants' tries meanwhile fail ('peer-unavailable'
      // once the signalling server gives up on their offers after 5 s) and they keep retrying.
      await host.waitForTimeout(12_000);
      await offer.click();
      // Secure as saved (the fresh page's form says nothing about it), and the same host key (same profile).
      expect(
        await (await host.waitForSelector('#ws-link', { timeout: 200_000 })).getAttribute('href'),
      ).toBe(link);
      await Promise.all(
        sites.map((p) => p.waitForSelector('#fed-status[data-done="true"]', { timeout: 600_000 })),
      );
      await host.waitForSelector('#ws-status[data-phase="done"]');
      expect(await host.getAttribute('#ws-status', 'data-round')).toBe('3');
      // The same two sites, by their keys; none joined anew.
      expect(
        await host.$$eval('#ws-roster li', (li) =>
          li.map((x) => `${x.getAttribute('data-site')} ${x.getAttribute('data-key')}`).sort(),
        ),
      ).toEqual(keysBefore);
      const digests = await Promise.all(
        sites.map((p) => p.getAttribute('#fed-status', 'data-digest')),
      );
      expect(digests[0]).toMatch(/^[0-9a-f]{64}$/);
      expect(digests[1]).toBe(digests[0]);
      // Both trained through round 3, and nothing trained left in the clear (the one plain update is round 0's untrained model).
      for (const p of sites) {
        expect(await p.getAttribute('#fed-status', 'data-round')).toBe('3');
        const rows = await p.$$eval('#egress-rows tr', (rs) =>
          rs.map((r) => [r.getAttribute('data-type'), r.children[2].textContent]),
        );
        expect(rows.filter(([t, r]) => t === 'update' && r !== '0')).toEqual([]);
        expect(rows.filter(([t]) => t === 'secagg-masked').length).toBeGreaterThanOrEqual(4); // FFE + 3 rounds (+ a retried round 2)
      }
      expect(await host.textContent('#ws-privacy')).toMatch(/threshold 2 of 2 sites/);
      await screenshot(host, 'workshop-5-resumed-done');
      // A finished federation is not offered again.
      await host.reload();
      await host.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
      await host.waitForTimeout(1000);
      expect(await host.$('.ws-resume')).toBeNull();
      expect(errors).toEqual([]);
    });

    it('a host whose code is still in use waits and retries, and hosts once the other tab is gone', async () => {
      const pages: Page[] = [];
      for (let i = 0; i < 2; i++)
        // This test checks no page errors: they are recorded and dropped.
        pages.push(await s.open(`${s.relay.url}?host-code=wk88#federation`, `tab ${i}`, []));
      const [old, next] = pages;
      await old.click('#ws-host');
      await old.waitForSelector('#ws-link');
      await next.click('#ws-host');
      await next.waitForFunction(
        () =>
          /^Workshop code wk88 is still in use .* Retrying in \d+ s \(try 2\)…$/.test(
            document.querySelector('#ws-status')!.textContent!,
          ),
        undefined,
        { timeout: 30_000 },
      );
      await screenshot(next, 'workshop-6-code-in-use');
      // The old tab goes away (its signalling socket closes): the id is free, the next try takes it.
      const t0 = Date.now();
      await old.context().close();
      // Well under the signalling server's 90 s alive timeout: the id was freed when the socket
      // closed, not by expiry (loose bound: CI machines are slow and shared).
      await next.waitForSelector('#ws-link', { timeout: 60_000 });
      expect(Date.now() - t0).toBeLessThan(60_000);
      expect(await next.textContent('#ws-host-code')).toBe('wk88');
    });
  },
);
