// The join link's stepper (src/ui/join-steps.ts): where a participant is and what is missing.
import { describe, expect, it } from 'vitest';
import { isLabelled, joinSteps } from '../../src/ui/join-steps.ts';

const states = (f: Parameters<typeof joinSteps>[0]) =>
  joinSteps(f).map((s) => `${s.n} ${s.title}: ${s.state} (${s.hint})`);

describe('join steps', () => {
  it('a fresh browser: data first, everything else waits', () => {
    expect(states({ datasets: 0, step: 'idle', progress: 0 })).toEqual([
      '1 Data: current (import a labelled dataset, or use demo data)',
      '2 Join: todo (needs data first)',
      '3 Train: todo (starts when the federation does)',
      '4 Predict: todo (after training)',
    ]);
  });

  it('data in, then joined and training, then finished', () => {
    expect(states({ datasets: 1, step: 'idle', progress: 0 }).slice(0, 2)).toEqual([
      '1 Data: done (a labelled dataset ready)',
      '2 Join: current (check the site name, then Join)',
    ]);
    expect(states({ datasets: 2, step: 'training', progress: 0.5 })).toEqual([
      '1 Data: done (2 labelled datasets ready)',
      '2 Join: done (joined)',
      '3 Train: current (50 % of the rounds)',
      '4 Predict: todo (after training)',
    ]);
    expect(states({ datasets: 1, step: 'done', progress: 1 }).slice(2)).toEqual([
      '3 Train: done (finished)',
      "4 Predict: current (segment a scan with the federation's model)",
    ]);
  });

  it('after a reload, a federation model in this browser keeps Join and Train done', () => {
    expect(states({ datasets: 1, step: 'idle', progress: 0, federatedModels: 1 })).toEqual([
      '1 Data: done (a labelled dataset ready)',
      '2 Join: done (joined)',
      '3 Train: done (a federation model is in this browser)',
      "4 Predict: current (segment a scan with the federation's model)",
    ]);
    // A new federation under way is the current step again.
    expect(
      joinSteps({ datasets: 1, step: 'training', progress: 0.2, federatedModels: 1 }).find(
        (s) => s.state === 'current',
      )?.id,
    ).toBe('train');
  });

  it('a federation that stopped sends the participant back to Join', () => {
    const s = joinSteps({ datasets: 1, step: 'failed', progress: 0.3 });
    expect(s.find((x) => x.state === 'current')?.id).toBe('join');
    expect(s[1].hint).toBe('stopped: see the Join step, then join again');
  });

  it('only datasets with a label besides background on every case can train', () => {
    const c = (hasLabel: boolean) => ({ hasLabel });
    expect(isLabelled({ labels: { background: 0, tumour: 1 }, cases: [c(true), c(true)] })).toBe(
      true,
    );
    expect(isLabelled({ labels: { background: 0, tumour: 1 }, cases: [c(true), c(false)] })).toBe(
      false,
    );
    expect(isLabelled({ labels: { background: 0 }, cases: [c(true)] })).toBe(false);
  });
});
