// Test-only page: exposes the kernels worker (workers/kernels.worker.ts) as window.__kernels.
import * as Comlink from 'comlink';
import type { KernelsApi } from '../../../workers/kernels.worker.ts';

const worker = new Worker(new URL('../../../workers/kernels.worker.ts', import.meta.url), { type: 'module' });
Object.assign(window, { __kernels: Comlink.wrap<KernelsApi>(worker) });
document.body.dataset.ready = 'true';
