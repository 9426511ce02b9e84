// The one place that chooses and initialises a tfjs backend, in Node, the page or a worker.
import * as tf from '@tensorflow/tfjs';
import { useFastKernels } from './kernels/index.ts';
import {
  DEFAULT_CHOICE,
  parseConvVariant,
  setConvVariants,
  convVariants,
  type ConvChoice,
  type ConvVariant,
} from './kernels/conv-variants.ts';
import { autotuneConv, type TuneResult } from './kernels/autotune.ts';
import { parseReduceVariant, setReduceVariant, type ReduceVariant } from './kernels/reduce.ts';
import { registerWebGPUWithSubgroups } from './kernels/subgroups.ts';
import { adapterFactsOf, isSoftwareAdapter, type AdapterFacts } from '../gpu/probe.ts';

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
  /**
   * webgpu only: which conv3d variant the fast kernels run ('regblock', 'tiled'), or 'auto': the
   * per-adapter autotune (cached; see kernels/autotune.ts). Default: FEDNNUNET_CONV_VARIANT in
   * Node, else 'auto' on a GPU and 'regblock' on a software adapter (SwiftShader, where the
   * tiled variant measured several times slower: BENCHMARKS.md); an explicit 'auto' tunes there too.
   */
  convVariant?: ConvVariant | 'auto';
  /**
   * webgpu only: how long sums and means compute their partial sums ('serial', or 'subgroup'
   * where the device has the `subgroups` feature; see kernels/reduce.ts). Default:
   * FEDNNUNET_REDUCE_VARIANT in Node, else the autotune's choice (with convVariant 'auto' or
   * its GPU default; 'serial' where the conv variant is forced or the adapter is software).
   */
  reduceVariant?: ReduceVariant;
}

export async function useBackend(name: BackendName, opts: BackendOptions = {}): Promise<typeof tf> {
  if (name === 'webgpu' && !webgpuRegistered) {
    const m = await import('@tensorflow/tfjs-backend-webgpu');
    // Same device as tfjs' own factory, plus the `subgroups` feature where the adapter has it.
    // Not once it is initialised: re-registering would dispose a backend in use.
    const live = (tf.engine() as unknown as { registry: Record<string, unknown> }).registry;
    if (tf.findBackendFactory('webgpu') && !live.webgpu)
      registerWebGPUWithSubgroups(m.WebGPUBackend);
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
    if (opts.fastKernels ?? true) await chooseConvVariants(opts.convVariant);
    setReduceVariant(
      opts.reduceVariant ??
        parseReduceVariant(nodeEnv('FEDNNUNET_REDUCE_VARIANT')) ??
        lastTuning?.reduce ??
        'serial',
    );
    watchGpuErrors();
  }
  return tf;
}

export type ConvTuning =
  | (TuneResult & { adapter: string })
  | {
      choice: ConvChoice;
      reduce: ReduceVariant;
      source: 'forced' | 'software adapter';
      adapter?: string;
    };
let tuned: { device: unknown; result: ConvTuning } | undefined;
let lastTuning: ConvTuning | undefined;

/** How the conv3d variants in use were chosen (after a useBackend('webgpu')). */
export function convTuning(): ConvTuning | undefined {
  return lastTuning;
}

/** A Node environment variable; undefined in a browser or worker, where there is no `process`. */
function nodeEnv(name: string): string | undefined {
  const g = globalThis as { process?: { env?: Record<string, string | undefined> } };
  return g.process?.env?.[name];
}

async function adapterFacts(device: GPUDevice | undefined): Promise<AdapterFacts> {
  const info = (device as (GPUDevice & { adapterInfo?: GPUAdapterInfo }) | undefined)?.adapterInfo;
  if (info?.vendor !== undefined)
    return {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
    };
  const adapter = await navigator.gpu?.requestAdapter({ powerPreference: 'high-performance' });
  return adapter
    ? adapterFactsOf(adapter)
    : { vendor: '', architecture: '', device: '', description: '' };
}

async function chooseConvVariants(opt: ConvVariant | 'auto' | undefined): Promise<void> {
  const want = opt ?? parseConvVariant(nodeEnv('FEDNNUNET_CONV_VARIANT'));
  if (want && want !== 'auto') {
    setConvVariants(want);
    lastTuning = {
      choice: convVariants(),
      reduce: 'serial',
      source: 'forced',
    };
    return;
  }
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  let t = tuned;
  // An explicit 'auto' measures even where the default skipped it (software adapter).
  if (!t || t.device !== device || (want === 'auto' && t.result.source === 'software adapter')) {
    const facts = await adapterFacts(device);
    const adapter =
      [facts.vendor, facts.architecture, facts.device, facts.description]
        .filter(Boolean)
        .join(' ') || 'unknown adapter';
    const result: ConvTuning =
      want !== 'auto' && isSoftwareAdapter(facts)
        ? { choice: { ...DEFAULT_CHOICE }, reduce: 'serial', source: 'software adapter', adapter }
        : { ...(await autotuneConv(facts)), adapter };
    tuned = t = { device, result };
  }
  setConvVariants(t.result.choice);
  lastTuning = t.result;
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
