// What this browser can do, derived from what was measured here (WebGPU adapter and limits,
// shader-f16, storage, cross-origin isolation, threads), never from a static list: the page tells
// the truth about this version on this machine. Pure (no DOM), so it is unit-tested in Node.
import { adapterName, isSoftwareAdapter, type WebGPUStatus } from '../gpu/probe.ts';

/** Facts the page probes once: the WebGPU probe, navigator.storage.estimate() and navigator.hardwareConcurrency. */
export interface BrowserFacts {
  webgpu: WebGPUStatus;
  /** navigator.storage.estimate(); undefined where the browser gives none. */
  storage?: { usage?: number; quota?: number };
  /** navigator.hardwareConcurrency; undefined where not reported. */
  threads?: number;
}

export interface CapabilityRow {
  id: string;
  name: string;
  usable: boolean;
  /** Why, or how well, in plain words. */
  detail: string;
}

const MiB = 1024 * 1024;
function size(bytes: number): string {
  return bytes >= 1024 * MiB
    ? `${(bytes / (1024 * MiB)).toFixed(1)} GiB`
    : `${Math.round(bytes / MiB)} MiB`;
}

export function capabilityRows(f: BrowserFacts): CapabilityRow[] {
  const g = f.webgpu;
  const software = g.available && !!g.adapter && isSoftwareAdapter(g.adapter);
  const gpuDetail = !g.available
    ? `needs WebGPU: ${g.reason ?? 'not available'}`
    : software
      ? `on ${adapterName(g)}, a software adapter on the CPU: works, but slowly`
      : `on ${adapterName(g)}`;
  const maxBinding = g.limits?.maxStorageBufferBindingSize;
  const trainDetail =
    gpuDetail + (g.available && maxBinding ? `; largest GPU buffer ${size(maxBinding)}` : '');
  const threads = f.threads && f.threads > 0 ? f.threads : 1;
  const wasmThreads = g.crossOriginIsolated ? threads : 1;
  const quota = f.storage?.quota;
  const usage = f.storage?.usage ?? 0;
  const f16 = g.available && !!g.features?.includes('shader-f16');
  return [
    {
      id: 'selftest',
      name: 'GPU self-test (tfjs conv3d forward + gradient vs CPU)',
      usable: g.available,
      detail: gpuDetail,
    },
    {
      id: 'storage',
      name: 'Import NIfTI / DICOM / nnU-Net raw folders into this browser',
      usable: quota === undefined || quota > usage,
      detail:
        quota === undefined
          ? 'storage quota not reported by this browser'
          : `${size(usage)} used of ${size(quota)} available to this site`,
    },
    {
      id: 'plan',
      name: 'Dataset fingerprint and nnU-Net planning',
      usable: true,
      detail: 'runs on the CPU in a worker',
    },
    { id: 'train', name: 'Training the 3D U-Net', usable: g.available, detail: trainDetail },
    {
      id: 'federate',
      name: 'Federated rounds (FFE, FedAvg, AsymFedAvg)',
      usable: g.available,
      detail: trainDetail,
    },
    {
      id: 'predict',
      name: 'Segmenting a new scan',
      usable: true,
      // The same rule as chooseEngine('auto') in src/infer/engine-choice.ts.
      detail:
        g.available && !software
          ? 'Automatic uses ONNX on WebGPU'
          : `Automatic uses ONNX on WebAssembly${g.available ? ' (faster than a software GPU)' : ''}`,
    },
    {
      id: 'threads',
      name: 'Multi-threaded WebAssembly',
      usable: wasmThreads > 1,
      detail: g.crossOriginIsolated
        ? `${threads} thread(s) (cross-origin isolated)`
        : 'one thread: the page is not cross-origin isolated, so no SharedArrayBuffer',
    },
    {
      id: 'f16',
      name: 'Half-precision GPU shaders (shader-f16)',
      usable: f16,
      detail: f16
        ? 'the adapter offers shader-f16'
        : g.available
          ? 'the adapter does not offer shader-f16; 32-bit floats are used'
          : 'needs WebGPU',
    },
  ];
}
