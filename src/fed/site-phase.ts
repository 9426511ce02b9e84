// Where a site of a federation is, in words a participant understands ("preprocessing case 3 of
// 10", "training round 2 of 3, iteration 4 of 5", "waiting for the other sites"), how far it is
// (0..1) and the time left. A pure reducer over the events the site pipeline already produces (the
// client's messages in and out, the trainer's iterations, the pipeline's case progress), so it is
// unit-tested in Node and the page only renders it.
import { formatLeft } from './round-progress.ts';

export type SiteStep =
  | 'idle'
  | 'connecting'
  | 'waiting-sites'
  | 'fingerprinting'
  | 'waiting-fingerprints'
  | 'planning'
  | 'preprocessing'
  | 'waiting-plans'
  | 'training'
  | 'uploading'
  | 'waiting-others'
  | 'finishing'
  | 'done'
  | 'failed';

/** What happened at the site (the worker forwards these as they happen). */
export type SitePhaseEvent =
  | { type: 'connecting' }
  /** The relay's or host's welcome: the federation's phase and its size. */
  | { type: 'welcome'; phase: string; round: number; rounds: number; iters: number }
  | { type: 'fingerprinting'; done?: number; total?: number }
  | { type: 'planning' }
  | { type: 'preprocessing'; done: number; total: number }
  /** A training iteration of `round` finished (`iteration` counts from 1); 0 = the round began. */
  | { type: 'iteration'; round: number; iteration: number; iterations: number }
  /** Local training (and validation) of `round` finished. */
  | { type: 'trained'; round: number }
  /** A message left for the relay/host. */
  | { type: 'sent'; message: string; round?: number }
  /** The final global model arrived (evaluating and saving it here). */
  | { type: 'final' }
  | { type: 'done' }
  | { type: 'failed'; reason: string };

export interface SitePhase {
  step: SiteStep;
  /** The federation's rounds and iterations per round, once a welcome said them. */
  rounds: number;
  iters: number;
  /** The round being trained or last trained (0 before the first). */
  round: number;
  /** Iterations of `round` done. */
  iteration: number;
  /** Case progress of fingerprinting/preprocessing. */
  cases?: { done: number; total: number };
  /** Times (ms, the caller's clock) at which each round's training ended, by round. */
  trainedAt: Record<number, number>;
  /** When the current round's training began, and its first iterations' pace (ms per iteration). */
  roundStartedAt?: number;
  msPerIteration?: number;
  reason?: string;
}

export const initialPhase = (): SitePhase => ({
  step: 'idle',
  rounds: 0,
  iters: 0,
  round: 0,
  iteration: 0,
  trainedAt: {},
});

const UPLOADS = new Set(['update', 'secagg-masked']);

/** The state after `e`, seen at time `now` (ms). Never mutates `s`. */
export function reducePhase(s: SitePhase, e: SitePhaseEvent, now: number): SitePhase {
  // Finished or failed is final, whatever arrives late.
  if (s.step === 'done' || (s.step === 'failed' && e.type !== 'connecting')) return s;
  switch (e.type) {
    case 'connecting':
      return { ...initialPhase(), step: 'connecting' };
    case 'welcome': {
      const base = { ...s, rounds: e.rounds, iters: e.iters };
      if (e.phase === 'join') return { ...base, step: 'waiting-sites' };
      // A rejoin past planning: the rounds done so far count as done.
      if ((e.phase === 'rounds' || e.phase === 'init') && s.step === 'connecting')
        return { ...base, step: 'waiting-others', round: e.round };
      return base;
    }
    case 'fingerprinting':
      return {
        ...s,
        step: 'fingerprinting',
        cases: e.total ? { done: e.done ?? 0, total: e.total } : s.cases,
      };
    case 'planning':
      return { ...s, step: 'planning', cases: undefined };
    case 'preprocessing':
      return { ...s, step: 'preprocessing', cases: { done: e.done, total: e.total } };
    case 'iteration': {
      const roundStartedAt =
        e.iteration === 0 || s.round !== e.round ? now : (s.roundStartedAt ?? now);
      const msPerIteration =
        e.iteration > 0 ? (now - roundStartedAt) / e.iteration : s.msPerIteration;
      return {
        ...s,
        step: 'training',
        round: e.round,
        iteration: e.iteration,
        iters: e.iterations || s.iters,
        cases: undefined,
        roundStartedAt,
        msPerIteration,
      };
    }
    case 'trained':
      return {
        ...s,
        step: 'uploading',
        round: e.round,
        iteration: s.iters || s.iteration,
        trainedAt: { ...s.trainedAt, [e.round]: now },
      };
    case 'sent':
      if (e.message === 'fingerprint')
        return { ...s, step: 'waiting-fingerprints', cases: undefined };
      if (e.message === 'spec') return { ...s, step: 'waiting-plans', cases: undefined };
      // Round 0's upload is the initial model (no training): the sites wait for round 1.
      if (UPLOADS.has(e.message))
        return { ...s, step: 'waiting-others', round: e.round ?? s.round };
      return s;
    case 'final':
      return { ...s, step: 'finishing', round: s.rounds || s.round, iteration: s.iters };
    case 'done':
      return { ...s, step: 'done', round: s.rounds || s.round };
    case 'failed':
      return { ...s, step: 'failed', reason: e.reason };
  }
}

