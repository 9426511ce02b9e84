// The relay's side of one secure-aggregation attempt (Bonawitz et al. 2017, semi-honest server):
//   advert  → every participant sends its two public keys          → U1, broadcast to U1
//   shares  → every U1 site sends its sealed Shamir shares          → U2, each share forwarded
//   masked  → every U2 site uploads its masked vector              → U3, summed as they arrive
//   unmask  → U3 sites reveal b-shares of U3, s-shares of U2∖U3   → U4 (≥ t), masks removed
// Each phase ends when every site it waits for answered or disconnected, or at its deadline. Fewer
// than t sites at any phase fails the attempt (the coordinator keeps the previous global model and
// may retry with fresh keys). The relay keeps one running sum, never a site's vector, and cannot
// read the shares it forwards (AES-GCM between the two sites). Platform-free and synchronous except
// the final unmasking, which it hands back as a promise.
import type { Message, SecaggOpen } from '../protocol.ts';
import type { Outgoing } from '../round-types.ts';
import {
  removeMasks,
  SHARE_BYTES,
  type RoundConfig,
  type SiteAdvert,
  type UnmaskReveal,
} from './masking.ts';
import { addInto } from './quantize.ts';
import { fromB64, IV_BYTES, PUBKEY_BYTES, SEALED_BYTES, wordsOf } from './wire.ts';
import type { Share } from './shamir.ts';
import type { FederationConfig, PrivacyConfig } from '../protocol.ts';
import type { NamedWeights, WeightSpec } from '../../model/named-weights.ts';
import { decodeSum } from './vector.ts';
import { errorMessage } from '../../util/errors.ts';

export type SecurePhase = 'advert' | 'shares' | 'masked' | 'unmask' | 'computing' | 'over';
const ORDER: SecurePhase[] = ['advert', 'shares', 'masked', 'unmask', 'computing', 'over'];
const PHASE_OF: Record<string, SecurePhase> = {
  'secagg-advert': 'advert',
  'secagg-shares': 'shares',
  'secagg-masked': 'masked',
  'secagg-reveal': 'unmask',
};

export interface SecureRoundOptions {
  open: SecaggOpen;
  now: () => number;
  /** Length of the advert, shares and unmask phases. */
  phaseMs: number;
  /** When the masked uploads must be in (the round deadline: sites train before uploading). */
  maskedDeadline: number;
  /** Fewest masked vectors the sum may have (max(t, quorum); every participant for FFE). */
  minMasked: number;
  log?: (line: string) => void;
}

/** What a step produced: messages, and possibly the end of the attempt. */
export interface SecureStep {
  out: Outgoing[];
  /** The unmasked sum is being computed; U3 are the sites whose vectors it holds. */
  result?: { u3: string[]; sum: Promise<Uint32Array> };
  failed?: string;
}

type SecaggMessage = Extract<Message, { type: `secagg-${string}` }>;

export class SecureRound {
  phase: SecurePhase = 'advert';
  private deadline: number;
  private readonly index = new Map<string, number>();
  private readonly gone = new Set<number>();
  private readonly adverts = new Map<number, SiteAdvert>();
  private readonly wireAdverts = new Map<number, { index: number; cPub: string; sPub: string }>();
  private readonly sealed = new Map<number, Array<{ to: number; iv: string; ct: string }>>();
  private u1: number[] = [];
  private u2: number[] = [];
  private readonly u3 = new Set<number>();
  private sum?: Uint32Array;
  private readonly reveals = new Map<number, UnmaskReveal>();
  private readonly log: (l: string) => void;
  readonly cfg: RoundConfig;

  constructor(private readonly o: SecureRoundOptions) {
    const p = o.open.participants;
    if (new Set(p).size !== p.length) throw new Error('participants listed twice');
    if (o.open.threshold < 2 || o.open.threshold > p.length)
      throw new Error(`threshold ${o.open.threshold} for ${p.length} participants`);
    p.forEach((id, k) => this.index.set(id, k));
    this.cfg = {
      n: p.length,
      t: o.open.threshold,
      length: o.open.length,
      roundId: fromB64(o.open.salt, 16, 'salt'),
    };
    this.deadline = o.now() + o.phaseMs;
    this.log = o.log ?? (() => undefined);
  }

  get round(): number {
    return this.o.open.round;
  }
  get attempt(): number {
    return this.o.open.attempt;
  }
  get kind(): SecaggOpen['kind'] {
    return this.o.open.kind;
  }
  get participants(): readonly string[] {
    return this.o.open.participants;
  }

