// Small helpers shared by the training data path (sampler, augmentation, deep supervision).

/** A seeded uniform source in [0, 1), e.g. `mulberry32(seed)` from src/util/rng.ts. */
export type Rng = () => number;

/** Segmentation maps: int8, or int16 when a label exceeds 127 (spec §5.8). */
export type SegArray = Int8Array | Int16Array;

/** Uniform integer in [lo, hi] (both inclusive), like np.random.randint(lo, hi + 1). */
export function randInt(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}

/** Uniform float in [lo, hi). */
export function uniform(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng();
}

/** Standard normal pair by Box–Muller; both values are used by callers that fill fields. */
export function gaussianPair(rng: Rng, out: Float64Array): void {
  const u1 = 1 - rng(); // (0, 1]: log stays finite
  const u2 = rng();
  const r = Math.sqrt(-2 * Math.log(u1));
  out[0] = r * Math.cos(2 * Math.PI * u2);
  out[1] = r * Math.sin(2 * Math.PI * u2);
}

/** Pads a 2- or 3-entry spatial shape to 3 entries (2D as Z = 1) so kernels can loop over (z, y, x). */
export function as3d(shape: readonly number[]): [number, number, number] {
  if (shape.length === 3) return [shape[0], shape[1], shape[2]];
  if (shape.length === 2) return [1, shape[0], shape[1]];
  throw new Error(`expected a 2D or 3D spatial shape, got (${shape.join(', ')})`);
}

export function newSegLike(like: SegArray, n: number): SegArray {
  return like instanceof Int16Array ? new Int16Array(n) : new Int8Array(n);
}
