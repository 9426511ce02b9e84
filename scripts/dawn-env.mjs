// The environment a Node process needs so that Dawn (the `webgpu` package: WebGPU in Node) finds
// a Vulkan adapter: nothing when the caller set VK_ICD_FILENAMES or the system has its own Vulkan
// loader (a GPU machine); else the loader + SwiftShader (Vulkan on the CPU) that Debian's Chromium
// ships, when installed. The dynamic linker reads LD_LIBRARY_PATH once, when a process starts, so
// this is for the environment of processes about to be spawned (vitest's workers, benchmarks,
// the CLI re-running itself), never for the current one. See src/node/webgpu.ts.
import { existsSync } from 'node:fs';

export const CHROMIUM_VULKAN_DIR = '/usr/lib/chromium';
export const SWIFTSHADER_ICD = `${CHROMIUM_VULKAN_DIR}/vk_swiftshader_icd.json`;
const SYSTEM_LOADERS = [
  '/usr/lib/x86_64-linux-gnu/libvulkan.so.1',
  '/usr/lib/aarch64-linux-gnu/libvulkan.so.1',
  '/usr/lib64/libvulkan.so.1',
  '/usr/lib/libvulkan.so.1',
];

/** @returns {Record<string, string>} */
export function dawnEnv(env = process.env) {
  if (env.VK_ICD_FILENAMES || SYSTEM_LOADERS.some((p) => existsSync(p))) return {};
  if (!existsSync(SWIFTSHADER_ICD)) return {};
  const ld = env.LD_LIBRARY_PATH
    ? `${CHROMIUM_VULKAN_DIR}:${env.LD_LIBRARY_PATH}`
    : CHROMIUM_VULKAN_DIR;
  return { LD_LIBRARY_PATH: ld, VK_ICD_FILENAMES: SWIFTSHADER_ICD };
}
