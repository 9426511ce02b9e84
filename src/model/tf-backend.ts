// The one place that chooses and initialises a tfjs backend, in Node, the page or a worker.
import * as tf from '@tensorflow/tfjs';
import { useFastKernels } from './kernels/index.ts';

export type BackendName = 'webgpu' | 'cpu';

let webgpuRegistered = false;

// Production mode silences tfjs' console nags (e.g. "install tfjs-node" in Node), which would
// otherwise drown CLI output; it changes no numerics.
tf.enableProdMode();

/**
 * Switch tfjs to `name` (webgpu: with the fast kernels unless opts.fastKernels is false). The webgpu backend module is imported lazily so that Node and
 * browsers without WebGPU never load it. tfjs-backend-webgpu 4.22 already reads
 * `adapter.info` (Chromium removed requestAdapterInfo()), so no shim is needed on
 * Chromium 156; verified by test/browser/gpu-selftest.test.ts.
 */
export interface BackendOptions {
  /**
   * webgpu only: our kernels (src/model/kernels: conv3d and its gradients, reductions, softmax,
   * fused InstanceNorm+LeakyReLU) instead of tfjs' stock ones. Default true; false is the
   * fallback switch (and the reference in tests and benchmarks).
   */
  fastKernels?: boolean;
}

export async function useBackend(name: BackendName, opts: BackendOptions = {}): Promise<typeof tf> {
  if (name === 'webgpu' && !webgpuRegistered) {
    await import('@tensorflow/tfjs-backend-webgpu');
    webgpuRegistered = true;
  }
  // The webgpu module registers its backend only if navigator.gpu existed when it was imported.
  if (name === 'webgpu' && !tf.findBackendFactory('webgpu'))
    throw new Error(
      'WebGPU is not available here (no navigator.gpu). In Node, call installNodeWebGPU() ' +
        '(src/node/webgpu.ts) before the first useBackend',
    );
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`tfjs backend '${name}' failed to initialise`);
  await tf.ready();
  if (name === 'webgpu') {
    useFastKernels(opts.fastKernels ?? true);
    watchGpuErrors();
  }
  return tf;
}

// WebGPU reports an invalid shader or pipeline as an "uncaptured error" event and then drops
// the whole command buffer it was recorded in: results are silently wrong, nothing throws.
// We collect these events so long-running work (training) can stop with the message instead.
const gpuErrors: string[] = [];
let watchedDevice: unknown;

function watchGpuErrors(): void {
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  if (!device || device === watchedDevice) return;
  watchedDevice = device;
  device.addEventListener('uncapturederror', (e) => {
    if (gpuErrors.length < 20) gpuErrors.push(String((e as GPUUncapturedErrorEvent).error.message));
  });
}

/** Throws if WebGPU reported an error since the last call (and forgets it). */
export function assertNoGpuErrors(): void {
  if (gpuErrors.length === 0) return;
  const first = gpuErrors.splice(0).join('\n').slice(0, 2000);
  throw new Error(`WebGPU reported an error, so the last results cannot be trusted: ${first}`);
}

export { tf };
