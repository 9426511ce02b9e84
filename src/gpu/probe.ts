// WebGPU capability probe. Self-contained on purpose (no imports, no closures): the Node
// `doctor` command sends this very function into Chromium with page.evaluate().
export interface WebGPUStatus {
  available: boolean;
  /** Why WebGPU is unusable, in plain words, when `available` is false. */
  reason?: string;
  adapter?: { vendor: string; architecture: string; device: string; description: string };
  features?: string[];
  limits?: Record<string, number>;
  /** Cross-origin isolation (SharedArrayBuffer available). */
  crossOriginIsolated: boolean;
}

export async function probeWebGPU(): Promise<WebGPUStatus> {
  const g = globalThis as unknown as { navigator?: { gpu?: GPU }; crossOriginIsolated?: boolean };
  const crossOriginIsolated = g.crossOriginIsolated === true;
  const gpu = g.navigator?.gpu;
  if (!gpu) {
    return { available: false, crossOriginIsolated, reason: 'This browser does not offer WebGPU (navigator.gpu is missing).' };
  }
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { available: false, crossOriginIsolated, reason: `WebGPU adapter request failed: ${String(e)}` };
  }
  if (!adapter) {
    return {
      available: false,
      crossOriginIsolated,
      reason: 'WebGPU is present but no GPU adapter is available (disabled, blocklisted, or no GPU).',
    };
  }
  const info = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  const limits: Record<string, number> = {};
  // GPUSupportedLimits exposes its values as enumerable prototype getters.
  for (const key in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof v === 'number') limits[key] = v;
  }
  return {
    available: true,
    crossOriginIsolated,
    adapter: {
      vendor: info?.vendor ?? '',
      architecture: info?.architecture ?? '',
      device: info?.device ?? '',
      description: info?.description ?? '',
    },
    features: [...adapter.features].map(String).sort(),
    limits,
  };
}

/** One short line naming the adapter, e.g. "google swiftshader". */
export function adapterName(s: WebGPUStatus): string {
  if (!s.available || !s.adapter) return 'none';
  const a = s.adapter;
  return [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ') || 'unknown adapter';
}
