// A federation inside this Node process: the real relay (src/node/relay) on a loopback port and
// one SiteClient per site over real WebSockets, each signing with a key held in memory (admission:
// trust on first use). Used by `fednnunet simulate` and `fednnunet compare`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startRelay, type RelayOptions } from './relay/server.ts';
import { SiteClient, type SiteResult, type SiteTrainer } from '../fed/client.ts';
import { wsConnect } from '../fed/ws-transport.ts';
import { mergeSiteFingerprints } from '../fed/ffe-merge.ts';
import type { FederationConfig } from '../fed/protocol.ts';

export interface LocalFederationOptions {
  /** Sites send no case count (secure federations). */
  hideCaseCount?: boolean;
  log?: (line: string) => void;
  /** A pretrained model's weights as round 1's global model (`--init-model`). */
  initialWeights?: RelayOptions['initialWeights'];
}

/** Runs the whole federation and resolves to each site's result, in the order given. */
export async function runLocalFederation(
  config: FederationConfig,
  sites: readonly SiteTrainer[],
  o: LocalFederationOptions = {},
): Promise<SiteResult[]> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fednnunet-sim-'));
  const relay = await startRelay({
    dataDir,
    config: { ...config, expectedSites: sites.length, token: 'simulation' },
    aggregateFingerprints: mergeSiteFingerprints,
    log: (l) => o.log?.(l),
    initialWeights: o.initialWeights,
  });
  try {
    // Join in the order given, so FFE aggregates in that order (as FednnU-Net's client list).
    const runs: Promise<SiteResult>[] = [];
    for (const [i, site] of sites.entries()) {
      const run = new SiteClient({
        connect: wsConnect(relay.wsUrl, WebSocket as never),
        token: 'simulation',
        siteName: `site${i + 1}`,
        trainer: site,
        hideCaseCount: o.hideCaseCount,
      }).run();
      runs.push(run);
      // The next site starts once this one is admitted (or has failed).
      let failed = false;
      run.catch(() => (failed = true));
      while (relay.coordinator.roster().length <= i && !failed)
        await new Promise((r) => setTimeout(r, 10));
    }
    return await Promise.all(runs);
  } finally {
    await relay.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
