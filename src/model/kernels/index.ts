// Fast WebGPU 3-D convolution kernels (implicit GEMMs: register-blocked conv3d.ts, workgroup-memory
// tiled conv3d-tiled.ts, and for the filter gradient a subgroup reduction conv3d-subgroup.ts; chosen
// per pass in conv-variants.ts) as replacements for
// tfjs-backend-webgpu's stock Conv3D / Conv3DBackpropInputV2 / Conv3DBackpropFilterV2, which
// compute one output per thread with uniform-driven index arithmetic. useFastKernels(true)
// re-registers the three kernels for the 'webgpu' backend; useFastKernels(false) restores the
// stock registrations. Shapes the fast path does not cover fall through to the stock kernel.
// Call after the webgpu backend module is loaded (useBackend('webgpu') in tf-backend.ts).
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { conv3dBackpropFilter, conv3dBackpropInput, conv3dForward } from './conv3d.ts';
import { convDw, convDx, convForward } from './conv-variants.ts';
import { reduce, softmax } from './reduce.ts';
import { normActBackward, normActForward } from './norm-act.ts';
import { packHalf, unpackHalf } from './half-pack.ts';
import type { WebGPUBackendLike } from './program.ts';

export const FAST_KERNEL_NAMES = [
  'Conv3D',
  'Conv3DBackpropInputV2',
  'Conv3DBackpropFilterV2',
  'Sum',
  'Max',
  'Mean',
  'Softmax',
] as const;
type Name = (typeof FAST_KERNEL_NAMES)[number];

const BACKEND = 'webgpu';
let stock: Map<Name, KernelConfig> | undefined;
let active = false;

/** tfjs-backend-webgpu's own kernel configs (captured on first use), for comparison and restore. */
export function stockKernels(): Map<Name, KernelConfig> {
  if (!stock) {
    stock = new Map();
    for (const name of FAST_KERNEL_NAMES) {
      const k = tf.getKernel(name, BACKEND);
      if (!k)
        throw new Error(
          `stock kernel ${name} is not registered for '${BACKEND}': load the webgpu backend first`,
        );
      stock.set(name, k);
    }
  }
  return stock;
}

type Args = Parameters<KernelFunc>[0];
const be = (a: Args) => a.backend as unknown as WebGPUBackendLike;
const attrs = <T>(a: Args) => a.attrs as unknown as T;

/**
 * Whether every input's buffer holds f32. tfjs' Cast of a bool or int32 tensor to float32 only
 * relabels it (no encoding loss, so no copy): the buffer keeps its i32 values and tfjs declares it
 * as array<i32> by the stored dtype. The stock kernels convert on read; ours read f32 (a sum of
 * such a mask failed to compile and came back as 0), so those inputs go to the stock kernel.
 */
function storedAsFloat32(a: Args): boolean {
  const map = (a.backend as unknown as { tensorMap: Map<object, { dtype: string }> }).tensorMap;
  return Object.values(a.inputs).every(
    (t) => !t || (map.get((t as TensorInfo).dataId)?.dtype ?? 'float32') === 'float32',
  );
}

const fastFuncs: Record<Name, (a: Args) => TensorInfo | null> = {
  Conv3D: (a) =>
    convForward(be(a), a.inputs.x as TensorInfo, a.inputs.filter as TensorInfo, attrs(a)),
  Conv3DBackpropInputV2: (a) =>
    convDx(be(a), a.inputs.dy as TensorInfo, a.inputs.filter as TensorInfo, attrs(a)),
  Conv3DBackpropFilterV2: (a) =>
    convDw(be(a), a.inputs.x as TensorInfo, a.inputs.dy as TensorInfo, attrs(a)),
  Sum: (a) => reduce(be(a), a.inputs.x as TensorInfo, attrs(a), 'sum'),
  // tfjs names Max's axis attribute reductionIndices.
  Max: (a) => {
    const { reductionIndices, keepDims } = attrs<{
      reductionIndices: number | number[];
      keepDims: boolean;
    }>(a);
    return reduce(be(a), a.inputs.x as TensorInfo, { axis: reductionIndices, keepDims }, 'max');
  },
  Mean: (a) => reduce(be(a), a.inputs.x as TensorInfo, attrs(a), 'mean'),
  Softmax: (a) => softmax(be(a), a.inputs.logits as TensorInfo, attrs(a)),
};

export const NORM_ACT = 'FnnuNormAct';
export const NORM_ACT_GRAD = 'FnnuNormActGrad';
const PACK_HALF = 'FnnuPackHalf';
const UNPACK_HALF = 'FnnuUnpackHalf';
let fusedRegistered = false;

