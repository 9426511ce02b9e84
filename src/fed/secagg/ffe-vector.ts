// Fingerprints under secure aggregation: the private FFE summary (src/fingerprint/ffe.ts) as a
// fixed-length uint32 vector whose SUM over the sites decodes to the merged summary, so the relay
// runs FFE through the same sum-only path as the model rounds. The layout depends only on the
// config (ffeCells, ffeChannels), so it is agreed before any site sends.
//
// What a merged private summary needs, and how each part becomes a sum:
//  * Weighted means (intensity mean/median/std/p0.5/p99.5, median relative size) are Σ w·v / Σ w
//    with w = the site's case count. Each w·v is an exact 128-bit two's-complement fixed-point
//    integer with 64 fractional bits, split into eight 16-bit limbs, one word each: a word sums at
//    most 65,535 sites' limbs without wrapping, and the relay carries the limbs into the exact sum
//    with BigInt. The mean is then rounded once (correctly, up to a truncation 2^-64 below the last
//    bit), where FednnU-Net's float64 loop rounds at every step; the two agree to a few ulps.
//  * The per-axis multisets of (spacing, size) pairs and the per-channel multisets of the sites'
//    max and min intensities (the merge takes the max of the maxima, the min of the minima) are
//    not sums of numbers but multisets of keys: an invertible Bloom lookup table (IBLT, Goodrich &
//    Mitzenmacher 2011) is a linear sketch of a multiset, so the sum of the sites' tables is the
//    table of the union, and peeling it lists every key with its multiplicity, exactly. A key is
//    six 16-bit limbs (tag, the float64's four limbs, size); a cell holds the count, the six limb
//    sums and a checksum Σ h(key). A cell is "pure" (one distinct key) when its limb sums divide by
//    its count, the checksum matches and the key hashes to this cell; a mixed cell passing all
//    three has probability about 2^-32. The table decodes when it has comfortably more cells than
//    distinct keys (about 1.3× asymptotically; the default 3,072 cells is meant for ≤ 1,000
//    distinct keys: per axis, at most the number of distinct case sizes), else decoding stops with
//    a clear error.
// What the relay learns is therefore the merged summary plus the multisets of per-site max and
// min intensities (not which site had which) and the number of sites: docs/secure-aggregation.md.
import {
  summaryCaseCount,
  PRIVATE_FORMAT,
  type PrivateFingerprintSummary,
} from '../../fingerprint/ffe.ts';
import type { ChannelIntensityProperties } from '../../fingerprint/types.ts';

const STATS = ['mean', 'median', 'std', 'percentile_00_5', 'percentile_99_5'] as const;
const FIX_LIMBS = 8;
const FIX_FRAC = 64n;
const FIX_MOD = 1n << BigInt(16 * FIX_LIMBS);
const KEY_LIMBS = 6;
const CELL_WORDS = 2 + KEY_LIMBS; // count, key limbs, checksum
const AXES = 3;
const TAG_AXIS = 1; // tags 1..3: axis z, y, x
const TAG_MAX = 16; // 16 + channel
const TAG_MIN = 40; // 40 + channel
const MAX_CHANNELS = 24;

export interface FfeLayout {
  cells: number;
  channels: number;
  /** Word offsets: sites, cases, median relative size, channel blocks, the IBLT. */
  mrs: number;
  channel: number;
  channelWords: number;
  table: number;
  length: number;
}

export function ffeLayout(cells: number, channels: number): FfeLayout {
  if (!Number.isInteger(cells) || cells < 3 || cells % 3 !== 0)
    throw new Error(`FFE sketch cells must be a positive multiple of 3, got ${cells}`);
  if (!Number.isInteger(channels) || channels < 1 || channels > MAX_CHANNELS)
    throw new Error(`FFE channel slots must be 1..${MAX_CHANNELS}, got ${channels}`);
  const mrs = 2;
  const channel = mrs + FIX_LIMBS;
  const channelWords = 1 + STATS.length * FIX_LIMBS;
  const table = channel + channels * channelWords;
  return { cells, channels, mrs, channel, channelWords, table, length: table + cells * CELL_WORDS };
}

