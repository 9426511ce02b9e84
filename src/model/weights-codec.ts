// Weight (delta) encoding for the wire: fp32, fp16 (default) or int8 with a per-tensor scale.
// Each tensor carries a CRC-32 of its encoded bytes. No floats ever go through JSON.
import { crc32 } from '../util/crc32.ts';
import { decodeHalf, encodeHalf, halfTable } from '../util/float16.ts';
import { type NamedWeights } from './named-weights.ts';
import { prod } from '../util/numeric.ts';

export type Encoding = 'fp32' | 'fp16' | 'int8';

export interface TensorEntry {
  name: string;
  shape: number[];
  encoding: Encoding;
  /** int8: value = q * scale. */
  scale?: number;
  /** Byte offset into the payload (aligned to 4) and byte length. */
  offset: number;
  byteLength: number;
  crc32: number;
}

export interface EncodedWeights {
  entries: TensorEntry[];
  payload: Uint8Array;
}

const BYTES: Record<Encoding, number> = { fp32: 4, fp16: 2, int8: 1 };

function encodeTensor(
  data: Float32Array,
  encoding: Encoding,
): { bytes: Uint8Array; scale?: number } {
  if (encoding === 'fp32')
    return { bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  if (encoding === 'fp16') {
    const h = encodeHalf(data);
    return { bytes: new Uint8Array(h.buffer) };
  }
  // Symmetric int8: scale = max|x| / 127, so the largest magnitude maps to ±127 exactly.
  let max = 0;
  for (let i = 0; i < data.length; i++) max = Math.max(max, Math.abs(data[i]));
  const scale = max > 0 ? max / 127 : 1;
  const q = new Int8Array(data.length);
  for (let i = 0; i < data.length; i++)
    q[i] = Math.max(-127, Math.min(127, Math.round(data[i] / scale)));
  return { bytes: new Uint8Array(q.buffer), scale };
}

export function encodeWeights(w: NamedWeights, encoding: Encoding = 'fp16'): EncodedWeights {
  const parts: Uint8Array[] = [];
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const [name, t] of w) {
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i]))
        throw new Error(`cannot encode '${name}': it contains NaN or Inf`);
    }
    const { bytes, scale } = encodeTensor(t.data, encoding);
    entries.push({
      name,
      shape: [...t.shape],
      encoding,
      ...(scale !== undefined ? { scale } : {}),
      offset,
      byteLength: bytes.length,
      crc32: crc32(bytes),
    });
    parts.push(bytes);
    offset += bytes.length;
    const pad = (4 - (offset % 4)) % 4;
    if (pad) {
      parts.push(new Uint8Array(pad));
      offset += pad;
    }
  }
  const payload = new Uint8Array(offset);
  let o = 0;
  for (const p of parts) {
    payload.set(p, o);
    o += p.length;
  }
  return { entries, payload };
}

export class DecodeError extends Error {}

export function decodeWeights(entries: TensorEntry[], payload: Uint8Array): NamedWeights {
  const out: NamedWeights = new Map();
  for (const e of entries) {
    const n = prod(e.shape);
    if (!(e.encoding in BYTES))
      throw new DecodeError(`'${e.name}': unknown encoding '${e.encoding}'`);
    if (e.byteLength !== n * BYTES[e.encoding])
      throw new DecodeError(
        `'${e.name}': ${e.byteLength} bytes do not fit shape [${e.shape}] in ${e.encoding}`,
      );
    if (e.offset < 0 || e.offset + e.byteLength > payload.length)
      throw new DecodeError(`'${e.name}': payload truncated`);
    if (out.has(e.name)) throw new DecodeError(`'${e.name}' appears twice`);
    // Copy to an aligned buffer: the payload slice may sit at any offset of a network frame.
    const bytes = payload.slice(e.offset, e.offset + e.byteLength);
    if (crc32(bytes) !== e.crc32)
      throw new DecodeError(`'${e.name}': checksum mismatch (corrupted in transit)`);
    let data: Float32Array;
    if (e.encoding === 'fp32') data = new Float32Array(bytes.buffer);
    else if (e.encoding === 'fp16') data = decodeHalf(new Uint16Array(bytes.buffer));
    else {
      const scale = e.scale;
      if (scale === undefined || !Number.isFinite(scale) || scale <= 0)
        throw new DecodeError(`'${e.name}': int8 tensor without a valid scale`);
      const q = new Int8Array(bytes.buffer);
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = q[i] * scale;
    }
    out.set(e.name, { shape: [...e.shape], data });
  }
  return out;
}

