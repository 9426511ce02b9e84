// The global model to the sites as deltas (issue 18): instead of the whole fp32 model every round,
// the relay sends `global − reference`, quantised, where the reference is the one model every
// up-to-date site already holds. Both sides then advance the reference by the *dequantised* delta
// with the same float32 arithmetic (applyGlobalDelta, which the relay also runs on its own output),
// so relay and sites stay bit-identical, and a checksum of the result rides in the message so a
// site never trains on a model other than the one the relay thinks it holds.
//
// Error feedback: the relay keeps its exact global model apart from the reference, so what one
// round's quantisation dropped (global − reference) is part of the next round's delta. The gap
// between the exact global and what sites hold therefore stays within one quantisation step
// (per block: max|delta| / 254 for int8) instead of adding up over rounds.
//
// int8 is block-wise: each block of INT8_BLOCK values has its own float32 scale, so one large
// value (a norm layer's bias) does not flatten a whole tensor's small ones to zero. A tensor's
// bytes are [scales: float32 × blocks][q: int8 × n]. fp16 is IEEE half per value.
import { crc32 } from '../util/crc32.ts';
import { encodeHalf, halfTable } from '../util/float16.ts';
import { sameShape, type NamedWeights } from '../model/named-weights.ts';
import { prod } from '../util/numeric.ts';
import { DecodeError, type TensorEntry } from '../model/weights-codec.ts';

export type DeltaEncoding = 'fp16' | 'int8';
export type BroadcastEncoding = 'fp32' | DeltaEncoding;

/** Values per int8 block: a float32 scale per 1024 values costs 0.4 % over plain int8. */
export const INT8_BLOCK = 1024;

export interface EncodedDelta {
  entries: TensorEntry[];
  payload: Uint8Array;
}

/**
 * A checksum of a model's float32 bits, tensor by tensor in the given order (CRC-32 chained over
 * every tensor's bytes, with its name). It detects a site and relay that disagree about the model
 * (a lost or misapplied delta); it is not a defence against a forger (frames are signed for that).
 */
export function modelChecksum(w: NamedWeights): string {
  let c = 0;
  const enc = new TextEncoder();
  for (const [name, t] of w) {
    c = crc32(enc.encode(name), c);
    c = crc32(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), c);
  }
  return c.toString(16).padStart(8, '0');
}

function blocks(n: number): number {
  return Math.ceil(n / INT8_BLOCK);
}

function byteLength(encoding: DeltaEncoding, n: number): number {
  return encoding === 'fp16' ? 2 * n : 4 * blocks(n) + n;
}

/** Quantises one tensor's delta d (float32) into `out` (its bytes, 4-byte aligned). */
function quantise(d: Float32Array, encoding: DeltaEncoding, out: Uint8Array): void {
  if (encoding === 'fp16') {
    out.set(new Uint8Array(encodeHalf(d).buffer));
    return;
  }
  const nb = blocks(d.length);
  const scales = new Float32Array(out.buffer, out.byteOffset, nb);
  const q = new Int8Array(out.buffer, out.byteOffset + 4 * nb, d.length);
  for (let b = 0; b < nb; b++) {
    const start = b * INT8_BLOCK;
    const end = Math.min(d.length, start + INT8_BLOCK);
    let max = 0;
    for (let i = start; i < end; i++) {
      const a = Math.abs(d[i]);
      if (a > max) max = a;
    }
    // Stored as float32, so the scale the site multiplies by is exactly this one.
    const s = Math.fround(max / 127);
    scales[b] = s;
    if (s === 0) continue; // q stays 0
    for (let i = start; i < end; i++) q[i] = Math.max(-127, Math.min(127, Math.round(d[i] / s)));
  }
}

/**
 * Encodes `target − reference` (tensors of the reference, in its order) and returns it with the
 * reference advanced by the dequantised delta — exactly what applyGlobalDelta gives a site.
 */
