// Bonawitz et al. (CCS 2017) secure aggregation, one round, honest-but-curious server: the pure
// core (no transport). Each site i holds two ECDH P-256 key pairs: c_i (encrypting the shares it
// sends through the relay) and s_i (pairwise masks). Per round:
//   0. advertise (c_i^pk, s_i^pk)                                   -> U1 = sites that advertised
//   1. pick a random self-mask seed b_i; Shamir-share b_i and s_i^sk t-of-n, AES-GCM-encrypt each
//      share to its recipient under HKDF(ECDH(c_i, c_j)), upload  -> U2 = sites whose shares went out
//   2. masked_i = q(x_i) + Σ_{j∈U2, i<j} PRG(s_ij) − Σ_{j∈U2, i>j} PRG(s_ij) + PRG(b_i)  (mod 2^32),
//      s_ij = HKDF(ECDH(s_i, s_j))                                 -> U3 = sites whose vector arrived
//   3. every survivor reveals, for each j in U2, its share of b_j if j ∈ U3, else of s_j^sk (never
//      both for one j)                                               -> U4, needs |U4| ≥ t
// The server (`unmaskSum`) sums the masked vectors of U3, subtracts PRG(b_i) for i ∈ U3, and for
// each dropped d ∈ U2∖U3 rebuilds s_d^sk and removes the pairwise masks d shares with U3.
// PRG: the AES-256-CTR keystream (zero counter block) of the 32-byte seed, read as uint32 words
// (little-endian: every JS engine in use is). Seeds and keys never leave a site unshared.
// Not covered here: the active-adversary consistency round (signatures over U3), so a malicious
// server that lies about U3 to different sites is out of scope, as in the semi-honest protocol.
import { combine, split, type Share } from './shamir.ts';
import { addInto, subInto } from './quantize.ts';

const subtle = () => globalThis.crypto.subtle;
const SEED_BYTES = 32;
export const SHARE_BYTES = 48; // a 32-byte secret is 3 chunks of 16-byte field elements
const EC = { name: 'ECDH', namedCurve: 'P-256' } as const;
const enc = new TextEncoder();
/** A copy backed by a plain ArrayBuffer (what WebCrypto's BufferSource type asks for). */
const ab = (u: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(u);

export interface RoundConfig {
  /** Number of sites (ids 0..n-1; Shamir point of site i is i + 1). */
  n: number;
  /** Shamir threshold: any t survivors can unmask, t − 1 colluders learn nothing. */
  t: number;
  /** Length of the quantised vector in uint32 words. */
  length: number;
  /** Per-round salt (e.g. 16 random bytes chosen by the relay), binds pairwise keys to the round. */
  roundId: Uint8Array;
}

export interface SiteAdvert {
  id: number;
  /** Raw uncompressed P-256 public keys (65 bytes). */
  cPub: Uint8Array;
  sPub: Uint8Array;
}

export interface SealedShares {
  from: number;
  to: number;
  iv: Uint8Array;
  ciphertext: Uint8Array;
}

export interface UnmaskReveal {
  from: number;
  /** Shares of b_j for survivors j ∈ U3. */
  bShares: Map<number, Share>;
  /** Shares of s_j^sk for dropped j ∈ U2∖U3. */
  sShares: Map<number, Share>;
}

function checkConfig(cfg: RoundConfig): void {
  if (!Number.isInteger(cfg.n) || !Number.isInteger(cfg.t) || cfg.t < 2 || cfg.t > cfg.n)
    throw new Error(`invalid threshold ${cfg.t} of ${cfg.n}`);
  if (!Number.isInteger(cfg.length) || cfg.length < 0)
    throw new Error(`invalid length ${cfg.length}`);
}

function b64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function unb64url(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** AES-256-CTR keystream of a 32-byte seed as `length` uint32 words. */
export async function prg(seed: Uint8Array, length: number): Promise<Uint32Array> {
  if (seed.length !== SEED_BYTES) throw new Error(`seed must be ${SEED_BYTES} bytes`);
  const key = await subtle().importKey('raw', ab(seed), 'AES-CTR', false, ['encrypt']);
  const ks = await subtle().encrypt(
    { name: 'AES-CTR', counter: new Uint8Array(16), length: 64 },
    key,
    new Uint8Array(length * 4),
  );
  return new Uint32Array(ks);
}

async function ecdhBits(priv: CryptoKey, pubRaw: Uint8Array): Promise<ArrayBuffer> {
  const pub = await subtle().importKey('raw', ab(pubRaw), EC, false, []);
  return subtle().deriveBits({ name: 'ECDH', public: pub }, priv, 256);
}

async function hkdf(
  ikm: ArrayBuffer,
  salt: Uint8Array,
  info: string,
  bits = 256,
): Promise<Uint8Array> {
  const k = await subtle().importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(
    await subtle().deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt: ab(salt), info: enc.encode(info) },
      k,
      bits,
    ),
  );
}

