// fp16 storage of float32 tensors on any WebGPU adapter: WGSL's core pack2x16float /
// unpack2x16float convert pairs of f32 values to and from binary16 bits in one u32, so no
// `shader-f16` feature is needed. A packed tensor is an int32 tensor of ceil(n/2) elements (tfjs
// has no u16/u32 dtype; i32 is bit-cast, never used as a number), half the bytes of the f32
// original. Values are compute in f32 everywhere; only what is stored is rounded.
//
// pack2x16float is indeterminate outside binary16's finite range (|v| > 65504), so values are
// clamped first: a stored activation saturates at ±65504 instead of becoming garbage. NaN is not
// kept (clamp of NaN is indeterminate too); the forward pass and the loss stay f32, so a NaN
// there still shows up in the loss and the gradients.
import type { TensorInfo } from '@tensorflow/tfjs';
import { rawProgram, type WebGPUBackendLike } from './program.ts';

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** float32 tensor (any shape) → int32 [ceil(n/2)] of packed binary16 pairs (low half first). */
export function packHalf(backend: WebGPUBackendLike, x: TensorInfo): TensorInfo {
  if (x.dtype !== 'float32') throw new Error(`packHalf: float32 input expected, got ${x.dtype}`);
  const n = size(x.shape);
  const pairs = Math.ceil(n / 2);
  const program = rawProgram({
    key: `hpack_${n}`,
    inputs: ['x'],
    components: [1],
    outputShape: [pairs],
    threads: pairs,
    body: `
  let i = 2 * t;
  let a = x[i];
  let b = select(0.0, x[min(i + 1, ${n - 1})], i + 1 < ${n});
  let v = clamp(vec2<f32>(a, b), vec2<f32>(-65504.0), vec2<f32>(65504.0));
  result[t] = bitcast<i32>(pack2x16float(v));`,
  });
  return backend.runWebGPUProgram(program, [x], 'int32');
}

/** int32 [ceil(n/2)] from packHalf → float32 tensor of `shape` (n = its size). */
export function unpackHalf(
  backend: WebGPUBackendLike,
  packed: TensorInfo,
  shape: number[],
): TensorInfo {
  const n = size(shape);
  if (packed.dtype !== 'int32' || size(packed.shape) !== Math.ceil(n / 2))
    throw new Error(
      `unpackHalf: int32 [${Math.ceil(n / 2)}] expected for shape [${shape}], got ${packed.dtype} [${packed.shape}]`,
    );
  const program = rawProgram({
    key: `hunpack_${n}`,
    inputs: ['p'],
    components: [1],
    outputShape: [...shape],
    threads: n,
    body: `
  let v = unpack2x16float(bitcast<u32>(p[t / 2]));
  result[t] = select(v.x, v.y, (t & 1) == 1);`,
  });
  return backend.runWebGPUProgram(program, [packed], 'float32');
}
