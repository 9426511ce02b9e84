// The relay's side of secure aggregation across a federation (docs/secure-aggregation.md): the
// fingerprint phase and every round run as secure rounds (round.ts), so the relay only ever
// unmasks sums; plain fingerprints and plain updates are refused (the initial model, an
// untrained network, is the one plain upload). A failed attempt is retried with fresh keys up
// to SECURE_ATTEMPTS times; then the federation ends on the last good global model.
import type { OpenRound, Outgoing, SecaggMessage } from '../round-types.ts';
import type { AggregatorHost, RoundAggregator } from '../round-aggregator.ts';
import { checkUnmaskedSum, SecureRound, type SecurePhase, type SecureStep } from './round.ts';
import { noiseDivisor, vectorLength } from './vector.ts';
import { decodeSummarySum, ffeLayout } from './ffe-vector.ts';
import { epsilonOfRounds } from './dp.ts';
import { toB64 } from './wire.ts';
import { fingerprintFromSummary } from '../../fingerprint/ffe.ts';
import { errorMessage } from '../../util/errors.ts';

/** Attempts of one secure round (fresh keys each) before the federation gives up. */
export const SECURE_ATTEMPTS = 3;

/** The open secure attempt, for a status line. */
export interface SecureStatus {
  round: number;
  attempt: number;
  kind: 'model' | 'fingerprint';
  phase: SecurePhase;
  participants: number;
}

export class SecureAggregator implements RoundAggregator {
  readonly refusesPlain = 'this federation uses secure aggregation';
  /** The open secure attempt (fingerprint phase or the open round), if any. */
  private secure?: SecureRound;
  private secureAttempts = 0;
  private secureFailures: string[] = [];

  constructor(private readonly host: AggregatorHost) {}

  /** The secure attempt under way (FFE or the open round), if any. */
  get status(): SecureStatus | undefined {
    const r = this.secure;
    return (
      r && {
        round: r.round,
        attempt: r.attempt,
        kind: r.kind,
        phase: r.phase,
        participants: r.participants.length,
      }
    );
  }

  started(): Outgoing[] {
    return this.maybeOpenSecureFfe();
  }

  rejoinedFingerprint(): Outgoing[] {
    return this.maybeOpenSecureFfe();
  }

  open(_o: OpenRound): Outgoing[] {
    this.secureAttempts = 0;
    this.secureFailures = [];
    return this.openSecureAttempt();
  }

  rejoined(): Outgoing[] {
    // A secure round waiting for enough sites opens its next attempt; one under way cannot
    // take a newcomer (its keys are exchanged), which joins from the next round.
    return this.secure ? [] : this.openSecureAttempt();
  }

  handle(siteId: string, message: SecaggMessage, payload: Uint8Array): Outgoing[] {
    if (!this.secure) {
      this.host.log(`ignored ${message.type} from ${siteId}: no secure round is open`);
      return [];
    }
    return this.secureStep(this.secure.handle(siteId, message, payload));
  }

  dropped(siteId: string): Outgoing[] {
    return this.secure ? this.secureStep(this.secure.dropped(siteId)) : [];
  }

  tick(): Outgoing[] {
    return this.secure ? this.secureStep(this.secure.tick()) : [];
  }

  /** Fewest masked vectors a secure model round may close with. */
  private secureQuorum(): number {
    return noiseDivisor(this.host.config());
  }

  private newSecureRound(
    kind: 'model' | 'fingerprint',
    round: number,
    participants: string[],
    length: number,
    maskedDeadline: number,
    minMasked: number,
  ): SecureRound {
    const p = this.host.config().privacy!;
    this.secureAttempts++;
    const salt = toB64(globalThis.crypto.getRandomValues(new Uint8Array(16)));
    return new SecureRound({
      open: {
        round,
        attempt: this.secureAttempts,
        kind,
        salt,
        participants,
        threshold: p.threshold,
        length,
      },
      now: () => this.host.now(),
      phaseMs: p.phaseDeadlineMs,
      maskedDeadline,
      minMasked,
      log: (l) => this.host.log(l),
    });
  }

  /** FFE under secure aggregation: one secure sum of every site's summary, once all are connected. */
  private maybeOpenSecureFfe(): Outgoing[] {
    const p = this.host.config().privacy;
    if (
      !p ||
      this.host.phase() !== 'fingerprint' ||
      this.secure ||
      this.secureAttempts >= SECURE_ATTEMPTS
    )
      return [];
    const sites = this.host.siteIds();
    if (!sites.every((id) => this.host.isConnected(id))) return [];
    const layout = ffeLayout(p.ffeCells, p.ffeChannels);
    // Sites fingerprint their data before uploading: the round deadline applies, as for training.
    this.secure = this.newSecureRound(
      'fingerprint',
      0,
      sites,
      layout.length,
      this.host.now() + this.host.config().roundDeadlineMs,
      sites.length,
    );
    this.host.log(
      `FFE: secure sum of ${sites.length} fingerprint summaries (attempt ${this.secureAttempts})`,
    );
    return this.secure.start();
  }

  /** The open round's next attempt, with the connected sites, if there are enough of them. */
  private openSecureAttempt(): Outgoing[] {
    const o = this.host.openRound()!;
    const need = this.secureQuorum();
    const present = this.host.siteIds().filter((id) => this.host.isConnected(id));
    if (present.length < need) {
      this.host.log(
        `round ${o.round}: waiting for ${need} connected sites to start a secure round (${present.length} now)`,
      );
      return [];
    }
    o.deadline = this.host.now() + this.host.config().roundDeadlineMs;
    this.secure = this.newSecureRound(
      'model',
      o.round,
      present,
      vectorLength(this.host.shared()),
      o.deadline,
      need,
    );
    return [...present.map((id) => this.host.roundMessage(id)), ...this.secure.start()];
  }