/** Pairwise mask seed s_ij = HKDF(ECDH(s_i, s_j)), symmetric in i and j. */
export async function pairSeed(
  priv: CryptoKey,
  i: number,
  j: number,
  pubJ: Uint8Array,
  roundId: Uint8Array,
): Promise<Uint8Array> {
  return hkdf(
    await ecdhBits(priv, pubJ),
    roundId,
    `fednnunet-secagg/mask/${Math.min(i, j)}-${Math.max(i, j)}`,
  );
}

async function shareKey(
  priv: CryptoKey,
  i: number,
  j: number,
  pubJ: Uint8Array,
  roundId: Uint8Array,
): Promise<CryptoKey> {
  const raw = await hkdf(
    await ecdhBits(priv, pubJ),
    roundId,
    `fednnunet-secagg/enc/${Math.min(i, j)}-${Math.max(i, j)}`,
  );
  return subtle().importKey('raw', ab(raw), 'AES-GCM', false, ['encrypt', 'decrypt']);
}

function aad(from: number, to: number, roundId: Uint8Array): Uint8Array {
  const head = enc.encode(`fednnunet-secagg/share/${from}->${to}/`);
  const out = new Uint8Array(head.length + roundId.length);
  out.set(head);
  out.set(roundId, head.length);
  return out;
}

async function exportPrivate(k: CryptoKey): Promise<Uint8Array> {
  const jwk = await subtle().exportKey('jwk', k);
  if (!jwk.d) throw new Error('private key export lacks d');
  return unb64url(jwk.d);
}

/** Rebuilds a P-256 ECDH private key from its 32-byte scalar and raw public key. */
export async function importPrivate(d: Uint8Array, pubRaw: Uint8Array): Promise<CryptoKey> {
  if (pubRaw.length !== 65 || pubRaw[0] !== 4)
    throw new Error('expected an uncompressed P-256 public key');
  const jwk: JsonWebKey = {
    kty: 'EC',
    crv: 'P-256',
    d: b64url(d),
    x: b64url(pubRaw.subarray(1, 33)),
    y: b64url(pubRaw.subarray(33, 65)),
    ext: false,
  };
  return subtle().importKey('jwk', jwk, EC, false, ['deriveBits']);
}

export class SecAggSite {
  private b: Uint8Array | null = null;
  /** Shares held for each sender j (after decrypting): b_j's and s_j's. */
  private readonly held = new Map<number, { b: Share; s: Share }>();
  private u2: number[] | null = null;
  private u3: number[] | null = null;

  private constructor(
    readonly id: number,
    readonly cfg: RoundConfig,
    private readonly c: CryptoKeyPair,
    private readonly s: CryptoKeyPair,
    private readonly pubs: { c: Uint8Array; s: Uint8Array },
  ) {}

  static async create(id: number, cfg: RoundConfig): Promise<SecAggSite> {
    checkConfig(cfg);
    if (!Number.isInteger(id) || id < 0 || id >= cfg.n)
      throw new Error(`site id ${id} out of range`);
    // Extractable: the s private key is Shamir-shared so the server can unmask if this site drops.
    const c = (await subtle().generateKey(EC, false, ['deriveBits'])) as CryptoKeyPair;
    const s = (await subtle().generateKey(EC, true, ['deriveBits'])) as CryptoKeyPair;
    const cPub = new Uint8Array(await subtle().exportKey('raw', c.publicKey));
    const sPub = new Uint8Array(await subtle().exportKey('raw', s.publicKey));
    return new SecAggSite(id, cfg, c, s, { c: cPub, s: sPub });
  }

