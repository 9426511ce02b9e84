// Deep-supervision targets (spec §7.4): the label map resized with torch's 'nearest-exact'
// to round(shape · scale_k), scale_k = 1 / cumprod(strides)[k], k = 0 .. n_stages − 2.
import { roundHalfEven } from '../util/numeric.ts';

/** Output shapes of the deep-supervision targets, highest resolution first. */
export function dsTargetShapes(spatial: readonly number[], strides: readonly number[][]): number[][] {
  const out: number[][] = [];
  const cum = spatial.map(() => 1);
  for (let k = 0; k < strides.length - 1; k++) {
    strides[k].forEach((s, i) => (cum[i] *= s));
    out.push(spatial.map((n, i) => roundHalfEven(n / cum[i])));
  }
  return out;
}

/**
 * torch.nn.functional.interpolate(mode='nearest-exact', size=outShape) on one label volume
 * (row-major spatial axes): source index floor((dst + 0.5) · in / out), clamped.
 */
export function resizeNearestExact<A extends Uint8Array | Int16Array | Int32Array | Float32Array>(
  labels: A,
  inShape: readonly number[],
  outShape: readonly number[],
): A {
  const r = inShape.length;
  const idx = outShape.map((o, a) =>
    Int32Array.from({ length: o }, (_, d) => Math.min(Math.floor((d + 0.5) * (inShape[a] / o)), inShape[a] - 1)),
  );
  const inStride = new Array<number>(r);
  let s = 1;
  for (let a = r - 1; a >= 0; a--) {
    inStride[a] = s;
    s *= inShape[a];
  }
  const n = outShape.reduce((p, q) => p * q, 1);
  const out = new (labels.constructor as { new (n: number): A })(n);
  const pos = new Array<number>(r).fill(0);
  for (let o = 0; o < n; o++) {
    let src = 0;
    for (let a = 0; a < r; a++) src += idx[a][pos[a]] * inStride[a];
    out[o] = labels[src];
    for (let a = r - 1; a >= 0; a--) {
      if (++pos[a] < outShape[a]) break;
      pos[a] = 0;
    }
  }
  return out;
}
