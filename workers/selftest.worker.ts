// Dedicated module worker: proves tfjs runs on WebGPU here and agrees with the cpu backend.
import * as Comlink from 'comlink';
import { useBackend } from '../src/model/tf-backend.ts';
import { compareConv3d, runConv3d } from '../src/model/selftest.ts';
import { probeWebGPU, type WebGPUStatus } from '../src/gpu/probe.ts';

export interface SelfTestResult {
  backend: string;
  gpu: WebGPUStatus;
  relL2: { y: number; dx: number; dw: number };
  ms: { webgpu: number; cpu: number };
}

const api = {
  async conv3d(): Promise<SelfTestResult> {
    const gpu = await probeWebGPU();
    if (!gpu.available) throw new Error(gpu.reason ?? 'WebGPU unavailable');
    const tf = await useBackend('webgpu');
    const backend = tf.getBackend();
    let t = performance.now();
    const onGpu = await runConv3d(tf);
    const msGpu = performance.now() - t;
    await useBackend('cpu');
    t = performance.now();
    const onCpu = await runConv3d(tf);
    const msCpu = performance.now() - t;
    return { backend, gpu, relL2: compareConv3d(onGpu, onCpu), ms: { webgpu: msGpu, cpu: msCpu } };
  },
};

export type SelfTestApi = typeof api;
Comlink.expose(api);