  /** Step 0. */
  advert(): SiteAdvert {
    return { id: this.id, cPub: this.pubs.c, sPub: this.pubs.s };
  }

  /** Step 1: shares of b_i and s_i^sk for every site in U1 (self included), each sealed to its recipient. */
  async shareKeys(u1: SiteAdvert[]): Promise<SealedShares[]> {
    if (u1.length < this.cfg.t)
      throw new Error(`only ${u1.length} sites advertised, threshold is ${this.cfg.t}`);
    if (!u1.some((a) => a.id === this.id)) throw new Error('U1 must include this site');
    this.b = globalThis.crypto.getRandomValues(new Uint8Array(SEED_BYTES));
    const bSh = split(this.b, this.cfg.t, this.cfg.n);
    const sSh = split(await exportPrivate(this.s.privateKey), this.cfg.t, this.cfg.n);
    const out: SealedShares[] = [];
    for (const a of u1) {
      const plain = new Uint8Array(2 * SHARE_BYTES);
      plain.set(bSh[a.id].y);
      plain.set(sSh[a.id].y, SHARE_BYTES);
      const key = await shareKey(this.c.privateKey, this.id, a.id, a.cPub, this.cfg.roundId);
      const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
      const ct = await subtle().encrypt(
        { name: 'AES-GCM', iv, additionalData: ab(aad(this.id, a.id, this.cfg.roundId)) },
        key,
        plain,
      );
      out.push({ from: this.id, to: a.id, iv, ciphertext: new Uint8Array(ct) });
    }
    return out;
  }

  /**
   * Step 1 (receiving): the sealed shares addressed to this site. `u2` are the adverts of every
   * site whose shares went out (the relay tells each site U2); their masks enter masked_i.
   */
  async receiveShares(sealed: SealedShares[], u2: SiteAdvert[]): Promise<void> {
    if (u2.length < this.cfg.t)
      throw new Error(`only ${u2.length} sites shared keys, threshold is ${this.cfg.t}`);
    const byId = new Map(u2.map((a) => [a.id, a]));
    for (const m of sealed) {
      if (m.to !== this.id) throw new Error(`share addressed to ${m.to}, this is ${this.id}`);
      const a = byId.get(m.from);
      if (!a) continue; // sender not in U2: ignore
      const key = await shareKey(this.c.privateKey, this.id, m.from, a.cPub, this.cfg.roundId);
      const plain = new Uint8Array(
        await subtle().decrypt(
          {
            name: 'AES-GCM',
            iv: ab(m.iv),
            additionalData: ab(aad(m.from, this.id, this.cfg.roundId)),
          },
          key,
          ab(m.ciphertext),
        ),
      );
      if (plain.length !== 2 * SHARE_BYTES) throw new Error('share of unexpected size');
      this.held.set(m.from, {
        b: { x: this.id + 1, y: plain.slice(0, SHARE_BYTES) },
        s: { x: this.id + 1, y: plain.slice(SHARE_BYTES) },
      });
    }
    for (const a of u2)
      if (!this.held.has(a.id)) throw new Error(`no share from site ${a.id} in U2`);
    this.u2Adverts = u2;
    this.u2 = u2.map((a) => a.id);
  }

  private u2Adverts: SiteAdvert[] = [];

  /** Step 2: masked_i = q(x_i) + Σ ±PRG(s_ij) + PRG(b_i) mod 2^32, over j ∈ U2∖{i}. */
  async maskedInput(q: Uint32Array): Promise<Uint32Array> {
    if (!this.b || !this.u2) throw new Error('shareKeys and receiveShares must come first');
    if (q.length !== this.cfg.length)
      throw new Error(`input has ${q.length} words, round expects ${this.cfg.length}`);
    const out = Uint32Array.from(q);
    addInto(out, await prg(this.b, q.length));
    for (const a of this.u2Adverts) {
      if (a.id === this.id) continue;
      const m = await prg(
        await pairSeed(this.s.privateKey, this.id, a.id, a.sPub, this.cfg.roundId),
        q.length,
      );
      if (this.id < a.id) addInto(out, m);
      else subInto(out, m);
    }
    return out;
  }

