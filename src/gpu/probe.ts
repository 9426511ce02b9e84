// WebGPU capability probe. Self-contained on purpose (no imports, no closures): the Node
// `doctor` command sends this very function into Chromium with page.evaluate().
/** What a WebGPU adapter says about itself (GPUAdapterInfo, plus whether it is a fallback adapter). */
export interface AdapterFacts {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** The browser's own fallback flag (software or otherwise slow adapter); undefined where not reported. */
  isFallbackAdapter?: boolean;
}

export interface WebGPUStatus {
  available: boolean;
  /** Why WebGPU is unusable, in plain words, when `available` is false. */
  reason?: string;
  adapter?: AdapterFacts;
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
    return {
      available: false,
      crossOriginIsolated,
      reason: 'This browser does not offer WebGPU (navigator.gpu is missing).',
    };
  }
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return {
      available: false,
      crossOriginIsolated,
      reason: `WebGPU adapter request failed: ${String(e)}`,
    };
  }
  if (!adapter) {
    return {
      available: false,
      crossOriginIsolated,
      reason:
        'WebGPU is present but no GPU adapter is available (disabled, blocklisted, or no GPU).',
    };
  }
  const info = (adapter as GPUAdapter & { info?: GPUAdapterInfo & { isFallbackAdapter?: boolean } })
    .info;
  // Newer browsers report the fallback flag on adapter.info, older ones on the adapter.
  const fallback =
    info?.isFallbackAdapter ??
    (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
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
      ...(typeof fallback === 'boolean' ? { isFallbackAdapter: fallback } : {}),
    },
    features: [...adapter.features].map(String).sort(),
    limits,
  };
}

/** One short line naming the adapter, e.g. "google swiftshader". */
export function adapterName(s: WebGPUStatus): string {
  if (!s.available || !s.adapter) return 'none';
  const a = s.adapter;
  return (
    [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ') ||
    'unknown adapter'
  );
}

// CPU rasterisers that implement WebGPU in software: usable for correctness, far slower than
// WebAssembly for inference (362 s vs seconds for a 56×56×47 scan on SwiftShader).
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render|\bwarp\b/i;

/** Whether an adapter runs on the CPU (the browser's fallback flag, or a known software renderer's name). */
export function isSoftwareAdapter(a: Partial<AdapterFacts>): boolean {
  if (a.isFallbackAdapter === true) return true;
  return [a.vendor, a.architecture, a.device, a.description].some(
    (t) => typeof t === 'string' && SOFTWARE_ADAPTER.test(t),
  );
}

/** AdapterFacts of an adapter (probeWebGPU inlines the same, as it must stay self-contained). */
export function adapterFactsOf(adapter: GPUAdapter): AdapterFacts {
  const info = (adapter as GPUAdapter & { info?: GPUAdapterInfo & { isFallbackAdapter?: boolean } })
    .info;
  const fallback =
    info?.isFallbackAdapter ??
    (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
    ...(typeof fallback === 'boolean' ? { isFallbackAdapter: fallback } : {}),
  };
}
