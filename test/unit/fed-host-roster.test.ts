// What a workshop host sees of each site (src/fed/host-roster.ts): phase in words and progress,
// from a coordinator's state; every site's metric per round; and the join link's QR code
// (src/ui/qr-code.ts), read back by an independent decoder (jsQR).
import { describe, expect, it } from 'vitest';
import jsQR from 'jsqr';
import { Coordinator, type CoordinatorSnapshot } from '../../src/fed/coordinator.ts';
import { workshopConfig } from '../../src/fed/workshop-host.ts';
import { workshopJoinLink } from '../../src/fed/workshop-link.ts';
import { perSiteSeries, rosterRows } from '../../src/fed/host-roster.ts';
import { qrModules } from '../../src/ui/qr-code.ts';

const config = workshopConfig('wk7', { method: 'ffe', rounds: 4, itersPerRound: 9 });
const sites = [
  { siteId: 's1', siteName: 'laptop-a', numCases: 4, fingerprint: {}, spec: [] },
  { siteId: 's2', siteName: 'laptop-b', numCases: 3 },
];
const roster = [
  { siteId: 's1', siteName: 'laptop-a', connected: true },
  { siteId: 's2', siteName: 'laptop-b', connected: false },
];
const snap = (over: Partial<CoordinatorSnapshot>): CoordinatorSnapshot => ({
  config,
  phase: 'join',
  round: 0,
  sites,
  history: [],
  ...over,
});

describe('host roster', () => {
  it('each site: its step as the host knows it, and how far it is', () => {
    const at = (phase: CoordinatorSnapshot['phase'], round = 0, reported: string[] = []) =>
      rosterRows(
        snap({ phase, round }),
        roster,
        phase === 'rounds' ? { round: round + 1, reported } : undefined,
      ).map((r) => [r.siteName, r.phase, r.progress]);
    expect(at('join')).toEqual([
      ['laptop-a', 'joined, waiting for the start', 0],
      ['laptop-b', 'joined, waiting for the start (disconnected)', 0],
    ]);
    expect(at('fingerprint')).toEqual([
      ['laptop-a', 'fingerprint received', 0],
      ['laptop-b', 'fingerprinting (disconnected)', 0],
    ]);
    expect(at('spec')).toEqual([
      ['laptop-a', 'planned, waiting for the others', 0],
      ['laptop-b', 'planning and preprocessing (disconnected)', 0],
    ]);
    expect(at('rounds', 1, ['s1'])).toEqual([
      ['laptop-a', 'round 2 of 4 uploaded', 0.5],
      ['laptop-b', 'training round 2 of 4 (disconnected)', 0.25],
    ]);
    expect(at('done', 4)).toEqual([
      ['laptop-a', 'finished', 1],
      ['laptop-b', 'finished', 1],
    ]);
  });

  it('reads the open round from a live coordinator', () => {
    const c = new Coordinator({ config }, snap({ phase: 'done', round: 4 }));
    expect(c.openRoundView).toBeUndefined();
    expect(rosterRows(c.snapshot, roster, c.openRoundView)[0].progress).toBe(1);
  });

  it("every site's metric per closed round (round 0, the initial model, has none)", () => {
    const history = [0, 1, 2].map((round) => ({
      round,
      contributors: [],
      rejected: [],
      closedBy: 'all' as const,
      metrics:
        round === 0
          ? {}
          : { s1: { loss: 1 / round }, ...(round === 2 ? {} : { s2: { loss: 2 / round } }) },
    }));
    expect(perSiteSeries(snap({ history }), 'loss')).toEqual([
      {
        siteId: 's1',
        siteName: 'laptop-a',
        points: [
          [1, 1],
          [2, 0.5],
        ],
      },
      { siteId: 's2', siteName: 'laptop-b', points: [[1, 2]] },
    ]);
  });
});

describe('join link QR code', () => {
  it('decodes (jsQR) to exactly the join link', () => {
    const link = workshopJoinLink(
      'https://192.168.1.20:8080/',
      'wk7x2q',
      'ab12:cd34:ef56:7890:ab12:cd34:ef56:7890',
      true,
    );
    const m = qrModules(link);
    const scale = 4;
    const n = m.length * scale;
    const rgba = new Uint8ClampedArray(n * n * 4);
    for (let y = 0; y < n; y++)
      for (let x = 0; x < n; x++) {
        const v = m[Math.floor(y / scale)][Math.floor(x / scale)] ? 0 : 255;
        rgba.set([v, v, v, 255], (y * n + x) * 4);
      }
    expect(jsQR(rgba, n, n)?.data).toBe(link);
  });
});
