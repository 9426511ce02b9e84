// The weights type that the model exports, the codec encodes, the relay aggregates and the
// ONNX exporter writes. Names are nnU-Net's (PyTorch state_dict names), shapes PyTorch's.
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

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