// --- exact fixed point -----------------------------------------------------------------------

/** round(w·v·2^64) exactly (ties to even), from the float64's bits. */
export function fixedPoint(v: number, w: number): bigint {
  if (!Number.isFinite(v)) throw new Error(`cannot encode ${v}`);
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, v);
  const hi = dv.getUint32(0);
  const lo = dv.getUint32(4);
  const neg = hi >>> 31 === 1;
  const e = (hi >>> 20) & 0x7ff;
  const frac = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  const m = e === 0 ? frac : frac | (1n << 52n);
  const shift = BigInt(e === 0 ? 1 : e) - 1075n + FIX_FRAC;
  let x = BigInt(w) * m;
  if (shift >= 0n) x <<= shift;
  else {
    const d = 1n << -shift;
    const q = x / d;
    const r = x - q * d;
    x = 2n * r > d || (2n * r === d && (q & 1n) === 1n) ? q + 1n : q;
  }
  if (x >= 1n << BigInt(16 * FIX_LIMBS - 1))
    throw new Error(`value ${v} × weight ${w} is out of the fixed-point range`);
  return neg ? -x : x;
}

function putFixed(out: Uint32Array, at: number, x: bigint): void {
  let u = ((x % FIX_MOD) + FIX_MOD) % FIX_MOD;
  for (let j = 0; j < FIX_LIMBS; j++) {
    out[at + j] = Number(u & 0xffffn);
    u >>= 16n;
  }
}

function getFixed(sum: Uint32Array, at: number): bigint {
  let u = 0n;
  for (let j = FIX_LIMBS - 1; j >= 0; j--) u = (u << 16n) + BigInt(sum[at + j]);
  u %= FIX_MOD;
  return u >= FIX_MOD / 2n ? u - FIX_MOD : u;
}

/** S / (W·2^64) as the nearest float64 (up to a truncation far below its last bit). */
function fixedMean(s: bigint, w: number): number {
  const q = (s << 64n) / BigInt(w);
  return Number(q) / 2 ** 128;
}

// --- IBLT ------------------------------------------------------------------------------------

type Key = number[]; // KEY_LIMBS values < 2^16

