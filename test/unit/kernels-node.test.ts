// The fast WebGPU kernels (src/model/kernels) in Node, through Dawn (the `webgpu` package) on
// SwiftShader here or a real GPU elsewhere: the same suite as test/browser/kernels.test.ts
// (test/kernels/kernel-suite.ts), without launching Chromium. Skips, saying why, where Dawn finds
// no Vulkan adapter (vitest.config.ts points Dawn at Chromium's SwiftShader when it is installed).
import { beforeAll, describe, expect, it } from 'vitest';
import { openKernelsNode, type KernelsNode } from '../kernels/open-node.ts';
import {
  FULL_WIDTH_CASES,
  FULL_WIDTH_SUBGROUP_CASES,
  FULL_WIDTH_TILED_CASES,
  KERNEL_CASES,
  SUBGROUP_CASES,
  TILED_CASES,
} from '../kernels/cases.ts';

let k: KernelsNode | undefined;
let why = '';
try {
  k = await openKernelsNode();
} catch (e) {
  why = String(e);
  console.warn(`skipped: ${why}`);
}

const subgroups = !!k?.gpu.adapter.features.has('subgroups');

// SwiftShader on 2 cores: the whole-step checks take minutes.
describe.skipIf(!k)('fast WebGPU kernels in Node (Dawn)', { timeout: 900_000 }, () => {
  const api: KernelsNode['call'] = (fn, ...args) => k!.call(fn, ...args);
  beforeAll(async () => {
    expect(await api('init')).toBe('webgpu');
    console.log(`adapter: ${k!.gpu.name}${k!.gpu.software ? ' (software)' : ''}`);
  });

  it('forward, dx and dw match the cpu backend (rel. L2 < 1e-4) and write every output element', async () => {
    const r = await api('checkKernels', KERNEL_CASES);
    expect(r).toHaveLength(3 * KERNEL_CASES.length);
    expect(await api('gpuErrors')).toEqual([]);
    for (const c of r) {
      expect(c.refNorm, c.name).toBeGreaterThan(0);
      expect(c.relL2.fast, c.name).toBeLessThan(1e-4);
      expect(c.relL2.stock, c.name).toBeLessThan(1e-4);
      expect(c.unwritten, c.name).toBe(0);
    }
  });

  /** One variant on `cases` against the cpu backend, every output element written. */
  async function expectVariantMatches(variant: 'tiled' | 'subgroup', cases: typeof KERNEL_CASES) {
    const r = await api('checkKernels', cases, { variant, stock: false });
    expect(r).toHaveLength(3 * cases.length);
    expect(await api('gpuErrors')).toEqual([]);
    for (const c of r) {
      expect(c.refNorm, c.name).toBeGreaterThan(0);
      expect(c.relL2.fast, c.name).toBeLessThan(1e-4);
      expect(c.unwritten, c.name).toBe(0);
    }
  }

  it('the tiled (workgroup-memory) conv3d variant: forward, dx and dw match the cpu backend and write every output element', async () => {
    await expectVariantMatches('tiled', TILED_CASES);
  });

  // The filter gradient's subgroup variant (the other passes run regblock under that name), on
  // its own cases (it declines fewer rows than threads; the suite fails on a declined case).
  it.skipIf(!subgroups)(
    'the subgroup dw variant matches the cpu backend and writes every element',
    async () => {
      await expectVariantMatches('subgroup', SUBGROUP_CASES);
    },
  );

  it('autotune: times every variant of every pass (and of the long sum), picks the fastest, and reuses the cached choice', async () => {
    const shape = TILED_CASES[0];
    const { first, second } = await api('tuneConv', [shape], 1);
    expect(first.source).toBe('measured');
    for (const p of ['forward', 'dx', 'dw'] as const) {
      const ms = first.ms![p];
      const timed = Object.values(ms) as number[];
      expect(ms.regblock, p).toBeGreaterThan(0);
      expect(ms.tiled, p).toBeGreaterThan(0);
      // dw's subgroup variant is timed exactly where the device has `subgroups`.
      expect('subgroup' in ms, p).toBe(p === 'dw' && subgroups);
      if ('subgroup' in ms) expect(ms.subgroup, p).toBeGreaterThan(0);
      expect(ms[first.choice[p]], p).toBe(Math.min(...timed));
    }
    // The long-sum variant is timed only where the device has `subgroups` (SwiftShader does).
    if (subgroups) {
      const rm = first.reduceMs!;
      expect(rm.serial).toBeGreaterThan(0);
      expect(rm.subgroup).toBeGreaterThan(0);
      expect(first.reduce).toBe(rm.subgroup < rm.serial ? 'subgroup' : 'serial');
    } else expect(first.reduce).toBe('serial');
    expect(second.source).toBe('cache');
    expect(second.choice).toEqual(first.choice);
    expect(second.reduce).toBe(first.reduce);
    expect(second.key).toBe(first.key);
  });

  it('reductions, softmax and the fused bias+InstanceNorm+LeakyReLU match the cpu backend', async () => {
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

  it('a whole training step with fast kernels equals stock webgpu and cpu (rel. L2 < 1e-4)', async () => {
    const r = await api('checkTrainingStep');
    for (const key of ['fastVsCpu', 'fastVsStock', 'stockVsCpu'] as const) {
      expect(r[key].tensors, key).toBeGreaterThan(10);
      expect(r[key].gradRelL2, key).toBeLessThan(1e-4);
      expect(
        Math.abs(r[key].loss[0] - r[key].loss[1]) / Math.abs(r[key].loss[1]),
        key,
      ).toBeLessThan(1e-5);
    }
    expect(await api('gpuErrors')).toEqual([]);
  });

  // The reference here is the exact float64 sum at 4096 random elements of each output (and
  // every channel of its first and last row; conv-reference.ts), not the cpu backend, and the
  // stock webgpu kernels are not run: at these widths each took minutes per case on 2 cores.
  // Every output element is still checked for being written (NaN-filled outputs). The fast
  // kernels are called directly: the engine path runs the same functions (checked above).
  it.each([
    ['regblock', FULL_WIDTH_CASES],
    ['tiled', FULL_WIDTH_TILED_CASES],
    ...(subgroups ? ([['subgroup', FULL_WIDTH_SUBGROUP_CASES]] as const) : []),
  ] as const)(
    "nnU-Net's full channel widths (801's 3d_fullres: 256→320, 320→320, transposed 320→256, 32 at full resolution), %s variant, match an exact reference",
    async (variant, cases) => {
      const r = await api('checkKernels', cases, {
        variant,
        stock: false,
        engine: false,
        sample: 4096,
      });
      expect(r).toHaveLength(3 * cases.length);
      expect(await api('gpuErrors')).toEqual([]);
      for (const c of r) {
        expect(c.refNorm, c.name).toBeGreaterThan(0);
        expect(c.checked, c.name).toBeGreaterThanOrEqual(Math.min(c.elements, 4096));
        expect(c.relL2.fast, c.name).toBeLessThan(1e-4);
        expect(c.unwritten, c.name).toBe(0);
      }
    },
  );
});