  /** Routes a secure step: its messages now; its failure or its (asynchronous) result. */
  private secureStep(step: SecureStep): Outgoing[] {
    const sr = this.secure!;
    if (step.failed) return [...step.out, ...this.secureFailed(sr, step.failed)];
    if (step.result) {
      const { u3, sum } = step.result;
      this.host.track(() =>
        sum
          .then(
            (s) => {
              // Whatever goes wrong with the sum fails this attempt (round-failed, retry), never the relay.
              let out: Outgoing[];
              try {
                out = this.secureDone(sr, u3, s);
              } catch (e) {
                out = this.secureFailed(sr, `the unmasked sum was refused: ${errorMessage(e)}`);
              }
              this.host.emit(out);
            },
            (e) => this.host.emit(this.secureFailed(sr, `unmasking failed: ${errorMessage(e)}`)),
          )
          .catch((e) => this.host.log(`secure round: ${e instanceof Error ? e.stack : String(e)}`)),
      );
    }
    return step.out;
  }

  private secureFailed(sr: SecureRound, reason: string): Outgoing[] {
    if (this.secure !== sr) return [];
    this.secure = undefined;
    this.secureFailures.push(`attempt ${sr.attempt}: ${reason}`);
    const retry = this.secureAttempts < SECURE_ATTEMPTS;
    const told = (why: string): Outgoing[] =>
      sr.participants
        .filter((id) => this.host.isConnected(id))
        .map((to) => ({
          to,
          message: {
            type: 'round-failed',
            round: sr.round,
            attempt: sr.attempt,
            reason: why,
            retry,
          },
        }));
    if (this.host.phase() === 'fingerprint') {
      const why = `secure FFE failed: ${reason}`;
      if (retry) return [...told(why), ...this.maybeOpenSecureFfe()];
      return this.host.failAll(`${why}; gave up after ${SECURE_ATTEMPTS} attempts`);
    }
    const o = this.host.openRound();
    if (!o || this.host.phase() !== 'rounds') return [];
    const done = this.host.completedRounds();
    const kept = done === 0 ? 'the initial model' : `the global model of round ${done}`;
    const why = `round ${o.round} failed: ${reason}; ${kept} is kept`;
    this.host.log(why);
    if (retry) return [...told(why), ...this.openSecureAttempt()];
    // Out of attempts: the federation ends on the last good global model.
    o.record.secure = { attempts: this.secureAttempts, failures: this.secureFailures };
    this.host.log(
      `secure aggregation failed ${SECURE_ATTEMPTS} times in round ${o.round}; the federation ends after round ${done}`,
    );
    return this.host.endOnLastGlobal(
      o,
      told(`${why}; the federation ends after ${SECURE_ATTEMPTS} failed attempts`),
    );
  }

  /** A checked sum closes the attempt; one that fails its checks throws (the caller fails the attempt, with retry). */
  private secureDone(sr: SecureRound, u3: string[], sum: Uint32Array): Outgoing[] {
    if (this.secure !== sr) return [];
    const config = this.host.config();
    const p = config.privacy!;
    if (this.host.phase() === 'fingerprint') {
      const merged = fingerprintFromSummary(
        decodeSummarySum(sum, ffeLayout(p.ffeCells, p.ffeChannels)),
      );
      this.secure = undefined;
      this.host.log(`FFE: securely summed ${u3.length} fingerprint summaries`);
      return this.host.fingerprintMerged(merged as unknown as Record<string, unknown>);
    }
    const o = this.host.openRound();
    if (!o || o.round !== sr.round) {
      this.secure = undefined;
      return [];
    }
    const { mean, totalWeight } = checkUnmaskedSum(
      sum,
      this.host.shared(),
      p,
      config.weighting,
      u3.length,
      noiseDivisor(config),
    );
    this.secure = undefined;
    o.record.contributors = u3;
    o.record.closedBy = u3.length === sr.participants.length ? 'all' : 'deadline';
    o.record.secure = { attempts: this.secureAttempts, failures: this.secureFailures };
    const before: Outgoing[] = [];
    if (p.dp) {
      // Each site added variance σ²C²/m; |U3| ≥ m of them make the round's multiplier σ·√(|U3|/m).
      const sigma = p.dp.noiseMultiplier * Math.sqrt(u3.length / noiseDivisor(config));
      const sigmas = [
        ...this.host
          .history()
          .map((h) => h.privacy?.noiseMultiplier)
          .filter((x): x is number => x !== undefined),
        sigma,
      ];
      const epsilon = epsilonOfRounds(sigmas, p.dp.delta).epsilon;
      o.record.privacy = { noiseMultiplier: sigma, epsilon };
      this.host.log(
        `round ${o.round}: DP noise multiplier ${sigma.toFixed(4)}, ε spent ${epsilon.toFixed(3)} (δ = ${p.dp.delta})`,
      );
      for (const id of this.host.connectedIds())
        before.push({
          to: id,
          message: {
            type: 'privacy-spent',
            round: o.round,
            epsilon,
            delta: p.dp.delta,
            noiseMultiplier: sigma,
          },
        });
    }
    this.host.log(
      `round ${o.round}: secure sum of ${u3.length} sites, total weight ${totalWeight}`,
    );
    return this.host.closeRound(o, mean, before);
  }
}
