// WebGPU in Node through Dawn (the `webgpu` npm package, a development dependency): installs
// `navigator.gpu` and the WebGPU globals so that tfjs-backend-webgpu, our kernels and the
// probes run in Node exactly as in a browser worker. Dawn talks to the GPU through Vulkan on
// Linux; where the machine has no Vulkan loader of its own, Debian's Chromium ships one with
// SwiftShader (a CPU implementation of Vulkan), which is how CI runs WebGPU code without a GPU.
import { adapterFactsOf, isSoftwareAdapter, type AdapterFacts } from '../gpu/probe.ts';
import { errorMessage } from '../util/errors.ts';
import { setDefaultTuneStore } from '../gpu/tune-store.ts';
import { fileTuneStore } from './tune-file.ts';
// Where Debian's Chromium keeps its Vulkan loader and SwiftShader ICD: one place, the script that
// builds the environment pointing Dawn at them (vitest and the benchmarks load it before any TS).
import { CHROMIUM_VULKAN_DIR, SWIFTSHADER_ICD } from '../../scripts/dawn-env.mjs';

export interface NodeWebGPU {
  adapter: GPUAdapter;
  facts: AdapterFacts;
  /** vendor / architecture / device / description as the adapter reports them. */
  name: string;
  /** True for a CPU implementation (SwiftShader, llvmpipe): correct, but no measure of a GPU. */
  software: boolean;
}

const HOW_TO =
  'Dawn (WebGPU for Node) found no Vulkan adapter. On a machine with a GPU, install its Vulkan ' +
  'driver (e.g. Debian: libvulkan1 and mesa-vulkan-drivers or the NVIDIA driver). To run on the ' +
  'CPU through SwiftShader, install Debian chromium and start Node with ' +
  `LD_LIBRARY_PATH=${CHROMIUM_VULKAN_DIR} VK_ICD_FILENAMES=${SWIFTSHADER_ICD}`;

let installed: Promise<NodeWebGPU> | undefined;

/**
 * Makes WebGPU available in this Node process (idempotent). Must run before the tfjs webgpu
 * backend module is first imported: that module registers its backend only if `navigator.gpu`
 * exists at import time. Throws with what to install when there is no adapter.
 */
export function installNodeWebGPU(): Promise<NodeWebGPU> {
  installed ??= install();
  return installed;
}

async function install(): Promise<NodeWebGPU> {
  // The conv3d autotune's per-adapter cache (src/model/kernels/autotune.ts) lives in a file here.
  setDefaultTuneStore(fileTuneStore());
  let dawn: { create(flags: string[]): GPU; globals: Record<string, unknown> };
  try {
    // A variable specifier: the package is a Node-only development dependency that bundlers
    // must never try to include.
    const name = 'webgpu';
    dawn = (await import(/* @vite-ignore */ name)) as typeof dawn;
  } catch (e) {
    throw new Error(
      `WebGPU in Node needs the 'webgpu' package (npm install --save-dev webgpu): ${errorMessage(e)}`,
    );
  }
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (!nav?.gpu) {
    for (const [k, v] of Object.entries(dawn.globals))
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    const gpu = dawn.create([]);
    if (nav) Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
    else
      Object.defineProperty(globalThis, 'navigator', {
        value: { gpu, userAgent: `Node.js/${process.versions.node}` },
        configurable: true,
      });
  }
  const gpu = (globalThis as unknown as { navigator: { gpu: GPU } }).navigator.gpu;
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    installed = undefined;
    throw new Error(HOW_TO);
  }
  const facts = adapterFactsOf(adapter);
  const name =
    [facts.vendor, facts.architecture, facts.device, facts.description].filter(Boolean).join(' ') ||
    'unknown adapter';
  return { adapter, facts, name, software: isSoftwareAdapter(facts) };
}
