// Three sites with heterogeneous synthetic data (the demo phantoms: different spacing, scanner
// gain and noise), the real pipeline (fingerprint → plan → preprocess → nnU-Net's trainer, tiny
// network) and the relay, in Node over WebSockets.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { startRelay } from '../../src/node/relay/server.ts';
import { SiteClient } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import { mergeSiteFingerprints } from '../../src/fed/ffe-merge.ts';
import type { FederationConfig } from '../../src/fed/protocol.ts';
import { TrainerSite } from '../../src/pipeline/trainer-site.ts';
import { SitePipeline } from '../../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../../src/pipeline/site-store.ts';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import { useBackend } from '../../src/model/tf-backend.ts';

async function federate(method: FederationConfig['method']) {
  const dir = mkdtempSync(join(tmpdir(), `sim-${method}-`));
  const logLines: string[] = [];
  const config: FederationConfig = {
    method,
    configuration: '3d_fullres',
    rounds: 1,
    itersPerRound: 1,
    minSites: 3,
    roundDeadlineMs: 600_000,
    weighting: 'uniform',
    encoding: 'fp16',
  };
  const relay = await startRelay({
    dataDir: dir,
    config: { ...config, expectedSites: 3, token: 't' },
    aggregateFingerprints: mergeSiteFingerprints,
    log: (l) => logLines.push(l),
  });
  const sites = DEMO_SITES.map((p, i) => {
    const ds = demoDataset(p, i, 3);
    return new TrainerSite({
      pipeline: new SitePipeline(memoryCasesStore(ds.name, ds.datasetJson, ds.cases)),
      tiny: { patch: 8 },
      valIters: 0,
      evaluate: false,
    });
  });
  try {
    const runs = [];
    for (const [i, s] of sites.entries()) {
      runs.push(
        new SiteClient({
          connect: wsConnect(relay.wsUrl, WebSocket as never),
          token: 't',
          siteName: `s${i}`,
          trainer: s,
        }).run(),
      );
      await new Promise((r) => setTimeout(r, 30)); // join in order
    }
    return { sites, results: await Promise.all(runs), global: relay.coordinator.global!, logLines };
  } finally {
    await relay.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('simulated federation with the real pipeline (tiny nets, cpu)', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('FFE: every site plans the same network and ends with identical global weights', async () => {
    const { sites, results, global, logLines } = await federate('ffe');
    // The relay's terminal says when the federation is over (issue 19: it used to go quiet).
    expect(logLines).toContain(
      'federation finished after 1 round(s); the final model goes to 3 connected site(s)',
    );
    const plans = sites.map((s) => s.plans!.configurations['3d_fullres']!);
    for (const p of plans.slice(1)) {
      expect(p.spacing).toEqual(plans[0].spacing);
      expect(p.patch_size).toEqual(plans[0].patch_size);
      expect(p.architecture).toEqual(plans[0].architecture);
    }
    expect(results.every((r) => r.shared.length === sites[0].trainer!.net.specs.length)).toBe(true);
    for (const s of sites) {
      const w = await s.weights();
      for (const [name, t] of global)
        expect(Buffer.from(w.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer))).toBe(true);
    }
    sites.forEach((s) => s.trainer!.dispose());
  });

  it('AsymFedAvg: sites plan different networks and exchange exactly the shared (name, shape) set', async () => {
    const { sites, results } = await federate('asym');
    const kernels = sites.map((s) =>
      JSON.stringify(s.plans!.configurations['3d_fullres']!.architecture.arch_kwargs.kernel_sizes),
    );
    expect(new Set(kernels).size).toBeGreaterThan(1); // site B's 2 mm slices: an in-plane first stage
    const specs = await Promise.all(
      sites.map(async (s) => [...(await s.weights())].map(([name, t]) => `${name}:${t.shape}`)),
    );
    const everywhere = specs[0]
      .filter((k) => specs.every((sp) => sp.includes(k)))
      .map((k) => k.split(':')[0])
      .sort();
    for (const [i, r] of results.entries()) {
      expect(r.shared.map((e) => e.name).sort()).toEqual(everywhere);
      const sent = new Set(r.sentLog.flatMap((m) => m.tensors ?? []));
      expect([...sent].sort()).toEqual(everywhere);
      // The non-shared layers never left the site.
      const localOnly = specs[i].map((k) => k.split(':')[0]).filter((n) => !everywhere.includes(n));
      expect(localOnly.length).toBeGreaterThan(0);
      for (const n of localOnly) expect(sent.has(n)).toBe(false);
    }
    sites.forEach((s) => s.trainer!.dispose());
  });
});
