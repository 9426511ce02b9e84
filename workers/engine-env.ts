// What an inference engine needs from a worker (src/infer/engine-choice.ts EngineEnv): this
// browser's WebGPU adapter and onnxruntime-web set up with its wasm binary. Shared by the infer
// worker (the Predict tab) and the train worker (a federation site's held-out Dice), so both
// choose the engine by the same rule. Each worker gets its own instance (its own module scope).
// The wasm binary onnxruntime-web's bundle loads (its WebGPU+wasm build). Importing it with ?url
// makes Vite emit it into dist/assets; the path is given to ort.env.wasm.wasmPaths below.
import ortWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm?url';
import { adapterFactsOf, type AdapterFacts } from '../src/gpu/probe.ts';
import type { EngineEnv } from '../src/infer/engine-choice.ts';

let ortConfigured = false;
async function configureOrt(): Promise<void> {
  if (ortConfigured) return;
  // Same module instance as src/infer/ort.ts's dynamic import (one chunk in the build).
  const ort = await import('onnxruntime-web');
  ort.env.wasm.wasmPaths = { wasm: new URL(ortWasmUrl, self.location.href).href };
  // onnxruntime prints warnings (e.g. "shape ops assigned to CPU", expected for the exported
  // depth-to-space) with console.error; sessions log errors only (logSeverityLevel 3).
  ort.env.logLevel = 'error';
  ortConfigured = true;
}

// navigator.gpu may exist without an adapter (GPU blocklisted, or Chromium without WebGPU
// enabled); onnxruntime-web then drops to its next EP silently, so ask for an adapter first.
let adapterProbe: Promise<AdapterFacts | null> | undefined;
const webgpuAdapter = (): Promise<AdapterFacts | null> =>
  (adapterProbe ??= (async () => {
    const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
    if (!gpu) return null;
    try {
      const adapter = await gpu.requestAdapter();
      return adapter ? adapterFactsOf(adapter) : null;
    } catch {
      return null;
    }
  })());

export const engineEnv: EngineEnv = { webgpuAdapter, configureOrt };
