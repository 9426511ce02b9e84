// Fixed-point quantisation for secure aggregation: masks are added modulo 2^32, so every site's
// (clipped) float delta is mapped to uint32 words, summed in Z_{2^32} and mapped back once.
//
// q(v) = round(v · 2^f) as a two's-complement int32, stored as uint32 (mod 2^32).
// Error bound: each rounding is off by at most 2^-(f+1) in value units, so the dequantised sum of
// n quantised vectors differs from the exact float sum by at most n·2^-(f+1) per element
// (dequantisation itself is exact: division by a power of two in float64).
// No wrap-around: with every |v| ≤ C (clipping to L2 norm C bounds each element by C), the sum of
// n elements stays within n·(C·2^f + 1/2) < 2^31, which `checkHeadroom` enforces.

export interface QuantParams {
  /** Fractional bits f. */
  fracBits: number;
  /** L2 clip norm C applied before quantising. */
  clip: number;
}

/** Throws unless n sites' sums cannot overflow the signed 32-bit range. */
export function checkHeadroom(p: QuantParams, n: number): void {
  if (!Number.isInteger(p.fracBits) || p.fracBits < 0 || p.fracBits > 30)
    throw new Error(`fracBits must be an integer in [0, 30], got ${p.fracBits}`);
  if (!(p.clip > 0) || !Number.isFinite(p.clip))
    throw new Error(`clip must be positive, got ${p.clip}`);
  if (!Number.isInteger(n) || n < 1) throw new Error(`n must be a positive integer, got ${n}`);
  if (n * (p.clip * 2 ** p.fracBits + 0.5) >= 2 ** 31) {
    throw new Error(
      `sum of ${n} values clipped to ${p.clip} with ${p.fracBits} fractional bits can overflow int32`,
    );
  }
}

/** Scales `x` down (in a copy) so its L2 norm is at most `c`. Returns the copy and the scale used. */
export function clipL2(x: Float32Array, c: number): { data: Float32Array; scale: number } {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  const norm = Math.sqrt(s);
  const scale = norm > c ? c / norm : 1;
  const data = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) data[i] = x[i] * scale;
  // float32 rounding of the scaled copy may overshoot c by an ulp; each element is still ≤ c.
  return { data, scale };
}

/** Clips to L2 norm C, then quantises each element to uint32 (two's complement of round(v·2^f)). */
export function quantize(x: Float32Array, p: QuantParams): Uint32Array {
  checkHeadroom(p, 1);
  const { data } = clipL2(x, p.clip);
  const k = 2 ** p.fracBits;
  const out = new Uint32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) throw new Error(`non-finite value at ${i}`);
    out[i] = Math.round(v * k) >>> 0;
  }
  return out;
}

/** Element-wise a + b mod 2^32, in place into `a`. */
export function addInto(a: Uint32Array, b: Uint32Array): Uint32Array {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) a[i] = (a[i] + b[i]) >>> 0;
  return a;
}

/** Element-wise a − b mod 2^32, in place into `a`. */
export function subInto(a: Uint32Array, b: Uint32Array): Uint32Array {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) a[i] = (a[i] - b[i]) >>> 0;
  return a;
}

/**
 * Maps a (sum of n) quantised vector(s) back to floats: read each word as int32, divide by 2^f.
 * Float64 so the stated bound n·2^-(f+1) holds exactly (a float32 cast adds its own rounding).
 */
export function dequantize(q: Uint32Array, p: Pick<QuantParams, 'fracBits'>): Float64Array {
  const k = 2 ** p.fracBits;
  const out = new Float64Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = (q[i] | 0) / k;
  return out;
}
