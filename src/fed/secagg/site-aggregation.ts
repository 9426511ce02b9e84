// A site's side of secure aggregation across a federation: it never sends a fingerprint or an
// update in the clear. It trains a round while the key exchange runs (site-round.ts), then
// uploads its masked vector; a retried round re-masks the same vector with fresh keys.
import type { NamedWeights } from '../../model/named-weights.ts';
import type { Message } from '../protocol.ts';
import { FederationError } from '../site-types.ts';
import type {
  RoundMessage,
  SiteAggregation,
  SiteAggregationHost,
  SiteSecaggMessage,
} from '../site-aggregation.ts';
import { SecureSiteRound } from './site-round.ts';
import { checkRoundHeadroom, elementBound, encodeSiteVector, noiseDivisor } from './vector.ts';
import { encodeSummary, ffeLayout } from './ffe-vector.ts';
import { cryptoGaussian } from './noise.ts';
import { summarizeFingerprint } from '../../fingerprint/ffe.ts';
import { assertDatasetFingerprint, type DatasetFingerprint } from '../../fingerprint/types.ts';

export class SecureSiteAggregation implements SiteAggregation {
  readonly plainFingerprint = false;
  /** The current attempt, this round's vector (trained once), the FFE vector. */
  private secureRound?: SecureSiteRound;
  private work?: { round: number; vector: Promise<Uint32Array> };
  private ffeVector?: Promise<Uint32Array>;
  private trainingRound = 0;
  /** Training runs outside the message queue; trainer calls chain here. */
  private trainerBusy: Promise<unknown> = Promise.resolve();

  constructor(private readonly host: SiteAggregationHost) {}

  async idle(): Promise<void> {
    await this.trainerBusy.catch(() => undefined);
  }

  /** Trains round m once, outside the message queue, and keeps its vector for every attempt. */
  round(m: RoundMessage, global: NamedWeights): void {
    if (this.work?.round === m.round || this.trainingRound >= m.round) return;
    this.trainingRound = m.round;
    const config = this.host.config();
    const p = config.privacy!;
    const shared = this.host.shared();
    const vector = this.trainerBusy
      .catch(() => undefined)
      .then(async () => {
        const { delta } = await this.host.trainRound(m.round, m.iters, global);
        const divisor = noiseDivisor(config);
        const weight =
          config.weighting === 'cases'
            ? Math.min(p.maxWeight, Math.max(1, this.host.trainer.numCases))
            : 1;
        const noiseStd = p.dp ? (p.dp.noiseMultiplier * p.clip) / Math.sqrt(divisor) : 0;
        const { vector: v, norm } = encodeSiteVector(delta, shared, {
          clip: p.clip,
          fracBits: p.fracBits,
          weight,
          bound: elementBound(p, config.weighting, divisor),
          noiseStd,
          gaussian: cryptoGaussian,
        });
        if (norm > p.clip)
          this.host.log(
            `round ${m.round}: update norm ${norm.toPrecision(4)} clipped to ${p.clip}`,
          );
        return v;
      });
    this.trainerBusy = vector;
    this.work = { round: m.round, vector };
  }

  handle(m: SiteSecaggMessage): Promise<void> | void {
    if (m.type === 'secagg-open') return this.open(m);
    const sr = this.secureRound;
    if (m.type === 'round-failed') {
      if (sr?.matches(m)) sr.cancel();
      return;
    }
    if (!sr || !sr.matches(m)) {
      this.host.log(`ignored a stale ${m.type} (round ${m.round}, attempt ${m.attempt})`);
      return;
    }
    if (m.type === 'secagg-keys') return sr.onKeys(m);
    if (m.type === 'secagg-inbox') return sr.onInbox(m);
    return sr.onUnmask(m);
  }

  private async open(m: Extract<Message, { type: 'secagg-open' }>): Promise<void> {
    const config = this.host.config();
    const p = config.privacy;
    if (!p)
      throw new FederationError(
        'the relay opened a secure round, but this federation is not configured for secure aggregation',
      );
    let vector: Promise<Uint32Array>;
    if (m.kind === 'fingerprint') {
      const layout = ffeLayout(p.ffeCells, p.ffeChannels);
      if (m.length !== layout.length)
        throw new FederationError(
          `secure FFE of ${m.length} words, the config's layout has ${layout.length}`,
        );
      this.ffeVector ??= this.host.trainer.localFingerprint().then((fp) => {
        assertDatasetFingerprint(fp, "this site's fingerprint");
        return encodeSummary(summarizeFingerprint(fp as unknown as DatasetFingerprint), layout);
      });
      vector = this.ffeVector;
    } else {
      if (this.work?.round !== m.round)
        throw new FederationError(`secure round ${m.round} opened before its global model arrived`);
      checkRoundHeadroom(p, config.weighting, noiseDivisor(config), m.participants.length);
      vector = this.work.vector;
    }
    this.secureRound?.cancel();
    const sr = new SecureSiteRound(m, this.host.siteId(), (msg, payload) =>
      this.host.send(msg, payload),
    );
    this.secureRound = sr;
    await sr.start();
    // Detached: the vector may still be training; the queue keeps serving the key exchange.
    vector.then((v) => sr.submit(v)).catch((e) => this.host.fail(e));
  }
}
