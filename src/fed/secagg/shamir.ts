// Shamir t-of-n secret sharing of byte strings over GF(p), p = 2^127 − 1 (a Mersenne prime).
// The secret is cut into 15-byte chunks (each < 2^120 < p); every chunk is the constant term of
// its own random polynomial of degree t − 1, evaluated at x = 1..n. Any t shares recover the
// secret by Lagrange interpolation at 0; any t − 1 shares are consistent with every possible
// secret (perfect secrecy), so they reveal nothing.

export const P = (1n << 127n) - 1n;
const CHUNK = 15; // bytes per field element of secret
const ELEM = 16; // bytes per serialised field element

export interface Share {
  /** Evaluation point, 1..n (the recipient's index + 1). */
  x: number;
  /** One 16-byte big-endian field element per chunk of the secret. */
  y: Uint8Array;
}

function mod(a: bigint): bigint {
  const r = a % P;
  return r < 0n ? r + P : r;
}

function inv(a: bigint): bigint {
  // Extended Euclid over integers.
  let [r0, r1] = [mod(a), P];
  let [s0, s1] = [1n, 0n];
  if (r0 === 0n) throw new Error('no inverse of 0');
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0);
}

function bytesToBig(b: Uint8Array): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

function bigToBytes(v: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Uniform field element from the platform CSPRNG (rejection sampling on 127 bits). */
export function randomElement(): bigint {
  const buf = new Uint8Array(ELEM);
  for (;;) {
    globalThis.crypto.getRandomValues(buf);
    buf[0] &= 0x7f;
    const v = bytesToBig(buf);
    if (v < P) return v;
  }
}

function evalPoly(coeffs: bigint[], x: bigint): bigint {
  let acc = 0n;
  for (let i = coeffs.length - 1; i >= 0; i--) acc = mod(acc * x + coeffs[i]);
  return acc;
}

function chunks(secret: Uint8Array): bigint[] {
  const out: bigint[] = [];
  for (let o = 0; o < secret.length; o += CHUNK)
    out.push(bytesToBig(secret.subarray(o, o + CHUNK)));
  return out;
}

/** Splits `secret` into n shares, any t of which reconstruct it (1 ≤ t ≤ n < p). */
export function split(secret: Uint8Array, t: number, n: number): Share[] {
  if (!Number.isInteger(t) || !Number.isInteger(n) || t < 1 || t > n || n > 65535)
    throw new Error(`invalid threshold ${t} of ${n}`);
  const cs = chunks(secret);
  const shares: Share[] = Array.from({ length: n }, (_, i) => ({
    x: i + 1,
    y: new Uint8Array(cs.length * ELEM),
  }));
  cs.forEach((c, k) => {
    const coeffs = [c];
    for (let d = 1; d < t; d++) coeffs.push(randomElement());
    for (const s of shares) s.y.set(bigToBytes(evalPoly(coeffs, BigInt(s.x)), ELEM), k * ELEM);
  });
  return shares;
}

/** Lagrange interpolation at 0 of the points (x_k, y_k). */
export function interpolateAt0(points: Array<[bigint, bigint]>): bigint {
  let acc = 0n;
  for (let i = 0; i < points.length; i++) {
    let num = 1n;
    let den = 1n;
    for (let j = 0; j < points.length; j++) {
      if (i === j) continue;
      num = mod(num * -points[j][0]);
      den = mod(den * (points[i][0] - points[j][0]));
    }
    acc = mod(acc + points[i][1] * num * inv(den));
  }
  return acc;
}

/**
 * Recovers a secret of `byteLength` bytes from shares. Throws with fewer than `t` shares or
 * duplicate points; with t or more distinct honest shares the result is exact. (Interpolating
 * fewer than t shares directly, via `interpolateAt0`, yields an unrelated value.)
 */
export function combine(shares: Share[], t: number, byteLength: number): Uint8Array {
  const distinct = new Map<number, Share>();
  for (const s of shares) distinct.set(s.x, s);
  if (distinct.size !== shares.length) throw new Error('duplicate share points');
  if (shares.length < t) throw new Error(`need ${t} shares, got ${shares.length}`);
  const use = [...distinct.values()].slice(0, t);
  const nChunks = Math.ceil(byteLength / CHUNK);
  const out = new Uint8Array(byteLength);
  for (let k = 0; k < nChunks; k++) {
    const pts = use.map((s): [bigint, bigint] => {
      if (s.y.length !== nChunks * ELEM)
        throw new Error(`share holds ${s.y.length} bytes, expected ${nChunks * ELEM}`);
      return [BigInt(s.x), bytesToBig(s.y.subarray(k * ELEM, (k + 1) * ELEM))];
    });
    const v = interpolateAt0(pts);
    const len = Math.min(CHUNK, byteLength - k * CHUNK);
    if (v >> BigInt(8 * len) !== 0n)
      throw new Error('shares are inconsistent (chunk out of range)');
    out.set(bigToBytes(v, len), k * CHUNK);
  }
  return out;
}

/** Field-element view of a share's chunk k (for tests and auditing). */
export function shareElement(s: Share, k: number): bigint {
  return bytesToBig(s.y.subarray(k * ELEM, (k + 1) * ELEM));
}
