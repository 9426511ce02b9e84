// A site's side of one secure-aggregation attempt, the counterpart of round.ts: advertise keys,
// seal Shamir shares of its self-mask seed and mask key to every other site, upload its masked
// vector once the vector is ready and the shares of the others arrived, and reveal shares for the
// relay's U3. Every list the relay sends is checked before this site acts on it (its own keys in
// U1, U3 ⊆ U2, |U3| ≥ t); SecAggSite refuses to reveal for two different U3 in one attempt.
import type { Message, SecaggOpen } from '../protocol.ts';
import { SecAggSite, type SealedShares, type SiteAdvert } from './masking.ts';
import {
  fromB64,
  IV_BYTES,
  PUBKEY_BYTES,
  SALT_BYTES,
  SEALED_BYTES,
  toB64,
  bytesOf,
} from './wire.ts';

type Send = (message: Message, payload?: Uint8Array) => void;

export class SecureSiteRound {
  readonly index: number;
  private site?: SecAggSite;
  private u1?: SiteAdvert[];
  private readonly ready: Promise<void>;
  private markReady!: () => void;
  private cancelled = false;
  private submitted = false;

  constructor(
    readonly open: SecaggOpen,
    siteId: string,
    private readonly send: Send,
  ) {
    this.index = open.participants.indexOf(siteId);
    if (this.index < 0)
      throw new Error(`secure round ${open.round}: this site is not among its participants`);
    if (
      !Number.isInteger(open.threshold) ||
      open.threshold < 2 ||
      open.threshold > open.participants.length
    ) {
      throw new Error(
        `secure round ${open.round}: threshold ${open.threshold} is invalid for ${open.participants.length} sites`,
      );
    }
    this.ready = new Promise((ok) => (this.markReady = ok));
  }

  private ids(): { round: number; attempt: number } {
    return { round: this.open.round, attempt: this.open.attempt };
  }

  matches(m: { round: number; attempt: number }): boolean {
    return m.round === this.open.round && m.attempt === this.open.attempt;
  }

  /** A newer attempt replaced this one: nothing more is sent for it. */
  cancel(): void {
    this.cancelled = true;
  }

  /** Step 0: fresh key pairs for this attempt, public keys to the relay. */
  async start(): Promise<void> {
    const cfg = {
      n: this.open.participants.length,
      t: this.open.threshold,
      length: this.open.length,
      roundId: fromB64(this.open.salt, SALT_BYTES, 'salt'),
    };
    this.site = await SecAggSite.create(this.index, cfg);
    const a = this.site.advert();
    if (!this.cancelled)
      this.send({ type: 'secagg-advert', ...this.ids(), cPub: toB64(a.cPub), sPub: toB64(a.sPub) });
  }

  /** Step 1: U1's keys arrived; seal shares to each of them. */
  async onKeys(m: Extract<Message, { type: 'secagg-keys' }>): Promise<void> {
    if (!this.site) throw new Error('keys arrived before this site advertised');
    const n = this.open.participants.length;
    const seen = new Set<number>();
    const u1 = m.adverts.map((a): SiteAdvert => {
      if (a.index >= n || seen.has(a.index))
        throw new Error(`secagg-keys lists site ${a.index} twice or out of range`);
      seen.add(a.index);
      return {
        id: a.index,
        cPub: fromB64(a.cPub, PUBKEY_BYTES, 'cPub'),
        sPub: fromB64(a.sPub, PUBKEY_BYTES, 'sPub'),
      };
    });
    const mine = u1.find((a) => a.id === this.index);
    const own = this.site.advert();
    if (!mine || toB64(mine.cPub) !== toB64(own.cPub) || toB64(mine.sPub) !== toB64(own.sPub))
      throw new Error("secagg-keys does not carry this site's own keys");
    this.u1 = u1;
    const sealed = await this.site.shareKeys(u1);
    if (!this.cancelled)
      this.send({
        type: 'secagg-shares',
        ...this.ids(),
        shares: sealed.map((s) => ({ to: s.to, iv: toB64(s.iv), ct: toB64(s.ciphertext) })),
      });
  }

  /** Step 1 (receiving): the shares sealed to this site by every site of U2. */
  async onInbox(m: Extract<Message, { type: 'secagg-inbox' }>): Promise<void> {
    if (!this.site || !this.u1) throw new Error('shares arrived before the keys');
    const byId = new Map(this.u1.map((a) => [a.id, a]));
    if (!m.u2.includes(this.index)) throw new Error('U2 does not include this site');
    const u2 = m.u2.map((k) => {
      const a = byId.get(k);
      if (!a) throw new Error(`U2 lists site ${k}, which did not advertise keys`);
      return a;
    });
    if (new Set(m.u2).size !== m.u2.length) throw new Error('U2 lists a site twice');
    const sealed: SealedShares[] = m.shares.map((s) => ({
      from: s.from,
      to: this.index,
      iv: fromB64(s.iv, IV_BYTES, 'iv'),
      ciphertext: fromB64(s.ct, SEALED_BYTES, 'sealed share'),
    }));
    await this.site.receiveShares(sealed, u2);
    this.markReady();
  }

  /** Step 2: mask and upload `vector` (once the shares of the others are in). */
  async submit(vector: Uint32Array): Promise<void> {
    if (vector.length !== this.open.length)
      throw new Error(`vector of ${vector.length} words, the round expects ${this.open.length}`);
    await this.ready;
    if (this.cancelled || this.submitted) return;
    const masked = await this.site!.maskedInput(vector);
    if (this.cancelled) return;
    this.submitted = true;
    this.send({ type: 'secagg-masked', ...this.ids(), length: masked.length }, bytesOf(masked));
  }

  /** Step 3: reveal shares for the survivors U3 (only if this site's own vector is among them). */
  onUnmask(m: Extract<Message, { type: 'secagg-unmask' }>): void {
    if (!this.site || !this.submitted)
      throw new Error('asked to unmask before this site uploaded its masked vector');
    if (!m.u3.includes(this.index))
      throw new Error('U3 does not include this site, which uploaded its vector');
    const r = this.site.unmask(m.u3);
    const list = (shares: Map<number, { y: Uint8Array }>) =>
      [...shares].map(([of, s]) => ({ of, y: toB64(s.y) }));
    this.send({ type: 'secagg-reveal', ...this.ids(), b: list(r.bShares), s: list(r.sShares) });
  }
}