  /**
   * Step 3: given U3 (sites whose masked vector reached the server), reveal b-shares of U3 and
   * s-shares of U2∖U3. Refuses when |U3| < t or U3 ⊄ U2, or when asked twice with a different U3
   * (that would let the server learn both b_j and s_j of one site).
   */
  unmask(u3: number[]): UnmaskReveal {
    if (!this.u2) throw new Error('receiveShares must come first');
    const set = new Set(u3);
    if (set.size < this.cfg.t)
      throw new Error(`only ${set.size} survivors, threshold is ${this.cfg.t}`);
    for (const j of set) if (!this.u2.includes(j)) throw new Error(`survivor ${j} is not in U2`);
    const key = [...set].sort((a, b) => a - b);
    if (this.u3 && this.u3.join() !== key.join())
      throw new Error('U3 changed between unmask requests');
    this.u3 = key;
    const bShares = new Map<number, Share>();
    const sShares = new Map<number, Share>();
    for (const j of this.u2) {
      const h = this.held.get(j)!;
      if (set.has(j)) bShares.set(j, h.b);
      else sShares.set(j, h.s);
    }
    return { from: this.id, bShares, sShares };
  }
}

/**
 * Server side, a pure function of what the relay received: the U2 adverts, the masked vectors of
 * U3 and the reveals of U4 (|U4| ≥ t). Returns Σ_{i∈U3} q(x_i) mod 2^32 (dequantise with
 * `dequantize` from quantize.ts).
 */
export async function unmaskSum(
  cfg: RoundConfig,
  u2: SiteAdvert[],
  masked: Map<number, Uint32Array>,
  reveals: UnmaskReveal[],
): Promise<Uint32Array> {
  checkConfig(cfg);
  const sum = new Uint32Array(cfg.length);
  for (const v of masked.values()) {
    if (v.length !== cfg.length)
      throw new Error(`masked vector of ${v.length} words, round expects ${cfg.length}`);
    addInto(sum, v);
  }
  return removeMasks(cfg, u2, [...masked.keys()], sum, reveals);
}

/**
 * The same from the running sum of the U3 masked vectors (what a relay keeps: one vector, not
 * one per site). Removes the self-masks of U3 and the pairwise masks of U2∖U3, in place.
 */
export async function removeMasks(
  cfg: RoundConfig,
  u2: SiteAdvert[],
  u3: number[],
  sum: Uint32Array,
  reveals: UnmaskReveal[],
): Promise<Uint32Array> {
  checkConfig(cfg);
  const byId = new Map(u2.map((a) => [a.id, a]));
  const inU3 = new Set(u3);
  if (inU3.size !== u3.length) throw new Error('U3 lists a site twice');
  if (u3.length < cfg.t) throw new Error(`only ${u3.length} masked vectors, threshold is ${cfg.t}`);
  if (reveals.length < cfg.t)
    throw new Error(
      `only ${reveals.length} sites answered the unmasking round, threshold is ${cfg.t}`,
    );
  if (sum.length !== cfg.length)
    throw new Error(`sum of ${sum.length} words, round expects ${cfg.length}`);
  for (const i of u3)
    if (!byId.has(i)) throw new Error(`masked vector from ${i}, which is not in U2`);
  const sharesOf = (j: number, kind: 'bShares' | 'sShares'): Share[] =>
    reveals.map((r) => r[kind].get(j)).filter((s): s is Share => s !== undefined);
  for (const i of u3) {
    const b = combine(sharesOf(i, 'bShares'), cfg.t, SEED_BYTES);
    subInto(sum, await prg(b, cfg.length));
  }
  for (const d of u2) {
    if (inU3.has(d.id)) continue;
    const sk = await importPrivate(combine(sharesOf(d.id, 'sShares'), cfg.t, SEED_BYTES), d.sPub);
    for (const i of u3) {
      const m = await prg(await pairSeed(sk, d.id, i, byId.get(i)!.sPub, cfg.roundId), cfg.length);
      // Site i added PRG(s_id) when i < d and subtracted it when i > d: undo that.
      if (i < d.id) subInto(sum, m);
      else addInto(sum, m);
    }
  }
  return sum;
}
