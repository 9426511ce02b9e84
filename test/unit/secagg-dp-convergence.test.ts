// Secure aggregation + client-level DP on the phantom federation with the real pipeline: three demo
// sites (different spacing, gain, noise), FFE through the secure sum, the tiny network (patch 8),
// cpu, over the relay's WebSockets. Training must still converge at the documented ε.
//
// Why ε is large here: with n = 3 sites the noise on the mean is σ·C/3 per coordinate, over 85 k
// parameters, against a clipped delta of norm ≤ C. Client-level DP at single-digit ε needs hundreds
// of sites or more (docs/secure-aggregation.md has a sweep). ε and the Dice are logged for the docs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { startRelay } from '../../src/node/relay/server.ts';
import { SiteClient } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import type { FederationConfig } from '../../src/fed/protocol.ts';
import { privacyConfig } from '../../src/fed/secagg/config.ts';
import { TrainerSite } from '../../src/pipeline/trainer-site.ts';
import { SitePipeline } from '../../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../../src/pipeline/site-store.ts';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import { useBackend } from '../../src/model/tf-backend.ts';

// Overridable for the sweep in the docs; the test's own setting is the default.
const EPSILON = Number(process.env.SECAGG_DP_EPSILON ?? 500);
const ROUNDS = Number(process.env.SECAGG_DP_ROUNDS ?? 8);
const ITERS = 20;
const CLIP = 1;

describe('secure aggregation + DP on the phantom federation (tiny net, cpu)', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it(`converges at ε = ${EPSILON}, δ = 1e-5 over ${ROUNDS} rounds`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'secagg-dp-'));
    const base: FederationConfig = {
      method: 'ffe',
      configuration: '3d_fullres',
      rounds: ROUNDS,
      itersPerRound: ITERS,
      minSites: 3,
      roundDeadlineMs: 600_000,
      weighting: 'uniform',
      encoding: 'fp32',
    };
    // SECAGG_DP_EPSILON=0: secure aggregation without DP (the baseline of the sweep).
    const config = {
      ...base,
      privacy: privacyConfig(
        3,
        base,
        EPSILON > 0 ? { clip: CLIP, dpEpsilon: EPSILON, dpDelta: 1e-5 } : { clip: CLIP },
      ),
    };
    const relay = await startRelay({
      dataDir: dir,
      config: { ...config, expectedSites: 3, token: 't' },
      log: () => undefined,
    });
    const sites = DEMO_SITES.map((p, i) => {
      const ds = demoDataset(p, i, 4);
      return new TrainerSite({
        pipeline: new SitePipeline(memoryCasesStore(ds.name, ds.datasetJson, ds.cases)),
        tiny: { patch: 8 },
        valIters: 2,
        evaluate: false,
        seed: i,
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
            hideCaseCount: true,
          }).run(),
        );
        await new Promise((r) => setTimeout(r, 30));
      }
      const results = await Promise.all(runs);
      const spent = results[0].privacy;
      const loss = (r: number) =>
        sites.reduce((a, s) => a + s.rounds[r].epoch.trainLoss, 0) / sites.length;
      const dice = (r: number) =>
        sites.reduce((a, s) => a + (s.rounds[r].epoch.pseudoDice ?? 0), 0) / sites.length;
      console.log(
        `secure${EPSILON > 0 ? `+DP: σ = ${config.privacy.dp!.noiseMultiplier.toFixed(4)}` : ', no DP'}, C = ${CLIP}; ε after each round ${spent.map((p) => p.epsilon.toFixed(1)).join(', ')}`,
      );
      console.log(
        `mean train loss per round ${sites[0].rounds.map((_, r) => loss(r).toFixed(3)).join(', ')}`,
      );
      console.log(
        `mean pseudo-Dice per round ${sites[0].rounds.map((_, r) => dice(r).toFixed(3)).join(', ')}`,
      );
      if (EPSILON > 0) {
        expect(spent.length).toBe(ROUNDS);
        expect(spent.at(-1)!.epsilon).toBeLessThanOrEqual(EPSILON);
        expect(spent.at(-1)!.epsilon).toBeGreaterThan(0.99 * EPSILON);
      }
      // Converged: the training loss fell by over a third, and nnU-Net's online pseudo-Dice over the
      // last three rounds is well above the first rounds' (0.25 here). Without DP: 0.49 and 0.56; four
      // runs at ε = 500 (the noise is not seeded): 0.54–0.56 and 0.49–0.54.
      expect(loss(ROUNDS - 1)).toBeLessThan(0.65 * loss(0));
      expect((dice(ROUNDS - 1) + dice(ROUNDS - 2) + dice(ROUNDS - 3)) / 3).toBeGreaterThan(0.4);
      if (process.env.SECAGG_DP_FINAL_DICE) {
        // Sliding-window Dice on each site's held-out case (slow at patch 8: for the docs only).
        const finals = [];
        for (const s of sites) finals.push(await s.validationDice());
        console.log(
          `final sliding-window Dice per site ${finals.map((d) => d.toFixed(3)).join(', ')}`,
        );
      }
    } finally {
      await relay.close();
      rmSync(dir, { recursive: true, force: true });
      sites.forEach((s) => s.trainer?.dispose());
    }
  }, 300_000);
});