  /** The 'secagg-open' message for every participant. */
  start(): Outgoing[] {
    return this.o.open.participants.map((to) => ({
      to,
      message: { type: 'secagg-open', ...this.o.open },
    }));
  }

  private id(k: number): string {
    return this.o.open.participants[k];
  }

  private tag(): string {
    return `round ${this.round}${this.o.open.kind === 'fingerprint' ? ' (FFE)' : ''} attempt ${this.attempt}`;
  }

  /** A message from a site; stale messages (other round or attempt) are ignored. */
  handle(siteId: string, m: SecaggMessage, payload: Uint8Array): SecureStep {
    if (!('attempt' in m) || m.round !== this.round || m.attempt !== this.attempt) {
      this.log(`ignored a stale ${m.type} from ${siteId}`);
      return { out: [] };
    }
    const k = this.index.get(siteId);
    if (k === undefined) {
      this.log(`ignored ${m.type} from ${siteId}, which is not a participant of ${this.tag()}`);
      return { out: [] };
    }
    const phase = PHASE_OF[m.type];
    if (phase && ORDER.indexOf(phase) < ORDER.indexOf(this.phase)) {
      // Too late (its phase closed at the deadline): not an error of the site's.
      this.log(`${this.tag()}: ${m.type} from ${siteId} arrived after its phase closed`);
      return {
        out:
          m.type === 'secagg-masked'
            ? [
                {
                  to: siteId,
                  message: {
                    type: 'update-result',
                    round: this.round,
                    accepted: false,
                    reason: 'the masked update arrived after the deadline',
                  },
                },
              ]
            : [],
      };
    }
    try {
      switch (m.type) {
        case 'secagg-advert':
          return this.onAdvert(k, m);
        case 'secagg-shares':
          return this.onShares(k, m);
        case 'secagg-masked':
          return this.onMasked(k, m, payload);
        case 'secagg-reveal':
          return this.onReveal(k, m);
        default:
          throw new Error(`'${m.type}' is not sent by sites`);
      }
    } catch (e) {
      // A malformed message: the site is out of this attempt and told why.
      const reason = `${m.type} rejected: ${errorMessage(e)}`;
      this.log(`${this.tag()}: ${reason} (from ${siteId})`);
      this.gone.add(k);
      const out: Outgoing[] =
        m.type === 'secagg-masked'
          ? [
              {
                to: siteId,
                message: { type: 'update-result', round: this.round, accepted: false, reason },
              },
            ]
          : [{ to: siteId, message: { type: 'error', message: reason } }];
      const next = this.advance(false);
      return { ...next, out: [...out, ...next.out] };
    }
  }

  /** A site disconnected: it is out of this attempt (its shares still let U3 unmask without it). */
  dropped(siteId: string): SecureStep {
    const k = this.index.get(siteId);
    if (k === undefined || this.phase === 'computing' || this.phase === 'over') return { out: [] };
    this.gone.add(k);
    return this.advance(false);
  }

  tick(): SecureStep {
    if (this.phase === 'computing' || this.phase === 'over') return { out: [] };
    return this.advance(this.o.now() >= this.deadline);
  }

  private expectPhase(phase: SecurePhase, type: string): void {
    if (this.phase !== phase) throw new Error(`${type} arrived in the ${this.phase} phase`);
  }

  private onAdvert(k: number, m: Extract<Message, { type: 'secagg-advert' }>): SecureStep {
    this.expectPhase('advert', m.type);
    if (this.adverts.has(k)) throw new Error('keys already advertised');
    const cPub = fromB64(m.cPub, PUBKEY_BYTES, 'cPub');
    const sPub = fromB64(m.sPub, PUBKEY_BYTES, 'sPub');
    if (cPub[0] !== 4 || sPub[0] !== 4)
      throw new Error('public keys must be uncompressed P-256 points');
    this.adverts.set(k, { id: k, cPub, sPub });
    this.wireAdverts.set(k, { index: k, cPub: m.cPub, sPub: m.sPub });
    return this.advance(false);
  }

  private onShares(k: number, m: Extract<Message, { type: 'secagg-shares' }>): SecureStep {
    this.expectPhase('shares', m.type);
    if (!this.u1.includes(k)) throw new Error('this site did not advertise keys');
    if (this.sealed.has(k)) throw new Error('shares already sent');
    const to = m.shares.map((s) => s.to).sort((a, b) => a - b);
    if (to.join() !== this.u1.join())
      throw new Error(`expected one share for each of sites [${this.u1}], got [${to}]`);
    for (const s of m.shares) {
      fromB64(s.iv, IV_BYTES, 'iv');
      fromB64(s.ct, SEALED_BYTES, 'sealed share');
    }
    this.sealed.set(k, m.shares);
    return this.advance(false);
  }

