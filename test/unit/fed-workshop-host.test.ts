// The workshop host's config and what its tab shows (src/fed/workshop-host.ts); the hosting over
// PeerJS itself is covered by test/browser/workshop.test.ts.
import { describe, expect, it } from 'vitest';
import { Coordinator, type CoordinatorSnapshot } from '../../src/fed/coordinator.ts';
import { workshopConfig, workshopStatus } from '../../src/fed/workshop-host.ts';

const config = workshopConfig('wk7', { method: 'asym', rounds: 4, itersPerRound: 9 });

describe('workshop host', () => {
  it('config: the chosen method, rounds and iterations; the code is the join token', () => {
    expect(config).toEqual({
      method: 'asym',
      configuration: '3d_fullres',
      rounds: 4,
      itersPerRound: 9,
      minSites: 1,
      roundDeadlineMs: 3_600_000,
      weighting: 'uniform',
      encoding: 'fp16',
      expectedSites: 1000,
      token: 'wk7',
    });
  });

  it('status: nobody joined yet, then mid-federation with the roster', () => {
    const empty = workshopStatus(new Coordinator({ config }));
    expect(empty).toMatchObject({
      roster: [],
      canStart: false,
      text: '0 site(s) joined; start when everyone is in.',
      phase: 'join',
      round: 0,
      securePhase: '',
      epsilon: '',
    });
    const snap: CoordinatorSnapshot = {
      config,
      phase: 'rounds',
      round: 2,
      sites: [
        {
          siteId: 's1',
          siteName: 'laptop-a',
          numCases: 4,
          key: { fingerprint: 'ab:cd', spki: 'MFkw' },
        },
        { siteId: 's2', siteName: 'laptop-b', numCases: 0 },
      ],
      history: [],
    };
    const mid = workshopStatus(new Coordinator({ config }, snap));
    expect(mid.canStart).toBe(false);
    expect(mid.text).toBe('phase rounds, round 2 of 4 completed');
    expect(mid.roster).toEqual([
      {
        siteName: 'laptop-a',
        connected: false,
        fingerprint: 'ab:cd',
        text: 'laptop-a — 4 cases (disconnected) — key ab:cd',
      },
      {
        siteName: 'laptop-b',
        connected: false,
        fingerprint: '',
        text: 'laptop-b — case count not shared (disconnected)',
      },
    ]);
  });
});
