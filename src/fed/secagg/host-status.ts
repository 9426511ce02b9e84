// What a host (the workshop host tab) says about secure aggregation: the phase of the open secure
// round, and the privacy settings with the ε spent so far. Text only; the view shows it.
import type { CoordinatorSnapshot, SecureStatus } from '../coordinator.ts';

const PHASE_TEXT: Record<SecureStatus['phase'], string> = {
  advert: 'sites exchange public keys',
  shares: 'sites exchange sealed key shares',
  masked: 'waiting for the masked updates',
  unmask: 'sites reveal the shares that unmask the sum',
  computing: 'removing the masks from the sum',
  over: 'done',
};

/** "secure round 2, attempt 1: waiting for the masked updates (3 sites)". */
export function secureStatusText(s: SecureStatus): string {
  const what = s.kind === 'fingerprint' ? 'secure FFE' : `secure round ${s.round}`;
  return `${what}${s.attempt > 1 ? `, attempt ${s.attempt}` : ''}: ${PHASE_TEXT[s.phase]} (${s.participants} sites)`;
}

/** The privacy line: asked for (fixed at start), or the fixed settings and the ε spent; '' when plain. */
export function privacyText(s: Readonly<CoordinatorSnapshot>): string {
  if (s.privacyAtStart) {
    const dp =
      s.privacyAtStart.dpEpsilon !== undefined
        ? `, differential privacy at ε = ${s.privacyAtStart.dpEpsilon}`
        : '';
    return `Secure aggregation${dp}: the threshold is fixed at Start, from the sites joined then (a majority by default); no site can join after.`;
  }
  const p = s.config.privacy;
  if (!p) return '';
  const lines = [
    `Secure aggregation: the host sees only sums; threshold ${p.threshold} of ${s.sites.length} sites, clip ${p.clip}.`,
  ];
  if (p.dp) {
    const last = [...s.history].reverse().find((h) => h.privacy);
    lines.push(
      last
        ? `Differential privacy: ε = ${last.privacy!.epsilon.toFixed(2)} spent after round ${last.round} (δ = ${p.dp.delta}; target ε = ${p.dp.epsilon} over ${s.config.rounds} rounds).`
        : `Differential privacy: target ε = ${p.dp.epsilon} over ${s.config.rounds} rounds (δ = ${p.dp.delta}); nothing spent yet.`,
    );
  }
  return lines.join(' ');
}