function mix(key: Key, seed: number): number {
  let h = (seed * 0x9e3779b9) >>> 0;
  for (const x of key) {
    h = Math.imul(h ^ x, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** The key's cell in each of the three sub-tables. */
function positions(key: Key, cells: number): number[] {
  const sub = cells / 3;
  return [0, 1, 2].map((k) => k * sub + (mix(key, k + 1) % sub));
}

const checksum = (key: Key) => mix(key, 101);

function keyOf(tag: number, value: number, size: number): Key {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, value);
  return [tag, dv.getUint16(0), dv.getUint16(2), dv.getUint16(4), dv.getUint16(6), size];
}

function valueOf(key: Key): number {
  const dv = new DataView(new ArrayBuffer(8));
  for (let j = 0; j < 4; j++) dv.setUint16(2 * j, key[1 + j]);
  return dv.getFloat64(0);
}

function insert(out: Uint32Array, l: FfeLayout, key: Key, count: number): void {
  const h = checksum(key);
  for (const p of positions(key, l.cells)) {
    const at = l.table + p * CELL_WORDS;
    out[at] = (out[at] + count) >>> 0;
    for (let j = 0; j < KEY_LIMBS; j++) out[at + 1 + j] = (out[at + 1 + j] + count * key[j]) >>> 0;
    out[at + 1 + KEY_LIMBS] = (out[at + 1 + KEY_LIMBS] + Math.imul(count, h)) >>> 0;
  }
}

/** Peels the summed table: every key with its multiplicity, or an error when it cannot. */
function peel(sum: Uint32Array, l: FfeLayout): Array<{ key: Key; count: number }> {
  const t = sum.slice(l.table, l.table + l.cells * CELL_WORDS);
  const out: Array<{ key: Key; count: number }> = [];
  const pureKey = (p: number): Key | null => {
    const at = p * CELL_WORDS;
    const c = t[at];
    if (c === 0) return null;
    const key: Key = [];
    for (let j = 0; j < KEY_LIMBS; j++) {
      const s = t[at + 1 + j];
      if (s % c !== 0 || s / c > 0xffff) return null;
      key.push(s / c);
    }
    if (Math.imul(c, checksum(key)) >>> 0 !== t[at + 1 + KEY_LIMBS]) return null;
    return positions(key, l.cells).includes(p) ? key : null;
  };
  let progress = true;
  while (progress) {
    progress = false;
    for (let p = 0; p < l.cells; p++) {
      const key = pureKey(p);
      if (!key) continue;
      const c = t[p * CELL_WORDS];
      out.push({ key, count: c });
      const h = checksum(key);
      for (const q of positions(key, l.cells)) {
        const at = q * CELL_WORDS;
        t[at] = (t[at] - c) >>> 0;
        for (let j = 0; j < KEY_LIMBS; j++) t[at + 1 + j] = (t[at + 1 + j] - c * key[j]) >>> 0;
        t[at + 1 + KEY_LIMBS] = (t[at + 1 + KEY_LIMBS] - Math.imul(c, h)) >>> 0;
      }
      progress = true;
    }
  }
  if (t.some((v) => v !== 0))
    throw new Error(
      `the FFE sketch of ${l.cells} cells holds too many distinct (spacing, size) values to decode; raise the sketch size (privacy.ffeCells)`,
    );
  return out;
}

// --- encode / decode -------------------------------------------------------------------------

/** A site's vector for its private summary. */
export function encodeSummary(s: PrivateFingerprintSummary, l: FfeLayout): Uint32Array {
  if (s.private_ffe !== PRIVATE_FORMAT)
    throw new Error(`not a private fingerprint summary (private_ffe: ${String(s.private_ffe)})`);
  if (s.axes.length !== AXES)
    throw new Error(`secure FFE handles ${AXES}-axis fingerprints, this one has ${s.axes.length}`);
  const w = summaryCaseCount(s);
  if (w > 0xffff)
    throw new Error(`secure FFE handles at most 65,535 cases per site, this site has ${w}`);
  const out = new Uint32Array(l.length);
  out[0] = 1;
  out[1] = w;
  putFixed(out, l.mrs, fixedPoint(s.median_relative_size_after_cropping, w));
  const channels = Object.keys(s.foreground_intensity_properties_per_channel);
  if (channels.length > l.channels)
    throw new Error(
      `this site has ${channels.length} image channels; the federation's FFE layout has ${l.channels} slots`,
    );
  channels.forEach((name, k) => {
    if (name !== String(k))
      throw new Error(`intensity channels must be named 0..${channels.length - 1}, got '${name}'`);
    const p = s.foreground_intensity_properties_per_channel[name];
    const at = l.channel + k * l.channelWords;
    out[at] = 1;
    STATS.forEach((stat, i) => putFixed(out, at + 1 + i * FIX_LIMBS, fixedPoint(p[stat], w)));
    insert(out, l, keyOf(TAG_MAX + k, p.max, 0), 1);
    insert(out, l, keyOf(TAG_MIN + k, p.min, 0), 1);
  });
  s.axes.forEach((groups, a) => {
    for (const [spacing, sizes] of groups) {
      if (!(spacing > 0) || !Number.isFinite(spacing))
        throw new Error(`invalid spacing ${spacing} on axis ${a}`);
      const counts = new Map<number, number>();
      for (const size of sizes) {
        if (!Number.isInteger(size) || size < 0 || size > 0xffff)
          throw new Error(`size ${size} on axis ${a} is not an integer in 0..65535`);
        counts.set(size, (counts.get(size) ?? 0) + 1);
      }
      for (const [size, c] of counts) insert(out, l, keyOf(TAG_AXIS + a, spacing, size), c);
    }
  });
  return out;
}

/**
 * The relay's side: the summed vector → the merged private summary, equal to
 * `aggregatePrivateSummaries` of the sites' summaries (weights = case counts) except that the
 * weighted means are rounded once instead of at every step. Throws on inconsistent input.
 */
export function decodeSummarySum(sum: Uint32Array, l: FfeLayout): PrivateFingerprintSummary {
  if (sum.length !== l.length)
    throw new Error(`FFE sum of ${sum.length} words, the layout has ${l.length}`);
  const sites = sum[0];
  const cases = sum[1];
  if (sites < 1 || cases < 1) throw new Error('the FFE sum holds no site');
  const keys = peel(sum, l);
  const intensities: Record<string, ChannelIntensityProperties> = {};
  for (let k = 0; k < l.channels; k++) {
    const at = l.channel + k * l.channelWords;
    const present = sum[at];
    if (present === 0) {
      if (k === 0) throw new Error('no site reported intensity channel 0');
      continue;
    }
    if (present !== sites || Object.keys(intensities).length !== k)
      throw new Error(
        `sites disagree on image channels: ${present} of ${sites} sites have channel ${k}; FFE needs the same channels everywhere`,
      );
    const extremes = (tag: number) => keys.filter((x) => x.key[0] === tag);
    const maxima = extremes(TAG_MAX + k);
    const minima = extremes(TAG_MIN + k);
    const n = (xs: typeof maxima) => xs.reduce((a, x) => a + x.count, 0);
    if (n(maxima) !== sites || n(minima) !== sites)
      throw new Error(
        `channel ${k}: the sketch holds ${n(maxima)} maxima and ${n(minima)} minima for ${sites} sites`,
      );
    const stat = (i: number) => fixedMean(getFixed(sum, at + 1 + i * FIX_LIMBS), cases);
    // As FednnU-Net: max/min through float32, the rest case-weighted means; keys alphabetical.
    intensities[String(k)] = {
      max: Math.fround(Math.max(...maxima.map((x) => valueOf(x.key)))),
      mean: stat(0),
      median: stat(1),
      min: Math.fround(Math.min(...minima.map((x) => valueOf(x.key)))),
      percentile_00_5: stat(3),
      percentile_99_5: stat(4),
      std: stat(2),
    };
  }
  const axes = Array.from({ length: AXES }, (_, a) => {
    const bySpacing = new Map<number, number[]>();
    let total = 0;
    for (const { key, count } of keys.filter((x) => x.key[0] === TAG_AXIS + a)) {
      const spacing = valueOf(key);
      const list = bySpacing.get(spacing) ?? [];
      for (let c = 0; c < count; c++) list.push(key[5]);
      bySpacing.set(spacing, list);
      total += count;
    }
    if (total !== cases)
      throw new Error(`axis ${a} lists ${total} cases, the sites reported ${cases}`);
    return [...bySpacing.entries()]
      .sort((x, y) => x[0] - y[0])
      .map(([spacing, sizes]): [number, number[]] => [spacing, sizes.sort((x, y) => x - y)]);
  });
  const known = new Set([
    TAG_AXIS,
    TAG_AXIS + 1,
    TAG_AXIS + 2,
    ...Array.from({ length: l.channels }, (_, k) => [TAG_MAX + k, TAG_MIN + k]).flat(),
  ]);
  const stray = keys.find((x) => !known.has(x.key[0]));
  if (stray) throw new Error(`the FFE sketch holds a key with unknown tag ${stray.key[0]}`);
  return {
    private_ffe: PRIVATE_FORMAT,
    foreground_intensity_properties_per_channel: intensities,
    median_relative_size_after_cropping: fixedMean(getFixed(sum, l.mrs), cases),
    axes,
  };
}
