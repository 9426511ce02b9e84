// Hosting a workshop federation in this tab: a FederationHost reached over PeerJS data channels
// (the signalling server only introduces the peers), its deadlines ticked every second, its state
// saved through `persist`. Runs on the page's main thread, not in a worker: PeerJS needs WebRTC
// (RTCPeerConnection), which most browsers offer to the main thread only. The host's own work per
// message is small; the training happens in the sites' workers.
import { FederationHost, type HostOptions } from './host.ts';
import type { Coordinator } from './coordinator.ts';
import { mergeSiteFingerprints } from './ffe-merge.ts';
import { hostOverPeerJS } from './peer-transport.ts';
import { methodDefaults, type Method } from './methods.ts';
import type { SiteIdentity } from './identity/site-key.ts';
import type { PrivacyOptions } from './secagg/config.ts';
import { privacyText, secureStatusText } from './secagg/host-status.ts';
import { heldOutTable, type HeldOutTable } from './held-out-table.ts';

/** What the host chooses on the Federation tab. */
export interface WorkshopSettings {
  method: Method;
  rounds: number;
  itersPerRound: number;
}

/** A workshop federation's config (the method's own options at their defaults): any number of sites, one at least, an hour per round, fp16 deltas. */
export function workshopConfig(code: string, s: WorkshopSettings): HostOptions['config'] {
  return {
    ...methodDefaults(s.method),
    configuration: '3d_fullres',
    rounds: s.rounds,
    itersPerRound: s.itersPerRound,
    minSites: 1,
    roundDeadlineMs: 3_600_000,
    weighting: 'uniform',
    encoding: 'fp16',
    expectedSites: 1000,
    token: code,
  };
}

/** What the host tab shows of its federation. */
export interface WorkshopStatus {
  roster: Array<{ siteName: string; connected: boolean; fingerprint: string; text: string }>;
  canStart: boolean;
  text: string;
  phase: string;
  round: number;
  /** `kind:round:phase` of a secure round under way, '' when none. */
  securePhase: string;
  privacy: string;
  /** ε spent after the last round, '' when none. */
  epsilon: string;
  /** Held-out Dice per site, local vs the federation, once sites report after the final model. */
  heldOut?: HeldOutTable;
}

export function workshopStatus(c: Coordinator): WorkshopStatus {
  const roster = c.roster().map((x) => ({
    siteName: x.siteName,
    connected: x.connected,
    fingerprint: x.fingerprint ?? '',
    text: `${x.siteName} — ${x.numCases ? `${x.numCases} cases` : 'case count not shared'}${x.connected ? '' : ' (disconnected)'}${x.fingerprint ? ` — key ${x.fingerprint}` : ''}`,
  }));
  let text =
    c.phase === 'join'
      ? `${roster.length} site(s) joined; start when everyone is in.`
      : c.phase === 'done'
        ? `Federation finished after ${c.round} rounds.`
        : `phase ${c.phase}, round ${c.round} of ${c.snapshot.config.rounds} completed`;
  const sec = c.secureStatus;
  if (sec) text += ` — ${secureStatusText(sec)}`;
  return {
    roster,
    canStart: c.phase === 'join' && roster.length > 0,
    text,
    phase: c.phase,
    round: c.round,
    securePhase: sec ? `${sec.kind}:${sec.round}:${sec.phase}` : '',
    privacy: privacyText(c.snapshot),
    epsilon: String(c.snapshot.history.at(-1)?.privacy?.epsilon ?? ''),
    heldOut: heldOutTable(c.snapshot),
  };
}

export interface WorkshopHostOptions {
  code: string;
  settings: WorkshopSettings;
  /** Secure aggregation (and DP) asked for at the start; undefined when resuming (the saved state has it). */
  privacyAtStart?: PrivacyOptions;
  /** Saving, and for a resumed federation its saved config and state (ui/views/workshop-resume.ts). */
  saving: Pick<HostOptions, 'persist'> & Partial<Pick<HostOptions, 'config' | 'restored'>>;
  /** This browser profile's key: the host proves it to every participant (the join link pins its fingerprint). */
  identity: SiteIdentity;
  /** After every change of phase, round or roster. */
  onChange(c: Coordinator): void;
  /** The code is still held by a previous host tab: retrying after `ms`. */
  onWait?(attempt: number, ms: number): void;
}

export interface WorkshopHosting {
  host: FederationHost;
  /** Whether the federation aggregates securely (participants' links say so). */
  secure: boolean;
  /** The fingerprint of the key this host proves (in the join link). */
  hostKey: string;
  close(): void;
}

/** Registers `code` with the signalling server and hosts the federation until closed. */
export async function hostWorkshop(o: WorkshopHostOptions): Promise<WorkshopHosting> {
  const host = new FederationHost({
    config: workshopConfig(o.code, o.settings),
    aggregateFingerprints: mergeSiteFingerprints,
    privacyAtStart: o.privacyAtStart,
    onChange: () => o.onChange(host.coordinator),
    log: (l) => console.log(`[workshop host] ${l}`),
    identity: o.identity,
    ...o.saving,
  });
  const peer = await hostOverPeerJS(host, o.code, { onWait: o.onWait });
  const ticker = setInterval(() => host.tick(), 1000);
  const s = host.coordinator.snapshot;
  return {
    host,
    secure: !!(o.privacyAtStart ?? s.config.privacy ?? s.privacyAtStart),
    hostKey: o.identity.fingerprint,
    close() {
      clearInterval(ticker);
      peer.close();
    },
  };
}
