// The fast WebGPU conv3d kernels (src/model/kernels) against the cpu backend, on SwiftShader, in a
// module worker of a test-only page (test/pages/kernels/): every conv kernel on odd shapes (not
// multiples of the register blocks), strides 1 and 2, 1×3×3 / 3×3×3 / 2×2×2 (conv3dTranspose)
// kernels, batch 1 and 2, channel counts with and without vec4 loads (incl. 70 output channels
// and split-K cases), each also run once into a NaN-filled output to prove every element is
// written; the reductions, softmax and fused norm kernels; and a whole deep-supervised training
// step of the check network, fast vs stock webgpu vs cpu.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKernelsPage, type KernelsPage } from '../pages/kernels/open-page.ts';
import type { ConvCase } from '../pages/kernels/kernels.worker.ts';

const CASES: ConvCase[] = [
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

describe('fast WebGPU conv3d kernels', () => {
  let s: KernelsPage;
  const api: KernelsPage['call'] = (fn, ...args) => s.call(fn, ...args);
  beforeAll(async () => {
    s = await openKernelsPage();
    expect(await api('init')).toBe('webgpu');
  });
  afterAll(async () => s?.close());

  it('forward, dx and dw match the cpu backend (rel. L2 < 1e-4) and write every output element', async () => {
    const r = await api('checkKernels', CASES);
    expect(r).toHaveLength(3 * CASES.length);
    const worst = (k: string, f: 'fast' | 'stock') =>
      Math.max(...r.filter((c) => c.name.startsWith(`${k} `)).map((c) => c.relL2[f]));
    console.log(
      ['y', 'dx', 'dw']
        .map(
          (k) =>
            `${k}: worst rel. L2 fast ${worst(k, 'fast').toExponential(2)}, stock ${worst(k, 'stock').toExponential(2)}`,
        )
        .join('; '),
    );
    if (process.env.KDEBUG)
      for (const c of r) console.log(c.name, c.relL2.fast.toExponential(2), c.unwritten);
    // An invalid shader invalidates its whole command buffer (the poisoning fill included), so
    // check for WebGPU errors before trusting any number.
    expect(await api('gpuErrors')).toEqual([]);
    for (const c of r) {
      expect(c.refNorm, c.name).toBeGreaterThan(0);
      expect(c.relL2.fast, c.name).toBeLessThan(1e-4);
      expect(c.relL2.stock, c.name).toBeLessThan(1e-4);
      expect(c.unwritten, c.name).toBe(0);
    }
    expect(await api('gpuErrors')).toEqual([]);
    expect(s.errors).toEqual([]);
  });

  it('reductions, softmax and the fused bias+InstanceNorm+LeakyReLU (forward and every gradient) match the cpu backend', async () => {
    const r = await api('checkOps');
    expect(await api('gpuErrors')).toEqual([]);
    expect(r.length).toBeGreaterThan(30);
    for (const c of r) {
      expect(c.refNorm, c.name).toBeGreaterThan(0);
      expect(c.relL2, c.name).toBeLessThan(1e-5);
    }
  });

  it('declines what it does not cover, and the stock kernel then computes it', async () => {
    const r = await api('checkFallback');
    expect(r.declined).toEqual([true, true, true]);
    expect(r.relL2).toBeLessThan(1e-4);
  });

  it('SGD steps of a 4-stage net give the same losses on cpu, stock webgpu and fast webgpu, with no WebGPU error', async () => {
    // The optimizer sums one squared norm per parameter (66 tensors here): a single AddN over
    // all of them exceeded the adapter's 8 storage buffers and silently dropped the update.
    const r = await api('sgdLosses', { patch: [8, 8, 8], batch: 2, features: [4, 8, 16, 16] }, 3);
    console.log(JSON.stringify(r));
    expect(await api('gpuErrors')).toEqual([]);
    expect(r.cpu).toHaveLength(3);
    // The weights must move: the third loss differs from the first.
    expect(Math.abs(r.cpu[2] - r.cpu[0])).toBeGreaterThan(1e-5);
    for (const k of ['stock', 'fast'] as const)
      r[k].forEach((l, i) =>
        expect(Math.abs(l - r.cpu[i]) / r.cpu[i], `${k} step ${i}`).toBeLessThan(1e-4),
      );
  });

  it('a whole training step with fast kernels equals stock webgpu and cpu (rel. L2 < 1e-4)', async () => {
    const r = await api('checkTrainingStep');
    console.log(JSON.stringify(r));
    for (const k of ['fastVsCpu', 'fastVsStock', 'stockVsCpu'] as const) {
      expect(r[k].tensors, k).toBeGreaterThan(10);
      expect(r[k].gradRelL2, k).toBeLessThan(1e-4);
      expect(Math.abs(r[k].loss[0] - r[k].loss[1]) / Math.abs(r[k].loss[1]), k).toBeLessThan(1e-5);
    }
    expect(await api('gpuErrors')).toEqual([]);
    expect(s.errors).toEqual([]);
  });
});