  private onMasked(
    k: number,
    m: Extract<Message, { type: 'secagg-masked' }>,
    payload: Uint8Array,
  ): SecureStep {
    this.expectPhase('masked', m.type);
    if (!this.u2.includes(k)) throw new Error('this site did not share its keys in this round');
    if (this.u3.has(k)) throw new Error('masked vector already received');
    if (m.length !== this.cfg.length)
      throw new Error(`vector of ${m.length} words, this round sums ${this.cfg.length}`);
    const v = wordsOf(payload, m.length);
    this.sum ??= new Uint32Array(this.cfg.length);
    addInto(this.sum, v);
    this.u3.add(k);
    const step = this.advance(false);
    return {
      ...step,
      out: [
        { to: this.id(k), message: { type: 'update-result', round: this.round, accepted: true } },
        ...step.out,
      ],
    };
  }

  private onReveal(k: number, m: Extract<Message, { type: 'secagg-reveal' }>): SecureStep {
    this.expectPhase('unmask', m.type);
    if (!this.u3.has(k)) throw new Error('this site is not among the survivors asked to unmask');
    if (this.reveals.has(k)) throw new Error('shares already revealed');
    const u3 = [...this.u3].sort((a, b) => a - b);
    const dropped = this.u2.filter((j) => !this.u3.has(j));
    const take = (
      list: Array<{ of: number; y: string }>,
      want: number[],
      what: string,
    ): Map<number, Share> => {
      const of = list.map((e) => e.of).sort((a, b) => a - b);
      if (of.join() !== want.join())
        throw new Error(`expected ${what} shares of sites [${want}], got [${of}]`);
      // The Shamir point is the sender's index + 1, fixed by the relay, not read from the message.
      return new Map(
        list.map((e) => [e.of, { x: k + 1, y: fromB64(e.y, SHARE_BYTES, `${what} share`) }]),
      );
    };
    this.reveals.set(k, {
      from: k,
      bShares: take(m.b, u3, 'self-mask'),
      sShares: take(m.s, dropped, 'key'),
    });
    return this.advance(false);
  }

  private fail(reason: string): SecureStep {
    this.phase = 'over';
    this.log(`${this.tag()} failed: ${reason}`);
    return { out: [], failed: reason };
  }

  private waiting(set: readonly number[], done: (k: number) => boolean): boolean {
    return set.some((k) => !this.gone.has(k) && !done(k));
  }