export function encodeGlobalDelta(
  target: NamedWeights,
  reference: NamedWeights,
  encoding: DeltaEncoding,
): EncodedDelta & { next: NamedWeights } {
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const [name, r] of reference) {
    const n = r.data.length;
    entries.push({
      name,
      shape: [...r.shape],
      encoding,
      offset,
      byteLength: byteLength(encoding, n),
      crc32: 0,
    });
    offset += byteLength(encoding, n);
    offset += (4 - (offset % 4)) % 4;
  }
  const payload = new Uint8Array(offset);
  const d = new Float32Array(Math.max(0, ...[...reference.values()].map((r) => r.data.length)));
  for (const e of entries) {
    const r = reference.get(e.name)!.data;
    const t = target.get(e.name);
    if (!t || !sameShape(t.shape, e.shape))
      throw new Error(`cannot take a delta of '${e.name}': missing or shape differs`);
    const dn = d.subarray(0, r.length);
    for (let i = 0; i < r.length; i++) dn[i] = t.data[i] - r[i];
    for (let i = 0; i < r.length; i++)
      if (!Number.isFinite(dn[i]))
        throw new Error(`cannot encode '${e.name}': NaN or Inf in the delta`);
    const bytes = payload.subarray(e.offset, e.offset + e.byteLength);
    quantise(dn, encoding, bytes);
    e.crc32 = crc32(bytes);
  }
  return { entries, payload, next: applyGlobalDelta(reference, entries, payload) };
}

/**
 * The reference advanced by an encoded delta: new float32 tensors r + dequantised(delta), each sum
 * rounded to float32. Checks the entries against the reference (names, shapes, sizes, CRC-32s,
 * scales) and throws DecodeError on any mismatch; the reference is not modified.
 */
export function applyGlobalDelta(
  reference: NamedWeights,
  entries: readonly TensorEntry[],
  payload: Uint8Array,
): NamedWeights {
  if (entries.length !== reference.size)
    throw new DecodeError(`a delta of ${entries.length} tensors for a model of ${reference.size}`);
  const out: NamedWeights = new Map();
  const table = halfTable();
  for (const e of entries) {
    const r = reference.get(e.name);
    if (!r) throw new DecodeError(`delta for unknown tensor '${e.name}'`);
    if (out.has(e.name)) throw new DecodeError(`'${e.name}' appears twice`);
    if (!sameShape(r.shape, e.shape))
      throw new DecodeError(`'${e.name}': delta shape [${e.shape}] differs from [${r.shape}]`);
    if (e.encoding !== 'fp16' && e.encoding !== 'int8')
      throw new DecodeError(`'${e.name}': '${e.encoding}' is not a delta encoding`);
    const n = prod(e.shape);
    if (e.byteLength !== byteLength(e.encoding, n))
      throw new DecodeError(
        `'${e.name}': ${e.byteLength} bytes do not fit ${n} ${e.encoding} values`,
      );
    if (e.offset < 0 || e.offset + e.byteLength > payload.length)
      throw new DecodeError(`'${e.name}': payload truncated`);
    // Copy to an aligned buffer: the payload may sit at any offset of a network frame.
    const bytes = payload.slice(e.offset, e.offset + e.byteLength);
    if (crc32(bytes) !== e.crc32)
      throw new DecodeError(`'${e.name}': checksum mismatch (corrupted in transit)`);
    const ref = r.data;
    const data = new Float32Array(n);
    if (e.encoding === 'fp16') {
      const h = new Uint16Array(bytes.buffer, 0, n);
      for (let i = 0; i < n; i++) data[i] = ref[i] + table[h[i]];
    } else {
      const nb = blocks(n);
      const scales = new Float32Array(bytes.buffer, 0, nb);
      const q = new Int8Array(bytes.buffer, 4 * nb, n);
      for (let b = 0; b < nb; b++) {
        const s = scales[b];
        if (!(s >= 0) || !Number.isFinite(s))
          throw new DecodeError(`'${e.name}': block ${b} has an invalid scale`);
        const end = Math.min(n, (b + 1) * INT8_BLOCK);
        for (let i = b * INT8_BLOCK; i < end; i++) data[i] = ref[i] + Math.fround(q[i] * s);
      }
    }
    for (let i = 0; i < n; i++)
      if (!Number.isFinite(data[i])) throw new DecodeError(`'${e.name}': the delta overflows`);
    out.set(e.name, { shape: [...r.shape], data });
  }
  // The reference's order, whatever order the entries came in (the checksum depends on it).
  return new Map([...reference.keys()].map((k) => [k, out.get(k)!]));
}