function registerFused(): void {
  if (fusedRegistered) return;
  tf.registerKernel({
    kernelName: NORM_ACT,
    backendName: BACKEND,
    kernelFunc: (a) => {
      const { eps, alpha } = attrs<{ eps: number; alpha: number }>(a);
      return normActForward(
        be(a),
        a.inputs.x as TensorInfo,
        a.inputs.gamma as TensorInfo,
        a.inputs.beta as TensorInfo,
        eps,
        alpha,
      );
    },
  });
  tf.registerKernel({
    kernelName: NORM_ACT_GRAD,
    backendName: BACKEND,
    kernelFunc: (a) => {
      const i = a.inputs as Record<string, TensorInfo>;
      return normActBackward(
        be(a),
        i.dz,
        i.x,
        i.stats,
        i.gamma,
        i.beta,
        attrs<{ alpha: number }>(a).alpha,
      );
    },
  });
  tf.registerKernel({
    kernelName: PACK_HALF,
    backendName: BACKEND,
    kernelFunc: (a) => packHalf(be(a), a.inputs.x as TensorInfo),
  });
  tf.registerKernel({
    kernelName: UNPACK_HALF,
    backendName: BACKEND,
    kernelFunc: (a) =>
      unpackHalf(be(a), a.inputs.p as TensorInfo, attrs<{ shape: number[] }>(a).shape),
  });
  fusedRegistered = true;
}

/** float32 tensor → int32 [ceil(n/2)] of binary16 pairs (half-pack.ts); needs fusedOpsActive(). */
export function packHalfOp(x: tf.Tensor): tf.Tensor1D {
  return tf.engine().runKernel(PACK_HALF, { x }, {}) as unknown as tf.Tensor1D;
}

/** packHalfOp's output → float32 tensor of `shape`. */
export function unpackHalfOp(p: tf.Tensor, shape: number[]): tf.Tensor {
  return tf.engine().runKernel(UNPACK_HALF, { p }, { shape } as never) as unknown as tf.Tensor;
}

/** True when the fused ops below run (webgpu backend with the fast kernels switched on). */
export function fusedOpsActive(): boolean {
  return active && tf.getBackend() === BACKEND;
}

/**
 * (x + bias) → InstanceNorm(γ, β, eps) → LeakyReLU(α) on a [B, N, C] view with the fused
 * kernels. The bias is cancelled by the norm's mean subtraction, so its gradient is exactly 0
 * (the composite version gives round-off noise around 0 there).
 */
export function fusedBiasNormAct(
  v: tf.Tensor3D,
  bias: tf.Tensor | null,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  eps: number,
  alpha: number,
): tf.Tensor3D {
  const e = tf.engine();
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [y, stats] = e.runKernel(NORM_ACT, { x, gamma: g, beta: b }, {
      eps,
      alpha,
    } as never) as unknown as tf.Tensor[];
    save([x, stats, g, b]);
    return {
      value: y,
      gradFunc: (dz: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, st, sg, sb] = saved;
        return e.runKernel(NORM_ACT_GRAD, { dz, x: sx, stats: st, gamma: sg, beta: sb }, {
          alpha,
        } as never) as unknown as tf.Tensor[];
      },
    };
  });
  if (!bias) return op(v, gamma, beta) as tf.Tensor3D;
  // A bias input whose gradient is zero, so it still receives one (and weight decay sees it).
  const withBias = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x, b] = args as tf.Tensor[];
    return { value: tf.clone(x), gradFunc: (dy: tf.Tensor) => [dy, tf.zerosLike(b)] };
  });
  return op(withBias(v, bias), gamma, beta) as tf.Tensor3D;
}

/** Switch the three kernels between the fast implementations (true) and the stock ones (false). */
export function useFastKernels(on: boolean): void {
  const s = stockKernels();
  registerFused();
  if (on === active) return;
  for (const name of FAST_KERNEL_NAMES) {
    const orig = s.get(name)!;
    tf.unregisterKernel(name, BACKEND);
    if (on) {
      const stockFunc = orig.kernelFunc;
      tf.registerKernel({
        ...orig,
        kernelFunc: (args) =>
          ((storedAsFloat32(args) ? fastFuncs[name](args) : null) ?? stockFunc(args)) as TensorInfo,
      });
    } else {
      tf.registerKernel(orig);
    }
  }
  active = on;
}

export { conv3dForward, conv3dBackpropInput, conv3dBackpropFilter };
export {
  CONV_VARIANTS,
  convVariants,
  setConvVariants,
  type ConvChoice,
  type ConvVariant,
} from './conv-variants.ts';