/** One encoded tensor's values as an aligned typed view of the payload (copied only when unaligned). */
export type TensorView =
  | { encoding: 'fp32'; values: Float32Array }
  | { encoding: 'fp16'; bits: Uint16Array }
  | { encoding: 'int8'; q: Int8Array; scale: number };

/**
 * The checks decodeWeights makes on one entry (encoding, size, bounds, int8 scale) and a typed view
 * of its bytes, without decoding: for callers that decode straight into something else (the
 * relay's running sum, fed/encoded-update.ts). The CRC is the caller's to check (`viewBytes`).
 */
export function tensorView(e: TensorEntry, payload: Uint8Array): TensorView {
  const n = prod(e.shape);
  if (!(e.encoding in BYTES))
    throw new DecodeError(`'${e.name}': unknown encoding '${e.encoding}'`);
  if (e.byteLength !== n * BYTES[e.encoding])
    throw new DecodeError(
      `'${e.name}': ${e.byteLength} bytes do not fit shape [${e.shape}] in ${e.encoding}`,
    );
  if (e.offset < 0 || e.offset + e.byteLength > payload.length)
    throw new DecodeError(`'${e.name}': payload truncated`);
  const start = payload.byteOffset + e.offset;
  const align = BYTES[e.encoding];
  // A typed view needs its element alignment; a network frame may put the payload anywhere.
  const buf =
    start % align === 0 ? payload.buffer : payload.slice(e.offset, e.offset + e.byteLength).buffer;
  const at = start % align === 0 ? start : 0;
  if (e.encoding === 'fp32') return { encoding: 'fp32', values: new Float32Array(buf, at, n) };
  if (e.encoding === 'fp16') return { encoding: 'fp16', bits: new Uint16Array(buf, at, n) };
  const scale = e.scale;
  if (scale === undefined || !Number.isFinite(scale) || scale <= 0)
    throw new DecodeError(`'${e.name}': int8 tensor without a valid scale`);
  return { encoding: 'int8', q: new Int8Array(buf, at, n), scale };
}

/** The encoded bytes a view holds (what the entry's CRC-32 covers), or those of values [from, to). */
export function viewBytes(v: TensorView, from = 0, to = viewLength(v)): Uint8Array {
  const a = v.encoding === 'fp32' ? v.values : v.encoding === 'fp16' ? v.bits : v.q;
  const size = a.BYTES_PER_ELEMENT;
  return new Uint8Array(a.buffer, a.byteOffset + from * size, (to - from) * size);
}

/** Number of values a view holds. */
export function viewLength(v: TensorView): number {
  return v.encoding === 'fp32'
    ? v.values.length
    : v.encoding === 'fp16'
      ? v.bits.length
      : v.q.length;
}

// Decoding fused with what the relay does with the values (fed/encoded-update.ts, aggregate.ts):
// each value is the float32 decodeWeights would store (int8: q·scale rounded to float32).

// Squares of every half value in float64: exact (a float32 squared has at most 48 significant
// bits), one lookup per value.
let squares: Float64Array | undefined;
function halfSquares(): Float64Array {
  if (!squares) {
    const t = halfTable();
    squares = new Float64Array(65536);
    for (let h = 0; h < 65536; h++) squares[h] = t[h] * t[h];
  }
  return squares;
}

/** The 256 values an int8 tensor can hold (index q + 128), each rounded to float32 as decodeWeights stores it. */
function int8Values(scale: number): Float64Array {
  const t = new Float64Array(256);
  for (let q = -128; q < 128; q++) t[q + 128] = Math.fround(q * scale);
  return t;
}

