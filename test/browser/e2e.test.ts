// The whole path as a new user takes it (issues 9 and 19), on two browser profiles served by a
// relay: the join link opens the stepper on Data ("Use demo data") → Join (the link filled in the
// code; tiny patch 8 in the folded advanced settings) → 2 rounds × 2 iterations of FFE watched live
// (phase line, progress bar, charts read back from their data and checked against what the relay
// received) → finished → a reload keeps the privacy audit → Predict with the federation's model,
// the engine left on Automatic (WebAssembly on SwiftShader) → NIfTI download. One federation run
// serves every check (CI has 2 cores). Screenshots of each step: test-artifacts/newcomer-*.png.
//
// The same run records every byte each tab sends (CDP on the page and on every worker it starts)
// and checks that no voxel data left it: no 64-byte window of any stored image appears anywhere
// in any outgoing payload, and every WebSocket message decodes to hello/fingerprint/spec/update
// and matches the tab's "What leaves this browser" panel.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { BrowserContext, CDPSession, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { decodeMessage } from '../../src/fed/protocol.ts';
import { parseSignedFrame } from '../../src/fed/identity/envelope.ts';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { gotoReady, openAdvanced, screenshot, useRelaySession } from './harness.ts';
import { VoxelIndex } from './voxel-index.ts';
import type { HookedWindow } from '../../src/ui/main.ts';

interface Egress {
  /** Binary WebSocket messages sent, decoded from CDP's base64 payloadData. */
  wsFrames: Uint8Array[];
  /** Text WebSocket messages (none expected). */
  wsText: string[];
  /** HTTP requests: url, method and body bytes (if any). */
  requests: Array<{ url: string; method: string; body?: Uint8Array }>;
  /** Targets recorded (page + workers). */
  targets: string[];
}

/**
 * Records what a page and every worker it starts send. Dedicated workers are separate CDP
 * targets whose traffic the page's Network domain does not report, so we auto-attach to them
 * (non-flat sessions, messages relayed through this session) and pause each one until its
 * Network domain is enabled.
 */
/** The fields of CDP's Network.webSocketFrameSent / Network.requestWillBeSent events read here. */
type NetworkEvent = {
  response: { opcode: number; payloadData: string };
  request: {
    url: string;
    method: string;
    postData?: string;
    postDataEntries?: Array<{ bytes?: string }>;
  };
};

async function recordEgress(ctx: BrowserContext, page: Page): Promise<Egress> {
  const eg: Egress = { wsFrames: [], wsText: [], requests: [], targets: ['page'] };
  const cdp: CDPSession = await ctx.newCDPSession(page);
  const onNetwork = (method: string, p: NetworkEvent) => {
    if (method === 'Network.webSocketFrameSent') {
      if (p.response.opcode === 2)
        eg.wsFrames.push(new Uint8Array(Buffer.from(p.response.payloadData, 'base64')));
      else eg.wsText.push(p.response.payloadData);
    } else if (method === 'Network.requestWillBeSent') {
      const r = p.request;
      const parts: Uint8Array[] = (r.postDataEntries ?? [])
        .filter((e) => e.bytes)
        .map((e) => new Uint8Array(Buffer.from(e.bytes!, 'base64')));
      if (!parts.length && r.postData) parts.push(new Uint8Array(Buffer.from(r.postData)));
      eg.requests.push({
        url: r.url,
        method: r.method,
        body: parts.length ? new Uint8Array(Buffer.concat(parts)) : undefined,
      });
    }
  };
  for (const m of ['Network.webSocketFrameSent', 'Network.requestWillBeSent'])
    cdp.on(m as never, (p: NetworkEvent) => onNetwork(m, p));
  let id = 0;
  const toChild = (sessionId: string, method: string, params: object = {}) =>
    cdp.send(
      'Target.sendMessageToTarget' as never,
      { sessionId, message: JSON.stringify({ id: ++id, method, params }) } as never,
    );
  cdp.on(
    'Target.attachedToTarget' as never,
    (p: { sessionId: string; targetInfo: { type: string; url: string } }) => {
      eg.targets.push(`${p.targetInfo.type} ${p.targetInfo.url}`);
      void (async () => {
        await toChild(p.sessionId, 'Network.enable');
        await toChild(p.sessionId, 'Runtime.runIfWaitingForDebugger');
      })();
    },
  );
  cdp.on('Target.receivedMessageFromTarget' as never, (p: { message: string }) => {
    const m = JSON.parse(p.message);
    if (m.method) onNetwork(m.method, m.params);
  });
  await cdp.send('Network.enable');
  await cdp.send(
    'Target.setAutoAttach' as never,
    { autoAttach: true, waitForDebuggerOnStart: true, flatten: false } as never,
  );
  return eg;
}

