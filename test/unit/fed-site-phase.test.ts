// The phase line of a federation site (src/fed/site-phase.ts): the events of a whole run, in the
// order a site sees them, give the steps a participant reads, the progress and the time left.
import { describe, expect, it } from 'vitest';
import {
  initialPhase,
  phaseProgress,
  phaseSecondsLeft,
  phaseText,
  progressText,
  reducePhase,
  type SitePhase,
  type SitePhaseEvent,
} from '../../src/fed/site-phase.ts';

/** Folds timed events; returns every state on the way. */
function run(events: Array<[number, SitePhaseEvent]>): SitePhase[] {
  const out: SitePhase[] = [];
  let s = initialPhase();
  for (const [t, e] of events) out.push((s = reducePhase(s, e, t)));
  return out;
}

describe('site phase', () => {
  it('walks a whole FFE run: setup, rounds with iterations, upload, waiting, done', () => {
    const events: Array<[number, SitePhaseEvent]> = [
      [0, { type: 'connecting' }],
      [100, { type: 'welcome', phase: 'join', round: 0, rounds: 2, iters: 4 }],
      [200, { type: 'fingerprinting', done: 1, total: 3 }],
      [300, { type: 'sent', message: 'fingerprint' }],
      [400, { type: 'planning' }],
      [500, { type: 'preprocessing', done: 2, total: 3 }],
      [600, { type: 'sent', message: 'spec' }],
      [700, { type: 'sent', message: 'update', round: 0 }],
      [1_000, { type: 'iteration', round: 1, iteration: 0, iterations: 4 }],
      [3_000, { type: 'iteration', round: 1, iteration: 2, iterations: 4 }],
      [5_000, { type: 'trained', round: 1 }],
      [5_100, { type: 'sent', message: 'update', round: 1 }],
      [9_000, { type: 'iteration', round: 2, iteration: 0, iterations: 4 }],
      [10_000, { type: 'iteration', round: 2, iteration: 1, iterations: 4 }],
      [13_000, { type: 'trained', round: 2 }],
      [13_100, { type: 'sent', message: 'update', round: 2 }],
      [14_000, { type: 'final' }],
      [15_000, { type: 'done' }],
    ];
    const states = run(events);
    expect(states.map(phaseText)).toEqual([
      'Connecting to the federation…',
      'Joined: waiting for the other sites (the federation starts when the host says so).',
      'Fingerprinting the local dataset (case 1 of 3).',
      "Fingerprint sent: waiting for the other sites' fingerprints.",
      'Planning the network.',
      'Preprocessing case 2 of 3.',
      'Network planned: waiting for the other sites to plan theirs.',
      'Initial model sent: waiting for the other sites.',
      'Training round 1 of 2, iteration 0 of 4.',
      'Training round 1 of 2, iteration 2 of 4.',
      'Round 1 of 2 trained: uploading the weight change.',
      'Round 1 of 2 sent: waiting for the other sites.',
      'Training round 2 of 2, iteration 0 of 4.',
      'Training round 2 of 2, iteration 1 of 4.',
      'Round 2 of 2 trained: uploading the weight change.',
      'Round 2 of 2 sent: waiting for the other sites.',
      'Final model received: evaluating and saving it.',
      'Finished: 2 rounds.',
    ]);
    expect(states.map(phaseProgress)).toEqual([
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0.25, 0.5, 0.5, 0.5, 0.625, 1, 1, 1, 1,
    ]);
    // The progress never goes back.
    const p = states.map(phaseProgress);
    expect(p.every((x, i) => i === 0 || x >= p[i - 1])).toBe(true);
  });

  it('estimates the time left from the pace per iteration, then from whole rounds', () => {
    const [, , , , training2of4] = run([
      [0, { type: 'connecting' }],
      [0, { type: 'welcome', phase: 'join', round: 0, rounds: 3, iters: 4 }],
      [1_000, { type: 'iteration', round: 1, iteration: 0, iterations: 4 }],
      [2_000, { type: 'iteration', round: 1, iteration: 1, iterations: 4 }],
      [5_000, { type: 'iteration', round: 1, iteration: 2, iterations: 4 }],
    ]);
    expect(phaseSecondsLeft(initialPhase(), 0)).toBeUndefined();
    // 2 s per iteration so far, 2 left in round 1 and 4 in each of rounds 2 and 3: 10 iterations.
    expect(phaseSecondsLeft(training2of4, 5_000)).toBe(20);
    expect(progressText(training2of4, 5_000)).toBe('17 % · about 20 s left');
    const states = run([
      [0, { type: 'welcome', phase: 'join', round: 0, rounds: 4, iters: 4 }],
      [1_000, { type: 'iteration', round: 1, iteration: 0, iterations: 4 }],
      [9_000, { type: 'trained', round: 1 }],
      [10_000, { type: 'iteration', round: 2, iteration: 0, iterations: 4 }],
      [19_000, { type: 'trained', round: 2 }],
      [20_000, { type: 'sent', message: 'update', round: 2 }],
    ]);
    const after2 = states[states.length - 1];
    // A round takes 10 s end to end (training end to training end); 2 rounds left, 1 s of the
    // next already spent.
    expect(phaseSecondsLeft(after2, 20_000)).toBe(19);
    expect(phaseSecondsLeft(reducePhase(after2, { type: 'done' }, 30_000), 30_000)).toBe(0);
  });

  it('a rejoin past planning starts from the rounds the federation has done', () => {
    const [, s] = run([
      [0, { type: 'connecting' }],
      [10, { type: 'welcome', phase: 'rounds', round: 2, rounds: 3, iters: 5 }],
    ]);
    expect(phaseText(s)).toBe('Round 2 of 3 sent: waiting for the other sites.');
    expect(phaseProgress(s)).toBeCloseTo(2 / 3);
  });

  it('secure rounds upload a masked vector; a failure is final until the next connect', () => {
    let s = run([
      [0, { type: 'welcome', phase: 'join', round: 0, rounds: 2, iters: 2 }],
      [1, { type: 'trained', round: 1 }],
      [2, { type: 'sent', message: 'secagg-advert', round: 1 }],
    ]).pop()!;
    expect(s.step).toBe('uploading');
    s = reducePhase(s, { type: 'sent', message: 'secagg-masked', round: 1 }, 3);
    expect(s.step).toBe('waiting-others');
    s = reducePhase(s, { type: 'failed', reason: 'the relay refused this site: bad token' }, 4);
    expect(phaseText(s)).toBe('Stopped: the relay refused this site: bad token.');
    expect(reducePhase(s, { type: 'trained', round: 2 }, 5)).toBe(s);
    expect(reducePhase(s, { type: 'connecting' }, 6).step).toBe('connecting');
  });
});