  /** Closes the current phase when nobody is left to wait for, or at its deadline. */
  private advance(pastDeadline: boolean): SecureStep {
    const t = this.cfg.t;
    const all = this.o.open.participants.map((_, k) => k);
    if (this.phase === 'advert') {
      if (!pastDeadline && this.waiting(all, (k) => this.adverts.has(k))) return { out: [] };
      this.u1 = [...this.adverts.keys()].filter((k) => !this.gone.has(k)).sort((a, b) => a - b);
      if (this.u1.length < t)
        return this.fail(
          `only ${this.u1.length} of ${all.length} sites advertised keys; secure aggregation needs ${t}`,
        );
      this.phase = 'shares';
      this.deadline = this.o.now() + this.o.phaseMs;
      const adverts = this.u1.map((k) => this.wireAdverts.get(k)!);
      return {
        out: this.u1.map((k) => ({
          to: this.id(k),
          message: { type: 'secagg-keys', round: this.round, attempt: this.attempt, adverts },
        })),
      };
    }
    if (this.phase === 'shares') {
      if (!pastDeadline && this.waiting(this.u1, (k) => this.sealed.has(k))) return { out: [] };
      // A site that left after its shares went out stays in U2: its masks are removed through them.
      this.u2 = this.u1.filter((k) => this.sealed.has(k));
      if (this.u2.length < t)
        return this.fail(
          `only ${this.u2.length} sites shared their keys; secure aggregation needs ${t}`,
        );
      this.phase = 'masked';
      this.deadline = Math.max(this.o.maskedDeadline, this.o.now() + this.o.phaseMs);
      const out: Outgoing[] = this.u2.map((j) => ({
        to: this.id(j),
        message: {
          type: 'secagg-inbox',
          round: this.round,
          attempt: this.attempt,
          u2: this.u2,
          shares: this.u2.map((i) => {
            const s = this.sealed.get(i)!.find((x) => x.to === j)!;
            return { from: i, iv: s.iv, ct: s.ct };
          }),
        },
      }));
      return { out };
    }
    if (this.phase === 'masked') {
      const need = Math.max(t, this.o.minMasked);
      if (this.waiting(this.u2, (k) => this.u3.has(k))) {
        if (!pastDeadline) return { out: [] };
        if (this.u3.size < need)
          return this.fail(
            `only ${this.u3.size} masked updates arrived by the deadline; this round needs ${need}`,
          );
      } else if (this.u3.size < need) {
        return this.fail(
          `only ${this.u3.size} sites uploaded a masked update before the others left; this round needs ${need}`,
        );
      }
      this.phase = 'unmask';
      this.deadline = this.o.now() + this.o.phaseMs;
      const u3 = [...this.u3].sort((a, b) => a - b);
      return {
        out: u3
          .filter((k) => !this.gone.has(k))
          .map((k) => ({
            to: this.id(k),
            message: { type: 'secagg-unmask', round: this.round, attempt: this.attempt, u3 },
          })),
      };
    }
    if (this.phase === 'unmask') {
      const u3 = [...this.u3].sort((a, b) => a - b);
      if (!pastDeadline && this.waiting(u3, (k) => this.reveals.has(k))) return { out: [] };
      if (this.reveals.size < t)
        return this.fail(
          `only ${this.reveals.size} of the ${u3.length} sites with a masked update answered the unmasking round; secure aggregation needs ${t}`,
        );
      this.phase = 'computing';
      const u2 = this.u2.map((k) => this.adverts.get(k)!);
      const sum = removeMasks(this.cfg, u2, u3, this.sum!, [...this.reveals.values()]);
      this.sum = undefined;
      sum.then(
        () => (this.phase = 'over'),
        () => (this.phase = 'over'),
      );
      this.log(
        `${this.tag()}: unmasking the sum of ${u3.length} sites with the shares of ${this.reveals.size}`,
      );
      return { out: [], result: { u3: u3.map((k) => this.id(k)), sum } };
    }
    return { out: [] };
  }
}

/**
 * The relay's checks of an unmasked model sum (it never sees one site's vector, so it checks what
 * the sum allows): Σw must be what |U3| honest sites can give (exactly |U3| under uniform
 * weighting, |U3|..|U3|·maxWeight under cases: a weight word of 2^32 − 2 wraps Σw), and the mean
 * delta must be no longer than the clip C, as a mean of vectors clipped to C is, plus the
 * fixed-point rounding and (DP) the noise: with s the noise std of one element of the mean,
 * ‖mean‖² ≤ A² + s²(P + 8√(2P) + 64) + 16·A·s, A = C + rounding; the chi-square and cross terms
 * are exceeded by honest rounds with probability below 1e-13 (Laurent–Massart). A site that
 * ignores the clip is caught once it pushes the mean past C. Throws with the reason.
 */
export function checkUnmaskedSum(
  sum: Uint32Array,
  spec: WeightSpec,
  p: PrivacyConfig,
  weighting: FederationConfig['weighting'],
  contributors: number,
  divisor: number,
): { mean: NamedWeights; totalWeight: number } {
  const { mean, totalWeight } = decodeSum(sum, spec, p.fracBits);
  const maxW = weighting === 'cases' ? p.maxWeight : 1;
  if (totalWeight < contributors || totalWeight > contributors * maxW) {
    throw new Error(
      `the summed weight ${totalWeight} is impossible for ${contributors} sites of weight 1..${maxW} (a site sent a forged weight)`,
    );
  }
  let sq = 0;
  let n = 0;
  for (const t of mean.values()) {
    n += t.data.length;
    for (let i = 0; i < t.data.length; i++) sq += t.data[i] * t.data[i];
  }
  const rounding = (Math.sqrt(n) * contributors * 2 ** -(p.fracBits + 1)) / totalWeight;
  const a = p.clip * (1 + 1e-6) + rounding;
  const s = p.dp
    ? (p.dp.noiseMultiplier * p.clip * Math.sqrt(contributors / divisor)) / totalWeight
    : 0;
  const bound2 = a * a + s * s * (n + 8 * Math.sqrt(2 * n) + 64) + 16 * a * s;
  if (!(sq <= bound2)) {
    throw new Error(
      `the mean update has norm ${Math.sqrt(sq).toPrecision(4)}, over the clip bound ${Math.sqrt(bound2).toPrecision(4)} (C = ${p.clip}): a site did not clip its update`,
    );
  }
  return { mean, totalWeight };
}
