// The kernel suite (kernel-suite.ts) in this Node process, on WebGPU through Dawn: the same
// calls as the Chromium page (open-page.ts), without a browser. The process must have been
// started with dawnEnv() (src/node/webgpu.ts) where the machine has no Vulkan loader of its own.
import { installNodeWebGPU, type NodeWebGPU } from '../../src/node/webgpu.ts';
import type { KernelsApi } from './kernel-suite.ts';

export interface KernelsNode {
  gpu: NodeWebGPU;
  call<K extends keyof KernelsApi>(
    fn: K,
    ...args: Parameters<KernelsApi[K]>
  ): Promise<Awaited<ReturnType<KernelsApi[K]>>>;
}

export async function openKernelsNode(): Promise<KernelsNode> {
  const gpu = await installNodeWebGPU();
  // Imported after navigator.gpu exists: tfjs-backend-webgpu registers itself only then.
  const { kernelSuite } = await import('./kernel-suite.ts');
  const call: KernelsNode['call'] = async (fn, ...args) =>
    (await (kernelSuite[fn] as (...a: unknown[]) => unknown)(...args)) as never;
  return { gpu, call };
}
