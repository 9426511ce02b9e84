// Network weights ⇄ Flower ArrayRecords of numpy arrays (.npy bytes, stype 'numpy.ndarray'), keyed
// by nnU-Net's state_dict names with PyTorch's shapes, so Python nnU-Net sites with the same
// architecture average with ours. Sent as float32; float16, float64, int32 and int64 arrays are
// read (into float32) as numpy apps may send them.
import { readNpyHeader, writeNpy, writeNpyBytes } from '../../io/npy.ts';
import { decodeHalf, encodeHalf } from '../../util/float16.ts';
import { type NamedWeights } from '../../model/named-weights.ts';
import { prod } from '../../util/numeric.ts';
import type { FlowerArray } from './objects.ts';

export const NUMPY_STYPE = 'numpy.ndarray';

const DTYPE_OF: Record<string, string> = {
  '<f4': 'float32',
  '<f2': 'float16',
  '<f8': 'float64',
  '<i4': 'int32',
  '<i8': 'int64',
};

/** A float32 numpy array. */
export function float32Array(data: Float32Array, shape: readonly number[]): FlowerArray {
  return { dtype: 'float32', shape: [...shape], stype: NUMPY_STYPE, data: writeNpy(data, shape) };
}

/** A float16 numpy array (values rounded to half precision). */
export function float16Array(data: Float32Array, shape: readonly number[]): FlowerArray {
  const bits = encodeHalf(data);
  const bytes = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
  return {
    dtype: 'float16',
    shape: [...shape],
    stype: NUMPY_STYPE,
    data: writeNpyBytes('<f2', shape, bytes),
  };
}

/** An int64 numpy array (values must be safe integers). */
export function int64Array(values: readonly number[], shape: readonly number[]): FlowerArray {
  const b = new BigInt64Array(values.length);
  values.forEach((v, i) => {
    if (!Number.isSafeInteger(v)) throw new Error(`int64 array: ${v} is not a safe integer`);
    b[i] = BigInt(v);
  });
  return {
    dtype: 'int64',
    shape: [...shape],
    stype: NUMPY_STYPE,
    data: writeNpyBytes('<i8', shape, new Uint8Array(b.buffer)),
  };
}

/** A numpy array's values as float32 (float16/32/64, int32/64), checked against its metadata. */
export function toFloat32(a: FlowerArray, name = 'array'): Float32Array {
  if (a.stype !== NUMPY_STYPE)
    throw new Error(`${name}: serialization '${a.stype}' is not supported (only ${NUMPY_STYPE})`);
  const h = readNpyHeader(a.data);
  const dtype = DTYPE_OF[h.descr];
  if (!dtype)
    throw new Error(
      `${name}: dtype '${h.descr}' is not supported (${Object.values(DTYPE_OF).join(', ')})`,
    );
  if (dtype !== a.dtype || h.shape.join() !== a.shape.join())
    throw new Error(
      `${name}: .npy header (${dtype} ${h.shape}) disagrees with ${a.dtype} ${a.shape}`,
    );
  const n = prod(h.shape);
  const size = { float32: 4, float16: 2, float64: 8, int32: 4, int64: 8 }[dtype]!;
  if (a.data.length - h.dataOffset !== n * size)
    throw new Error(`${name}: ${a.data.length - h.dataOffset} data bytes for ${n} × ${dtype}`);
  // Copy to an aligned buffer: the .npy data offset is 64-aligned, the bytes' own offset may not be.
  const buf = a.data.slice(h.dataOffset).buffer;
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf);
    case 'float16':
      return decodeHalf(new Uint16Array(buf));
    case 'float64':
      return Float32Array.from(new Float64Array(buf));
    case 'int32':
      return Float32Array.from(new Int32Array(buf));
    default:
      return Float32Array.from(new BigInt64Array(buf), (v) => Number(v));
  }
}

/** An int64 numpy array's values (numbers; refuses values beyond 2^53). */
export function toInt64(a: FlowerArray, name = 'array'): number[] {
  const h = readNpyHeader(a.data);
  if (h.descr !== '<i8') throw new Error(`${name}: dtype '${h.descr}' is not int64`);
  const n = prod(h.shape);
  if (a.data.length - h.dataOffset !== 8 * n) throw new Error(`${name}: truncated int64 data`);
  return Array.from(new BigInt64Array(a.data.slice(h.dataOffset).buffer), (v) => {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER))
      throw new Error(`${name}: ${v} is beyond 2^53`);
    return Number(v);
  });
}

/** Weights as an ArrayRecord's items (float32, nnU-Net names, PyTorch shapes), in the net's order. */
export function weightsToArrays(w: NamedWeights): Map<string, FlowerArray> {
  const out = new Map<string, FlowerArray>();
  for (const [name, t] of w) out.set(name, float32Array(t.data, t.shape));
  return out;
}

/** An ArrayRecord's items as weights; every array must be a float numpy array of the shape it declares. */
export function arraysToWeights(items: Map<string, FlowerArray>): NamedWeights {
  const out: NamedWeights = new Map();
  for (const [name, a] of items) out.set(name, { shape: [...a.shape], data: toFloat32(a, name) });
  return out;
}
