// Browser memory budget for the planner. nnU-Net sizes patch and batch against a VRAM target
// (8 GB ≈ 560e6 conv-output elements × batch 2 for 3D). In a browser tab the limit is far
// smaller and differs per device, so the planner can take a budget in MB, turn it into a number of
// feature-map elements and run nnU-Net's own shrink loop against that instead.

/**
 * Bytes of GPU memory one element of nnU-Net's VRAM estimate (a conv output element for one
 * sample) costs in THIS implementation during training: the conv output, its instance-norm and
 * LeakyReLU outputs kept for backward, and their gradients, all float32. 6 tensors × 4 bytes is a
 * first guess; the training issue will measure the real value and replace it.
 */
export const BYTES_PER_FEATURE_ELEMENT = 24;

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
export function budgetElements(memoryBudgetMB: number, bytesPerElement = BYTES_PER_FEATURE_ELEMENT): number {
  return (memoryBudgetMB * 2 ** 20) / bytesPerElement;
}
