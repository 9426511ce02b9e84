// Fast WebGPU 3-D convolution kernels (tiled implicit GEMM, conv3d.ts) as replacements for
// tfjs-backend-webgpu's stock Conv3D / Conv3DBackpropInputV2 / Conv3DBackpropFilterV2, which
// compute one output per thread with uniform-driven index arithmetic. useFastKernels(true)
// re-registers the three kernels for the 'webgpu' backend; useFastKernels(false) restores the
// stock registrations. Shapes the fast path does not cover fall through to the stock kernel.
// Call after the webgpu backend module is loaded (useBackend('webgpu') in tf-backend.ts).
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { conv3dBackpropFilter, conv3dBackpropInput, conv3dForward } from './conv3d.ts';
import type { WebGPUBackendLike } from './gemm.ts';

export const FAST_KERNEL_NAMES = ['Conv3D', 'Conv3DBackpropInputV2', 'Conv3DBackpropFilterV2'] as const;
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
      if (!k) throw new Error(`stock kernel ${name} is not registered for '${BACKEND}': load the webgpu backend first`);
      stock.set(name, k);
    }
  }
  return stock;
}

type Args = Parameters<KernelFunc>[0];
const be = (a: Args) => a.backend as unknown as WebGPUBackendLike;
const attrs = <T>(a: Args) => a.attrs as unknown as T;

const fastFuncs: Record<Name, (a: Args) => TensorInfo | null> = {
  Conv3D: (a) => conv3dForward(be(a), a.inputs.x as TensorInfo, a.inputs.filter as TensorInfo, attrs(a)),
  Conv3DBackpropInputV2: (a) => conv3dBackpropInput(be(a), a.inputs.dy as TensorInfo, a.inputs.filter as TensorInfo, attrs(a)),
  Conv3DBackpropFilterV2: (a) => conv3dBackpropFilter(be(a), a.inputs.x as TensorInfo, a.inputs.dy as TensorInfo, attrs(a)),
};

/** Switch the three kernels between the fast implementations (true) and the stock ones (false). */
export function useFastKernels(on: boolean): void {
  const s = stockKernels();
  if (on === active) return;
  for (const name of FAST_KERNEL_NAMES) {
    const orig = s.get(name)!;
    tf.unregisterKernel(name, BACKEND);
    if (on) {
      const stockFunc = orig.kernelFunc;
      tf.registerKernel({
        ...orig,
        kernelFunc: (args) => (fastFuncs[name](args) ?? stockFunc(args)) as TensorInfo,
      });
    } else {
      tf.registerKernel(orig);
    }
  }
  active = on;
}

export function fastKernelsActive(): boolean {
  return active;
}

export { conv3dForward, conv3dBackpropInput, conv3dBackpropFilter };
