// Test-only worker: the learning check of the training recipe (src/train/learning-check.ts) on
// WebGPU, loaded by the test page beside it (main.ts), not by the app.
import * as Comlink from 'comlink';
import { useBackend } from '../../../src/model/tf-backend.ts';
import { learningCheck, type LearningCheckResult } from '../../../src/train/learning-check.ts';
import type { EpochEvent } from '../../../src/train/trainer.ts';

const api = {
  async run(
    opts: { fastKernels?: boolean } = {},
    onEpoch?: (e: EpochEvent) => void,
  ): Promise<LearningCheckResult & { backend: string }> {
    const tf = await useBackend('webgpu', { fastKernels: opts.fastKernels ?? true });
    const r = await learningCheck(onEpoch);
    return {
      ...r,
      backend: `${tf.getBackend()} (${opts.fastKernels === false ? 'stock' : 'fast'} kernels)`,
    };
  },
};

export type LearningApi = typeof api;
Comlink.expose(api);
