// What a workshop host sees of each site: its phase in words, how far it is (0..1), and every
// site's metrics per round for the host's chart. Pure, from what the coordinator knows (the
// messages it got): a host cannot see a site's iterations, only which step it has reported.
import type { CoordinatorSnapshot } from './coordinator.ts';

export interface RosterSite {
  siteId: string;
  siteName: string;
  connected: boolean;
}

export interface RosterRow {
  siteId: string;
  siteName: string;
  phase: string;
  /** 0..1: rounds this site has uploaded, of the federation's rounds. */
  progress: number;
}

/** The open round as the coordinator reports it (Coordinator.openRound). */
export interface OpenRoundView {
  round: number;
  reported: readonly string[];
}

export function rosterRows(
  s: Pick<CoordinatorSnapshot, 'phase' | 'round' | 'sites' | 'config'>,
  roster: readonly RosterSite[],
  open: OpenRoundView | undefined,
): RosterRow[] {
  const R = s.config.rounds;
  return roster.map((x) => {
    const rec = s.sites.find((y) => y.siteId === x.siteId);
    let phase: string;
    let done = s.round;
    switch (s.phase) {
      case 'join':
        phase = 'joined, waiting for the start';
        break;
      case 'fingerprint':
        phase = rec?.fingerprint ? 'fingerprint received' : 'fingerprinting';
        break;
      case 'spec':
        phase = rec?.spec ? 'planned, waiting for the others' : 'planning and preprocessing';
        break;
      case 'init':
        phase = 'sending the initial model';
        break;
      case 'rounds': {
        const r = open?.round ?? s.round + 1;
        const uploaded = open?.reported.includes(x.siteId) ?? false;
        if (uploaded) done = r;
        phase = uploaded ? `round ${r} of ${R} uploaded` : `training round ${r} of ${R}`;
        break;
      }
      case 'done':
        phase = 'finished';
        done = R;
        break;
    }
    return {
      siteId: x.siteId,
      siteName: x.siteName,
      phase: x.connected || s.phase === 'done' ? phase : `${phase} (disconnected)`,
      progress: R ? Math.min(1, done / R) : 0,
    };
  });
}

/** Per site, `metric` per closed round: the host's chart of every site. */
export function perSiteSeries(
  s: Pick<CoordinatorSnapshot, 'history' | 'sites'>,
  metric: string,
): Array<{ siteId: string; siteName: string; points: Array<[number, number]> }> {
  return s.sites.map((site) => ({
    siteId: site.siteId,
    siteName: site.siteName,
    points: s.history
      .filter((h) => h.round > 0 && Number.isFinite(h.metrics[site.siteId]?.[metric]))
      .map((h) => [h.round, h.metrics[site.siteId][metric]] as [number, number]),
  }));
}
