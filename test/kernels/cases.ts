// Convolution cases of the kernel correctness tests (Node and Chromium): odd shapes (not multiples
// of the register blocks), strides 1 and 2, 1×3×3 / 3×3×3 / 2×2×2 (conv3dTranspose) kernels, batch
// 1 and 2, channel counts with and without vec4 loads (incl. 70 output channels and split-K cases).
import type { ConvCase } from './kernel-suite.ts';

export const KERNEL_CASES: ConvCase[] = [
  {
    batch: 1,
    spatial: [5, 7, 6],
    cin: 1,
    cout: 4,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 2,
    spatial: [7, 5, 9],
    cin: 3,
    cout: 5,
    kernel: [1, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 1,
    spatial: [9, 7, 5],
    cin: 8,
    cout: 16,
    kernel: [3, 3, 3],
    strides: [2, 2, 2],
    pad: 'valid',
  },
  {
    batch: 2,
    spatial: [6, 7, 5],
    cin: 3,
    cout: 5,
    kernel: [1, 3, 3],
    strides: [1, 2, 2],
    pad: 'valid',
  },
  {
    batch: 2,
    spatial: [5, 6, 7],
    cin: 8,
    cout: 16,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'valid',
  },
  {
    batch: 2,
    spatial: [6, 4, 8],
    cin: 5,
    cout: 3,
    kernel: [2, 2, 2],
    strides: [2, 2, 2],
    pad: 'valid',
  },
  {
    batch: 1,
    spatial: [3, 6, 6],
    cin: 3,
    cout: 4,
    kernel: [1, 2, 2],
    strides: [1, 2, 2],
    pad: 'valid',
  },
  {
    batch: 1,
    spatial: [3, 5, 4],
    cin: 16,
    cout: 70,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 1,
    spatial: [3, 3, 3],
    cin: 64,
    cout: 8,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  // vec4 loads on both operands, 8-row blocks (≥ 4096 output voxels), a partial last block
  {
    batch: 2,
    spatial: [16, 17, 15],
    cin: 8,
    cout: 8,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 1,
    spatial: [9, 10, 11],
    cin: 4,
    cout: 12,
    kernel: [3, 3, 3],
    strides: [2, 2, 2],
    pad: 'valid',
  },
  {
    batch: 2,
    spatial: [7, 6, 5],
    cin: 16,
    cout: 8,
    kernel: [2, 2, 2],
    strides: [2, 2, 2],
    pad: 'valid',
  },
];

/**
 * The channel widths of nnU-Net's own 3d_fullres plans (801: 32→64→128→256→320) on small
 * volumes: the deep stages' convolutions, the stride-2 downsampling into 320, the transposed
 * convolution back up, and a full-resolution 32-channel conv. The kernels' code paths depend on
 * the channel counts (blocks, vec4 loads, tiles, split-K), not on the volume beyond odd edges,
 * padded borders and partial blocks, so the volumes are as small as keeps those: on a CPU
 * adapter the cost is the channels. (A whole training step of that plan runs in
 * `npm run bench gpu`: on a CPU adapter it takes minutes.)
 */
export const FULL_WIDTH_CASES: ConvCase[] = [
  {
    batch: 1,
    spatial: [4, 5, 5],
    cin: 320,
    cout: 320,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 2,
    spatial: [5, 7, 9],
    cin: 256,
    cout: 320,
    kernel: [3, 3, 3],
    strides: [2, 2, 2],
    pad: 'valid',
  },
  {
    batch: 1,
    spatial: [4, 5, 5],
    cin: 320,
    cout: 256,
    kernel: [2, 2, 2],
    strides: [2, 2, 2],
    pad: 'valid',
  },
  {
    batch: 2,
    spatial: [4, 6, 5],
    cin: 256,
    cout: 256,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 1,
    spatial: [12, 16, 16],
    cin: 32,
    cout: 32,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
];

/**
 * The cases the tiled conv3d variant is checked on in CI, one per code path: 1 input channel,
 * 16-wide tiles and split-K dw; stride (1,2,2) parity classes of dx; 70 output channels over a
 * partial 32-wide tile. Each new shape costs the variant's shader compiles (seconds each on
 * SwiftShader), so not all of KERNEL_CASES (all pass: checked by hand, see BENCHMARKS.md).
 */
export const TILED_CASES: ConvCase[] = [0, 3, 7].map((i) => KERNEL_CASES[i]);

/**
 * The full-width cases the tiled variant is checked on: all but 256→256 at stride 1, the same
 * code path as 320→320 (its cost is mostly shader compiles, seconds each on SwiftShader).
 */
export const FULL_WIDTH_TILED_CASES: ConvCase[] = [0, 1, 2, 4].map((i) => FULL_WIDTH_CASES[i]);

/**
 * The cases the filter gradient's subgroup variant is checked on. It takes only shapes with at
 * least 64 (b, od, oh) rows (one per thread of its workgroup; fewer go to regblock), which few of
 * KERNEL_CASES have, so these are its own, one per code path: scalar loads (1, 3, 5 channels), vec4
 * loads, 70 output channels (2-wide blocks), 1×3×3 kernels, stride 2 with 3³ and 2³ kernels,
 * batch 2, rows not a multiple of 64.
 */
export const SUBGROUP_CASES: ConvCase[] = [
  {
    batch: 1,
    spatial: [9, 8, 5],
    cin: 1,
    cout: 4,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 2,
    spatial: [7, 9, 6],
    cin: 3,
    cout: 5,
    kernel: [1, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  {
    batch: 2,
    spatial: [17, 13, 5],
    cin: 8,
    cout: 16,
    kernel: [3, 3, 3],
    strides: [2, 2, 2],
    pad: 'valid',
  },
  {
    batch: 2,
    spatial: [16, 12, 6],
    cin: 5,
    cout: 3,
    kernel: [2, 2, 2],
    strides: [2, 2, 2],
    pad: 'valid',
  },
  {
    batch: 1,
    spatial: [12, 11, 4],
    cin: 16,
    cout: 70,
    kernel: [3, 3, 3],
    strides: [1, 1, 1],
    pad: 'same',
  },
  KERNEL_CASES[9],
];

/**
 * The full-width cases of the subgroup variant: a stride-2 256→320 with 64 rows (34 560
 * workgroups) and the full-resolution 32-channel conv.
 */
export const FULL_WIDTH_SUBGROUP_CASES: ConvCase[] = [
  {
    batch: 2,
    spatial: [9, 17, 5],
    cin: 256,
    cout: 320,
    kernel: [3, 3, 3],
    strides: [2, 2, 2],
    pad: 'valid',
  },
  FULL_WIDTH_CASES[4],
];
