// The one place that chooses and initialises a tfjs backend, in Node, the page or a worker.
import * as tf from '@tensorflow/tfjs';

export type BackendName = 'webgpu' | 'cpu';

let webgpuRegistered = false;

// Production mode silences tfjs' console nags (e.g. "install tfjs-node" in Node), which would
// otherwise drown CLI output; it changes no numerics.
tf.enableProdMode();

/**
 * Switch tfjs to `name`. The webgpu backend module is imported lazily so that Node and
 * browsers without WebGPU never load it. tfjs-backend-webgpu 4.22 already reads
 * `adapter.info` (Chromium removed requestAdapterInfo()), so no shim is needed on
 * Chromium 156; verified by test/browser/gpu-selftest.test.ts.
 */
export async function useBackend(name: BackendName): Promise<typeof tf> {
  if (name === 'webgpu' && !webgpuRegistered) {
    await import('@tensorflow/tfjs-backend-webgpu');
    webgpuRegistered = true;
  }
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`tfjs backend '${name}' failed to initialise`);
  await tf.ready();
  return tf;
}

export { tf };
