// Weight (delta) encoding for the wire: fp32, fp16 (default) or int8 with a per-tensor scale.
// Each tensor carries a CRC-32 of its encoded bytes. No floats ever go through JSON.
import { crc32 } from '../util/crc32.ts';
import { decodeHalf, encodeHalf } from '../util/float16.ts';
import { numel, type NamedWeights } from './named-weights.ts';

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

function encodeTensor(data: Float32Array, encoding: Encoding): { bytes: Uint8Array; scale?: number } {
  if (encoding === 'fp32') return { bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  if (encoding === 'fp16') {
    const h = encodeHalf(data);
    return { bytes: new Uint8Array(h.buffer) };
  }
  // Symmetric int8: scale = max|x| / 127, so the largest magnitude maps to ±127 exactly.
  let max = 0;
  for (let i = 0; i < data.length; i++) max = Math.max(max, Math.abs(data[i]));
  const scale = max > 0 ? max / 127 : 1;
  const q = new Int8Array(data.length);
  for (let i = 0; i < data.length; i++) q[i] = Math.max(-127, Math.min(127, Math.round(data[i] / scale)));
  return { bytes: new Uint8Array(q.buffer), scale };
}

export function encodeWeights(w: NamedWeights, encoding: Encoding = 'fp16'): EncodedWeights {
  const parts: Uint8Array[] = [];
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const [name, t] of w) {
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) throw new Error(`cannot encode '${name}': it contains NaN or Inf`);
    }
    const { bytes, scale } = encodeTensor(t.data, encoding);
    entries.push({ name, shape: [...t.shape], encoding, ...(scale !== undefined ? { scale } : {}), offset, byteLength: bytes.length, crc32: crc32(bytes) });
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
    const n = numel(e.shape);
    if (!(e.encoding in BYTES)) throw new DecodeError(`'${e.name}': unknown encoding '${e.encoding}'`);
    if (e.byteLength !== n * BYTES[e.encoding]) throw new DecodeError(`'${e.name}': ${e.byteLength} bytes do not fit shape [${e.shape}] in ${e.encoding}`);
    if (e.offset < 0 || e.offset + e.byteLength > payload.length) throw new DecodeError(`'${e.name}': payload truncated`);
    if (out.has(e.name)) throw new DecodeError(`'${e.name}' appears twice`);
    // Copy to an aligned buffer: the payload slice may sit at any offset of a network frame.
    const bytes = payload.slice(e.offset, e.offset + e.byteLength);
    if (crc32(bytes) !== e.crc32) throw new DecodeError(`'${e.name}': checksum mismatch (corrupted in transit)`);
    let data: Float32Array;
    if (e.encoding === 'fp32') data = new Float32Array(bytes.buffer);
    else if (e.encoding === 'fp16') data = decodeHalf(new Uint16Array(bytes.buffer));
    else {
      const scale = e.scale;
      if (scale === undefined || !Number.isFinite(scale) || scale <= 0) throw new DecodeError(`'${e.name}': int8 tensor without a valid scale`);
      const q = new Int8Array(bytes.buffer);
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = q[i] * scale;
    }
    out.set(e.name, { shape: [...e.shape], data });
  }
  return out;
}
