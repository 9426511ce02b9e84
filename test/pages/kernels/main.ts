// Test-only page: exposes the kernels worker (kernels.worker.ts) as window.__kernels and
// the learning-check worker (learning.worker.ts) as window.__learning, started on demand.
import * as Comlink from 'comlink';
import type { KernelsApi } from '../../kernels/kernel-suite.ts';
import type { LearningApi } from './learning.worker.ts';

const worker = new Worker(new URL('./kernels.worker.ts', import.meta.url), { type: 'module' });
let learning: Comlink.Remote<LearningApi> | undefined;
Object.assign(window, {
  __kernels: Comlink.wrap<KernelsApi>(worker),
  /** Runs the learning check in its own worker; epoch events go to window.__epochs. */
  __learning: async (opts: { fastKernels?: boolean }) => {
    learning ??= Comlink.wrap<LearningApi>(
      new Worker(new URL('./learning.worker.ts', import.meta.url), { type: 'module' }),
    );
    const epochs: unknown[] = ((window as unknown as { __epochs: unknown[] }).__epochs = []);
    return learning.run(
      opts,
      Comlink.proxy((e: unknown) => void epochs.push(e)),
    );
  },
});
document.body.dataset.ready = 'true';
