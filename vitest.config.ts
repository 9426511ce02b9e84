import { defineConfig } from 'vitest/config';
import { dawnEnv } from './scripts/dawn-env.mjs';

// WebGPU in Node (Dawn) needs a Vulkan loader in LD_LIBRARY_PATH when a process starts: the test
// workers are forked from here, so they inherit it (Chromium's SwiftShader where the machine has
// no Vulkan of its own; nothing changes on a GPU machine).
Object.assign(process.env, dawnEnv());

// Two projects: `unit` (pure Node, fast) and `browser` (real Chromium via playwright-core,
// against the built app). `npm test` runs both in one vitest run, so there is one summary.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/browser/global-setup.ts'],
          // One Chromium at a time: SwiftShader already uses every core.
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