const TOKEN = 'e2e42';

describe('a new user: demo data → federation → prediction, and nothing but weights leaves', () => {
  const s = useRelaySession({
    config: { rounds: 2, itersPerRound: 2, token: TOKEN },
    closeTimeout: 900_000,
  });
  const pages: Page[] = [];
  const egress: Egress[] = [];
  const errors: string[] = [];
  let federated = false;

  it('two sites: join link → stepper → demo data → join → live phase, progress and charts → finished → predict (Automatic picks WebAssembly on SwiftShader) → download', async () => {
    const { relay } = s;
    for (const i of [0, 1]) {
      const page = await s.newPage(`site ${i}`, errors, { acceptDownloads: true });
      egress.push(await recordEgress(page.context(), page));
      // The join link a host shares: it opens the stepper on the first missing step, Data.
      await gotoReady(page, `${relay.url}?join=${TOKEN}`);
      expect(await page.getAttribute('#stepper', 'data-current')).toBe('data');
      expect(await page.isVisible('#panel-data')).toBe(true);
      expect(await page.inputValue('#fed-token')).toBe(TOKEN);
      if (i === 0) await screenshot(page, 'newcomer-1-join-link');
      // Step 1: demo data (a different demo site in each profile).
      await page.selectOption('#demo-site', String(i));
      await page.click('#use-demo');
      await page.waitForFunction(
        () => document.querySelector('#import-status')?.textContent === 'Import finished.',
        undefined,
        // A bound on a hang, not a speed check: CI runs the unit tests beside this on 2 cores.
        { timeout: 240_000 },
      );
      // The stepper follows the Data tab: step 1 done, step 2 (Join) is next.
      await page.waitForSelector('#step-data[data-state="done"]');
      expect(await page.getAttribute('#stepper', 'data-current')).toBe('join');
      if (i === 0) await screenshot(page, 'newcomer-2-demo-data');
      // Step 2: Join, from the stepper.
      await page.click('#step-join');
      expect(await page.isVisible('#panel-federation')).toBe(true);
      await page.waitForFunction(
        () => document.querySelectorAll('#fed-dataset option').length === 1,
      );
      // Every field of the participant card has a label (visible, not only for screen readers).
      expect(
        await page.$$eval('#fed-participant input, #fed-participant select', (els) =>
          els
            .filter((e) => !(e as HTMLInputElement).labels?.[0]?.textContent?.trim())
            .map((e) => e.id),
        ),
      ).toEqual([]);
      // The host's settings are not a participant's business: hidden in participant mode.
      expect(await page.isVisible('#fed-host-card')).toBe(false);
      expect(await page.isVisible('#fed-relay')).toBe(false);
      if (i === 0) {
        // A reload keeps the site name (no new random name).
        const name = await page.inputValue('#fed-site');
        await page.reload();
        await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
        expect(await page.inputValue('#fed-site')).toBe(name);
        await page.waitForFunction(
          () => document.querySelectorAll('#fed-dataset option').length === 1,
        );
        await screenshot(page, 'newcomer-3-join-step');
      }
      // CI speed: the smallest patch (advanced settings, folded for a participant).
      await openAdvanced(page);
      await page.fill('#fed-tiny-patch', '8');
      await page.$eval('#fed-advanced', (d) => ((d as HTMLDetailsElement).open = false));
      pages.push(page);
    }
    await Promise.all(pages.map((p) => p.click('#fed-join')));
    // Step 3, live: after round 1 the phase line, the progress bar and both charts show it.
    const live = pages[0];
    await live.waitForSelector('#fed-status[data-round="1"]', { timeout: 600_000 });
    expect(await live.getAttribute('#stepper', 'data-current')).toBe('train');
    expect(
      Number(await live.$eval('#fed-progress', (p) => (p as HTMLProgressElement).value)),
    ).toBeGreaterThan(0);
    expect(await live.textContent('#fed-phase')).toMatch(/round [12] of 2|finished/i);
    await screenshot(live, 'newcomer-4-training');
    await Promise.all(
      pages.map((p) => p.waitForSelector('#fed-status[data-done="true"]', { timeout: 600_000 })),
    );
    await screenshot(live, 'newcomer-5-finished');
    const digests = await Promise.all(
      pages.map((p) => p.getAttribute('#fed-status', 'data-digest')),
    );
    expect(digests[1]).toBe(digests[0]);
    expect(relay.coordinator.round).toBe(2);
    federated = true;

    for (const p of pages) {
      // Every step of the site's pipeline was shown, in order (other steps may come between).
      const seen = (await p.getAttribute('#fed-phase', 'data-seen'))!.split(' ');
      const expected = [
        'connecting',
        'fingerprinting',
        'waiting-fingerprints',
        'planning',
        'preprocessing',
        'waiting-plans',
        'training',
        'uploading',
        'waiting-others',
        'training',
        'uploading',
        'waiting-others',
        'finishing',
        'done',
      ];
      let k = 0;
      for (const step of seen) if (step === expected[k]) k++;
      expect(expected.slice(k), `steps seen: ${seen.join(' ')}`).toEqual([]);
      expect(await p.textContent('#fed-phase')).toBe('Finished: 2 rounds.');
      expect(await p.$eval('#fed-progress', (x) => (x as HTMLProgressElement).value)).toBe(1);
      expect(await p.getAttribute('#stepper', 'data-current')).toBe('predict');
      // The charts hold the rounds that ran: read from the chart's data, checked against what
      // the relay received from this site.
      const name = await p.inputValue('#fed-site');
      const siteId = relay.coordinator.roster().find((x) => x.siteName === name)!.siteId;
      const metricsOf = (r: number) =>
        relay.coordinator.snapshot.history.find((h) => h.round === r)!.metrics[siteId];
      const perRound = JSON.parse((await p.getAttribute('#fed-chart', 'data-series'))!) as Array<{
        name: string;
        points: Array<[number, number]>;
      }>;
      const loss = perRound.find((x) => x.name === 'loss')!.points;
      expect(loss.map(([r]) => r)).toEqual([1, 2]);
      for (const [r, v] of loss) expect(v).toBeCloseTo(metricsOf(r).loss, 10);
      const dice = perRound.find((x) => x.name === 'pseudo-Dice')!.points;
      // pseudo-Dice is NaN (not sent) in a round whose validation patches held no foreground.
      expect(dice.map(([r]) => r)).toEqual(
        [1, 2].filter((r) => Number.isFinite(metricsOf(r).pseudoDice)),
      );
      for (const [r, v] of dice) expect(v).toBeCloseTo(metricsOf(r).pseudoDice, 10);
      const perIter = JSON.parse(
        (await p.getAttribute('#fed-loss-chart', 'data-series'))!,
      ) as Array<{
        points: Array<[number, number]>;
      }>;
      // 2 rounds × 2 iterations, numbered through the rounds.
      expect(perIter[0].points.map(([x]) => x)).toEqual([1, 2, 3, 4]);
      expect(perIter[0].points.every(([, y]) => Number.isFinite(y))).toBe(true);
    }

    // The privacy audit survives a reload (IndexedDB), row for row.
    const page = pages[0];
    const audit = () =>
      page.$$eval('#egress-rows tr', (rows) =>
        rows.map((r) =>
          [...r.children]
            .slice(1)
            .map((c) => c.textContent)
            .join(' '),
        ),
      );
    const before = await audit();
    expect(before.length).toBeGreaterThanOrEqual(5);
    const totalBefore = await page.textContent('#egress-total');
    expect(totalBefore).toMatch(new RegExp(`^${before.length} messages, `));
    await page.reload();
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    await page.waitForFunction(
      (n) => document.querySelectorAll('#egress-rows tr').length === n,
      before.length,
    );
    expect(await audit()).toEqual(before);
    // …and the stepper still knows the federation finished: Predict is the next step.
    await page.waitForSelector('#stepper[data-current="predict"]');
    expect(await page.textContent('#egress-total')).toBe(totalBefore);

    // Step 4: Predict with the model the federation left in this browser, engine Automatic.
    await page.click('#step-predict');
    await page.waitForFunction(
      () => document.querySelectorAll('#model-list li[data-id]').length === 1,
    );
    const modelName = await page.getAttribute('#model-list li[data-id]', 'data-model');
    expect(modelName).toMatch(/federation \(2 rounds\)/);
    // The case list fills asynchronously (data worker) after the model list; wait for it.
    await page.waitForFunction(() =>
      [...(document.querySelector('#predict-case') as HTMLSelectElement).options].some(
        (o) => o.value,
      ),
    );
    const caseValue = await page.$eval(
      '#predict-case',
      (s) => [...(s as HTMLSelectElement).options].find((o) => o.value)!.value,
    );
    await page.selectOption('#predict-case', caseValue);
    expect(await page.inputValue('#predict-backend')).toBe('auto');
    await page.click('#predict-run');
    await page.waitForSelector('#predict-status[data-phase="done"]', { timeout: 600_000 });
    // SwiftShader is a software adapter: Automatic chose WebAssembly, and says why.
    expect(await page.getAttribute('#predict-result', 'data-engine')).toMatch(/wasm/);
    expect(await page.getAttribute('#predict-result', 'data-engine-reason')).toMatch(
      /software|fallback|SwiftShader/i,
    );
    await page.waitForFunction(
      () => (window as unknown as HookedWindow).__fednnunet.predict.viewer.volumesLoaded() === 2,
    );
    await page.waitForTimeout(300); // let the canvas draw once more before the picture
    await screenshot(page, 'newcomer-6-predict');
    const rows = await page.$$eval('#volume-table tbody tr', (r) =>
      r.map((x) => x.getAttribute('data-label')),
    );
    expect(rows.length).toBeGreaterThan(0);
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download-seg')]);
    expect(dl.suggestedFilename()).toMatch(/_seg\.nii\.gz$/);
    const seg = readNifti(new Uint8Array(readFileSync((await dl.path())!)), 'downloaded');
    const { caseId } = JSON.parse(caseValue) as { caseId: string };
    const source = demoDataset(DEMO_SITES[0], 0).cases.find((c) => c.id === caseId)!;
    expect(seg.dims).toEqual(source.image.dims);
    for (const v of seg.data) expect(v === 0 || v === 1 || v === 2).toBe(true);
    expect(errors).toEqual([]);
  }, 900_000);

  it('egress: only hello/fingerprint/spec/update messages left each tab, no 64-byte window of any image, as the panel lists', async () => {
    const { relay } = s;
    expect(federated, 'the federation in the previous test must have completed').toBe(true);
    for (const [i, eg] of egress.entries()) {
      // The demo volumes generated here are byte for byte those the tab stored.
      const ds = demoDataset(DEMO_SITES[i], i);
      const page = pages[i];
      const stored = await page.evaluate(async () => {
        const f = (window as unknown as HookedWindow).__fednnunet;
        const [d] = await f.data.datasets();
        return Promise.all(
          d.cases.map(async (c: { caseId: string }) => ({
            caseId: c.caseId,
            digests: await f.data.caseDigests(d.id, c.caseId),
          })),
        );
      });
      expect(stored.length).toBe(ds.cases.length);
      const index = new VoxelIndex(64);
      for (const c of ds.cases) {
        const bytes = new Uint8Array(
          c.image.data.buffer,
          c.image.data.byteOffset,
          c.image.data.byteLength,
        );
        expect(stored.find((s) => s.caseId === c.id)!.digests!.images[0]).toBe(
          createHash('sha256').update(bytes).digest('hex'),
        );
        index.add(bytes);
        const lab = c.label.data;
        index.add(new Uint8Array(lab.buffer, lab.byteOffset, lab.byteLength));
      }
      expect(index.size).toBeGreaterThan(1000);

      expect(eg.wsText).toEqual([]);
      // Every frame is a signed envelope around a protocol message (both parses throw on anything else).
      const signed = eg.wsFrames.map((f) => parseSignedFrame(f));
      const types = signed.map((s) => decodeMessage(s.frame).message.type);
      expect(new Set(types)).toEqual(new Set(['hello', 'fingerprint', 'spec', 'update']));
      // Besides the messages, only signatures and, with each hello, this browser's public key left.
      const ownKey = await page.evaluate(() =>
        (window as unknown as HookedWindow).__fednnunet.train
          .siteKey()
          .then((k: { publicKey: string }) => k.publicKey),
      );
      expect(
        signed
          .filter((s, k) => s.key.length > 0 || types[k] === 'hello')
          .map((s) => Buffer.from(s.key).toString('base64')),
      ).toEqual(types.filter((t) => t === 'hello').map(() => ownKey));
      const panel = await page.$$eval('#egress-rows tr', (rows) =>
        rows.map((r) => r.getAttribute('data-type')),
      );
      expect(panel).toEqual(types);
      // Every payload, at every offset: WebSocket messages and HTTP bodies (the app's own GETs have none).
      const payloads = [...eg.wsFrames, ...eg.requests.flatMap((r) => (r.body ? [r.body] : []))];
      const hits = payloads.map((p) => index.find(p)).filter((h) => h >= 0);
      expect(hits).toEqual([]);
      // Only GETs, to the app's own server or to in-page URLs (blob:/data:: workers, the download).
      expect(
        eg.requests
          .filter(
            (r) =>
              r.method !== 'GET' || !(r.url.startsWith(relay.url) || /^(blob|data):/.test(r.url)),
          )
          .map((r) => `${r.method} ${r.url.slice(0, 80)}`),
      ).toEqual([]);
      expect(eg.targets.filter((t) => t.startsWith('worker')).length).toBeGreaterThanOrEqual(2);
      const bytes = eg.wsFrames.reduce((n, f) => n + f.length, 0);
      console.log(
        `site ${i}: ${types.length} messages (${[...new Set(types)].join(', ')}), ${bytes} bytes, ${eg.requests.length} HTTP requests, ${index.size} image/label windows checked, targets: ${eg.targets.length}`,
      );
    }
  });
});