/** Rounds whose training this site finished (a finished round counts even before its upload). */
function roundsTrained(s: SitePhase): number {
  if (s.step === 'training') return Math.max(0, s.round - 1);
  return s.round;
}

/** How far the federation is for this site, 0..1: the rounds, each by its iterations. */
export function phaseProgress(s: SitePhase): number {
  if (s.step === 'done' || s.step === 'finishing') return 1;
  if (!s.rounds) return 0;
  const inRound = s.step === 'training' && s.iters ? s.iteration / s.iters : 0;
  return Math.min(1, (roundsTrained(s) + inRound) / s.rounds);
}

/**
 * Seconds left, or undefined while nothing has been measured. After two trained rounds, a round
 * lasts from one training end to the next (training, upload, the others, aggregation); before,
 * only this site's pace per iteration is known, which leaves out the waiting (an underestimate).
 */
export function phaseSecondsLeft(s: SitePhase, now: number): number | undefined {
  if (s.step === 'done' || s.step === 'finishing') return 0;
  if (!s.rounds || !s.iters) return undefined;
  const ends = Object.keys(s.trainedAt)
    .map(Number)
    .sort((a, b) => a - b);
  const roundsLeft = s.rounds - roundsTrained(s);
  if (ends.length >= 2) {
    const spans: number[] = [];
    for (let i = 1; i < ends.length; i++)
      spans.push((s.trainedAt[ends[i]] - s.trainedAt[ends[i - 1]]) / (ends[i] - ends[i - 1]));
    const recent = spans.slice(-3);
    const per = recent.reduce((a, b) => a + b, 0) / recent.length;
    const last = s.trainedAt[ends[ends.length - 1]];
    // The time since the last round ended is already spent of the next one.
    const intoNext = Math.min(per, Math.max(0, now - last));
    return Math.max(0, (per * roundsLeft - intoNext) / 1000);
  }
  if (s.msPerIteration === undefined) return undefined;
  const itersLeft = roundsLeft * s.iters - (s.step === 'training' ? s.iteration : 0);
  return Math.max(0, (itersLeft * s.msPerIteration) / 1000);
}

const ofRounds = (s: SitePhase, r: number) => `round ${r}${s.rounds ? ` of ${s.rounds}` : ''}`;

/** The phase line: what this site is doing now, in words. */
export function phaseText(s: SitePhase): string {
  const cases = s.cases ? ` (case ${s.cases.done} of ${s.cases.total})` : '';
  switch (s.step) {
    case 'idle':
      return 'Not in a federation.';
    case 'connecting':
      return 'Connecting to the federation…';
    case 'waiting-sites':
      return 'Joined: waiting for the other sites (the federation starts when the host says so).';
    case 'fingerprinting':
      return `Fingerprinting the local dataset${cases}.`;
    case 'waiting-fingerprints':
      return "Fingerprint sent: waiting for the other sites' fingerprints.";
    case 'planning':
      return 'Planning the network.';
    case 'preprocessing':
      return `Preprocessing${s.cases ? ` case ${s.cases.done} of ${s.cases.total}` : ''}.`;
    case 'waiting-plans':
      return 'Network planned: waiting for the other sites to plan theirs.';
    case 'training':
      return `Training ${ofRounds(s, s.round)}, iteration ${s.iteration} of ${s.iters}.`;
    case 'uploading':
      return `${capital(ofRounds(s, s.round))} trained: uploading the weight change.`;
    case 'waiting-others':
      return s.round === 0
        ? 'Initial model sent: waiting for the other sites.'
        : `${capital(ofRounds(s, s.round))} sent: waiting for the other sites.`;
    case 'finishing':
      return 'Final model received: evaluating and saving it.';
    case 'done':
      return `Finished: ${s.rounds || s.round} rounds.`;
    case 'failed':
      return `Stopped: ${s.reason ?? 'unknown reason'}.`;
  }
}

const capital = (t: string) => t.charAt(0).toUpperCase() + t.slice(1);

/** The line under the progress bar: "40 % · about 1 min 5 s left". */
export function progressText(s: SitePhase, now: number): string {
  const pct = `${Math.round(phaseProgress(s) * 100)} %`;
  const left = phaseSecondsLeft(s, now);
  return left === undefined || left === 0 ? pct : `${pct} · ${formatLeft(left)}`;
}
