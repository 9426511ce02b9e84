// WebGPU's `subgroups` feature for our kernels. tfjs-backend-webgpu creates its device without
// it (it asks only for timestamp-query), and builds every shader as its own prelude followed by
// the program's code, while WGSL wants `enable subgroups;` before any declaration. So the
// 'webgpu' backend factory is registered again here: the same device request plus `subgroups`
// when the adapter offers it, and a device whose createShaderModule moves the directive of a
// program (written first in its code) to the top of the module. Programs that use subgroups are
// only built when hasSubgroups() says the device has the feature.
import * as tf from '@tensorflow/tfjs';

export const ENABLE_SUBGROUPS = 'enable subgroups;';

/** Whether the backend's device was created with the `subgroups` feature. */
export function hasSubgroups(backend: unknown): boolean {
  const device = (backend as { device?: GPUDevice }).device;
  return !!device?.features?.has('subgroups');
}

/** WGSL with every `enable subgroups;` line moved to the start (no-op when there is none). */
export function hoistEnable(code: string): string {
  if (!code.includes(ENABLE_SUBGROUPS)) return code;
  return `${ENABLE_SUBGROUPS}\n${code.split(ENABLE_SUBGROUPS).join('')}`;
}

type BackendClass = new (device: GPUDevice, info?: GPUAdapterInfo) => tf.KernelBackend;

/**
 * Replaces tfjs-backend-webgpu's 'webgpu' factory (call after importing that module, before the
 * backend is first initialised) with one that also requests `subgroups` where available.
 */
export function registerWebGPUWithSubgroups(WebGPUBackend: BackendClass): void {
  tf.removeBackend('webgpu');
  tf.registerBackend(
    'webgpu',
    async () => {
      const adapter = await navigator.gpu.requestAdapter({
        powerPreference: tf.env().get('WEBGPU_USE_LOW_POWER_GPU')
          ? 'low-power'
          : 'high-performance',
      });
      if (!adapter) throw new Error('WebGPU: no adapter');
      // As tfjs-backend-webgpu 4.22's own factory, plus subgroups.
      const wanted: GPUFeatureName[] = ['timestamp-query', 'bgra8unorm-storage', 'subgroups'];
      const l = adapter.limits;
      const device = await adapter.requestDevice({
        requiredFeatures: wanted.filter((f) => adapter.features.has(f)),
        requiredLimits: {
          maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
          maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
          maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
          maxBufferSize: l.maxBufferSize,
          maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
          maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        },
      });
      if (device.features.has('subgroups')) {
        const create = device.createShaderModule.bind(device);
        device.createShaderModule = (d: GPUShaderModuleDescriptor) =>
          create({ ...d, code: hoistEnable(d.code) });
      }
      return new WebGPUBackend(device, adapter.info);
    },
    3,
  );
}
