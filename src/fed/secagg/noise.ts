// Standard normal samples from the platform CSPRNG (Box–Muller on 53-bit uniforms), for the DP
// noise each site adds to its clipped delta. Floating-point Gaussian sampling is not the exact
// mechanism the accountant assumes (see dp.ts and docs/secure-aggregation.md).

const CHUNK_WORDS = 16384; // getRandomValues fills at most 65,536 bytes per call

/** Fills `out` with independent N(0, 1) samples. */
export function cryptoGaussian(out: Float64Array): void {
  const words = new Uint32Array(CHUNK_WORDS);
  let w = CHUNK_WORDS;
  const uniform = (): number => {
    if (w + 2 > CHUNK_WORDS) {
      globalThis.crypto.getRandomValues(words);
      w = 0;
    }
    // 53 random bits in (0, 1): never 0, so the logarithm below is finite.
    const hi = words[w++] >>> 5;
    const lo = words[w++] >>> 6;
    return (hi * 67108864 + lo + 0.5) / 9007199254740992;
  };
  for (let i = 0; i < out.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const a = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(a);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(a);
  }
}
