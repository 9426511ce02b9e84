// The weights type the model exports, the relay aggregates and the ONNX exporter writes.
// Names are nnU-Net's PyTorch state_dict names (unique tensors only), shapes and memory
// layout PyTorch's (row-major, conv [out, in, ...k], ConvTranspose [in, out, ...k]).
import { prod } from '../util/numeric.ts';

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

export type NamedWeights = Map<string, NamedTensor>;

/** (name, shape) list a site declares at join, so the shared key set is known before weights move. */
export type WeightSpec = Array<{ name: string; shape: number[] }>;

export function specOf(w: NamedWeights): WeightSpec {
  return [...w].map(([name, t]) => ({ name, shape: [...t.shape] }));
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Total number of scalars. */
export function paramCount(w: NamedWeights): number {
  let n = 0;
  for (const t of w.values()) n += prod(t.shape);
  return n;
}

/**
 * Row-major axis permutation in plain JS: out axis i is input axis perm[i]. Used for
 * PyTorch ⇄ tfjs weight layouts without a backend op (5-D transposes are not trusted on
 * every tfjs backend, and this runs on the relay too).
 */
export function permute(
  data: Float32Array,
  shape: readonly number[],
  perm: readonly number[],
): { data: Float32Array; shape: number[] } {
  const r = shape.length;
  if (perm.length !== r) throw new Error(`permute: perm ${perm} for rank ${r}`);
  const outShape = perm.map((p) => shape[p]);
  const inStrides = new Array<number>(r);
  let s = 1;
  for (let i = r - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= shape[i];
  }
  if (s !== data.length) throw new Error(`permute: ${data.length} values for shape ${shape}`);
  const stepIn = perm.map((p) => inStrides[p]); // input stride of each output axis
  const out = new Float32Array(data.length);
  const idx = new Array<number>(r).fill(0);
  let src = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = data[src];
    // Odometer over output axes, tracking the input offset incrementally.
    for (let a = r - 1; a >= 0; a--) {
      idx[a]++;
      src += stepIn[a];
      if (idx[a] < outShape[a]) break;
      src -= stepIn[a] * outShape[a];
      idx[a] = 0;
    }
  }
  return { data: out, shape: outShape };
}

/** The inverse of a permutation. */
export function invertPerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}
