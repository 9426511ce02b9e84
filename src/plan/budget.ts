// Browser memory budget for the planner. nnU-Net sizes patch and batch against a VRAM target
// (8 GB ≈ 560e6 conv-output elements × batch 2 for 3D). In a browser tab the limit is far
// smaller and differs per device, so the planner can take a budget in MB, turn it into a number of
// feature-map elements and run nnU-Net's own shrink loop against that instead.

/**
 * Bytes of GPU memory one element of nnU-Net's VRAM estimate (a conv output element for one
 * sample) costs in THIS implementation during a training step: measured with `npm run bench
 * memory` (tf.profile's peak of live tensors over one step ÷ batch × estimate): 69–70 bytes on
 * WebGPU with our kernels for the tiny 3-stage net at 16³ and 24³ without activation
 * checkpointing (39–41 with it; 119–123 on the cpu backend's composite ops). Rounded up. Weights,
 * gradients and momentum (12 bytes per parameter) come on top; for nnU-Net-sized patches they
 * are a small share. PyTorch's nnU-Net budgets by a reference instead (spec §4.5).
 */
export const BYTES_PER_FEATURE_ELEMENT = 72;

/** Share of what the WebGPU limits suggest that the planner may use (the rest: weights, optimizer, temporaries, other tabs). */
export const DEFAULT_BUDGET_FRACTION = 0.5;
/** WebGPU exposes no total memory; assume about this many max-size buffers fit on the device. */
export const ASSUMED_MAX_BUFFERS_RESIDENT = 8;
/** Never plan for more than this by default, whatever the limits claim. */
export const DEFAULT_BUDGET_CAP_MB = 4096;

export interface WebGpuMemoryLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/**
 * A conservative default budget from the adapter/device limits: a fraction of what
 * ASSUMED_MAX_BUFFERS_RESIDENT buffers of the smaller of the two limits would hold, capped.
 * With Chrome's default limits (256 MiB / 128 MiB) this is 512 MB.
 */
export function defaultMemoryBudgetMB(limits: WebGpuMemoryLimits): number {
  const perBuffer = Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  const bytes = DEFAULT_BUDGET_FRACTION * ASSUMED_MAX_BUFFERS_RESIDENT * perBuffer;
  return Math.min(DEFAULT_BUDGET_CAP_MB, Math.floor(bytes / 2 ** 20));
}

/** Feature-map elements (summed over one batch) that fit in the budget. */
export function budgetElements(
  memoryBudgetMB: number,
  bytesPerElement = BYTES_PER_FEATURE_ELEMENT,
): number {
  return (memoryBudgetMB * 2 ** 20) / bytesPerElement;
}
