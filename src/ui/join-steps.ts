// The steps a participant takes from a join link (1 Data → 2 Join → 3 Train → 4 Predict): which
// are done, which is current, and what each still needs, in words. Pure (no DOM), so the app
// shell only renders it and Node tests it.
import type { SiteStep } from '../fed/site-phase.ts';

export type StepId = 'data' | 'join' | 'train' | 'predict';

export interface FlowFacts {
  /** Labelled datasets in this browser (a federation trains only on labelled data). */
  datasets: number;
  /** Where this browser's site is in a federation (site-phase.ts). */
  step: SiteStep;
  /** 0..1 of the federation's rounds. */
  progress: number;
  /** Models a federation left in this browser (a reload after the end keeps the steps done). */
  federatedModels?: number;
}

export interface StepView {
  id: StepId;
  n: number;
  title: string;
  /** The app tab the step opens. */
  tab: 'data' | 'federation' | 'predict';
  state: 'done' | 'current' | 'todo';
  /** What the step has, or what it still needs. */
  hint: string;
}

const JOINED: ReadonlySet<SiteStep> = new Set([
  'connecting',
  'waiting-sites',
  'fingerprinting',
  'waiting-fingerprints',
  'planning',
  'preprocessing',
  'waiting-plans',
  'training',
  'uploading',
  'waiting-others',
  'finishing',
  'done',
]);

/** Whether a dataset can train: a label besides background, and a label for every case. */
export function isLabelled(d: {
  labels: Record<string, unknown>;
  cases: ReadonlyArray<{ hasLabel: boolean }>;
}): boolean {
  return Object.keys(d.labels).length > 1 && d.cases.every((c) => c.hasLabel);
}

export function joinSteps(f: FlowFacts): StepView[] {
  const running = JOINED.has(f.step) && f.step !== 'done';
  const earlier = (f.federatedModels ?? 0) > 0 && !running;
  const joined = JOINED.has(f.step) || earlier;
  const finished = f.step === 'done' || earlier;
  const pct = `${Math.round(f.progress * 100)} %`;
  const done: Record<StepId, boolean> = {
    data: f.datasets > 0,
    join: joined,
    train: finished,
    predict: false,
  };
  const hints: Record<StepId, string> = {
    data: f.datasets
      ? `${f.datasets === 1 ? 'a labelled dataset' : `${f.datasets} labelled datasets`} ready`
      : 'import a labelled dataset, or use demo data',
    join: joined
      ? 'joined'
      : f.step === 'failed'
        ? 'stopped: see the Join step, then join again'
        : f.datasets
          ? 'check the site name, then Join'
          : 'needs data first',
    train: finished
      ? f.step === 'done'
        ? 'finished'
        : 'a federation model is in this browser'
      : joined
        ? `${pct} of the rounds`
        : 'starts when the federation does',
    predict: finished ? "segment a scan with the federation's model" : 'after training',
  };
  const order: Array<[StepId, string, StepView['tab']]> = [
    ['data', 'Data', 'data'],
    ['join', 'Join', 'federation'],
    ['train', 'Train', 'federation'],
    ['predict', 'Predict', 'predict'],
  ];
  const current = order.find(([id]) => !done[id])?.[0] ?? 'predict';
  return order.map(([id, title, tab], i) => ({
    id,
    n: i + 1,
    title,
    tab,
    state: done[id] ? 'done' : id === current ? 'current' : 'todo',
    hint: hints[id],
  }));
}