/**
 * Σ value² over values [from, to) of a view, in float64. Four running sums, added as
 * (s0 + s1) + (s2 + s3) at the end: a single running sum is a chain of dependent additions, bound
 * by the adder's latency (it was the costliest part of the relay's check); four chains overlap.
 * The order is fixed, so the result is deterministic; it may differ from a one-chain sum (l2Norm)
 * in the last bits. A NaN or ±Inf value makes the result non-finite (squares are never negative,
 * so nothing cancels).
 */
export function sumSquares(v: TensorView, from = 0, to = viewLength(v)): number {
  let s0 = 0,
    s1 = 0,
    s2 = 0,
    s3 = 0;
  const m = to - ((to - from) % 4);
  let i = from;
  if (v.encoding === 'fp32') {
    const d = v.values;
    for (; i < m; i += 4) {
      s0 += d[i] * d[i];
      s1 += d[i + 1] * d[i + 1];
      s2 += d[i + 2] * d[i + 2];
      s3 += d[i + 3] * d[i + 3];
    }
    for (; i < to; i++) s0 += d[i] * d[i];
  } else if (v.encoding === 'fp16') {
    const t = halfSquares();
    const b = v.bits;
    for (; i < m; i += 4) {
      s0 += t[b[i]];
      s1 += t[b[i + 1]];
      s2 += t[b[i + 2]];
      s3 += t[b[i + 3]];
    }
    for (; i < to; i++) s0 += t[b[i]];
  } else {
    const x = int8Values(v.scale);
    const t = x.map((y) => y * y);
    const q = v.q;
    for (; i < m; i += 4) {
      s0 += t[q[i] + 128];
      s1 += t[q[i + 1] + 128];
      s2 += t[q[i + 2] + 128];
      s3 += t[q[i + 3] + 128];
    }
    for (; i < to; i++) s0 += t[q[i] + 128];
  }
  return s0 + s1 + (s2 + s3);
}

/**
 * sum[i] += k · value[i] for i in [from, to) (the streaming mean's accumulation; the whole view by
 * default). Unrolled by four: every element gets the same single multiply-add (bit-identical to
 * adding decoded values), with a quarter of the loop overhead.
 */
export function addScaled(
  v: TensorView,
  sum: Float64Array,
  k: number,
  from = 0,
  to = sum.length,
): void {
  const m = to - ((to - from) % 4);
  let i = from;
  if (v.encoding === 'fp32') {
    const d = v.values;
    for (; i < m; i += 4) {
      sum[i] += k * d[i];
      sum[i + 1] += k * d[i + 1];
      sum[i + 2] += k * d[i + 2];
      sum[i + 3] += k * d[i + 3];
    }
    for (; i < to; i++) sum[i] += k * d[i];
  } else if (v.encoding === 'fp16') {
    const t = halfTable();
    const b = v.bits;
    for (; i < m; i += 4) {
      sum[i] += k * t[b[i]];
      sum[i + 1] += k * t[b[i + 1]];
      sum[i + 2] += k * t[b[i + 2]];
      sum[i + 3] += k * t[b[i + 3]];
    }
    for (; i < to; i++) sum[i] += k * t[b[i]];
  } else {
    // A lookup of the 256 possible values instead of a multiply and a rounding per value.
    const t = int8Values(v.scale);
    const q = v.q;
    for (; i < m; i += 4) {
      sum[i] += k * t[q[i] + 128];
      sum[i + 1] += k * t[q[i + 1] + 128];
      sum[i + 2] += k * t[q[i + 2] + 128];
      sum[i + 3] += k * t[q[i + 3] + 128];
    }
    for (; i < to; i++) sum[i] += k * t[q[i] + 128];
  }
}

/** out[i] = value[i] · scale, rounded to float32 (what the robust mean keeps). */
export function storeScaled(v: TensorView, out: Float32Array, scale: number): void {
  if (v.encoding === 'fp32') {
    const d = v.values;
    for (let i = 0; i < out.length; i++) out[i] = d[i] * scale;
  } else if (v.encoding === 'fp16') {
    const t = halfTable();
    const b = v.bits;
    for (let i = 0; i < out.length; i++) out[i] = t[b[i]] * scale;
  } else {
    const { q, scale: s } = v;
    for (let i = 0; i < out.length; i++) out[i] = Math.fround(q[i] * s) * scale;
  }
}
