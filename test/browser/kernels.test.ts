// The fast WebGPU kernels (src/model/kernels) in Chromium against the same suite in Node. The
// full correctness suite (every conv case, the reductions and fused norm, fallbacks, a training
// step vs cpu, nnU-Net's full channel widths) runs in Node through Dawn
// (test/unit/kernels-node.test.ts), which needs no browser; here Chromium's WebGPU (SwiftShader)
// runs the conv cases and one training step of the check network, and the step's loss and every
// gradient must equal Node's (Dawn on the same SwiftShader) within 1e-5 relative, so what Node
// checks holds for the browser.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKernelsPage, type KernelsPage } from '../pages/kernels/open-page.ts';
import { openKernelsNode, type KernelsNode } from '../kernels/open-node.ts';
import { KERNEL_CASES, SUBGROUP_CASES, TILED_CASES } from '../kernels/cases.ts';

describe('fast WebGPU kernels in Chromium', () => {
  let s: KernelsPage;
  let node: KernelsNode | undefined;
  let noNode = '';
  beforeAll(async () => {
    s = await openKernelsPage();
    expect(await s.call('init')).toBe('webgpu');
    try {
      node = await openKernelsNode();
      await node.call('init');
    } catch (e) {
      noNode = String(e);
    }
  });
  afterAll(async () => s?.close());

  it('forward, dx and dw match the cpu backend (rel. L2 < 1e-4) and write every output element', async () => {
    const r = await s.call('checkKernels', KERNEL_CASES);
    expect(r).toHaveLength(3 * KERNEL_CASES.length);
    expect(await s.call('gpuErrors')).toEqual([]);
    for (const c of r) {
      expect(c.refNorm, c.name).toBeGreaterThan(0);
      expect(c.relL2.fast, c.name).toBeLessThan(1e-4);
      expect(c.unwritten, c.name).toBe(0);
    }
    expect(s.errors).toEqual([]);
  });

  /** One variant on `cases` against the cpu backend, every output element written. */
  async function expectVariantMatches(variant: 'tiled' | 'subgroup', cases: typeof TILED_CASES) {
    const r = await s.call('checkKernels', cases, { variant, stock: false });
    expect(r).toHaveLength(3 * cases.length);
    expect(await s.call('gpuErrors')).toEqual([]);
    for (const c of r) {
      expect(c.relL2.fast, c.name).toBeLessThan(1e-4);
      expect(c.unwritten, c.name).toBe(0);
    }
    expect(s.errors).toEqual([]);
  }

  it('the tiled (workgroup-memory) conv3d variant matches the cpu backend in Chromium too', async () => {
    await expectVariantMatches('tiled', TILED_CASES);
  });

  it("the filter gradient's subgroup variant matches the cpu backend in Chromium too (where the page's adapter has `subgroups`)", async (ctx) => {
    if (!(await s.call('hasSubgroups'))) {
      console.warn("skipped: this Chromium's WebGPU adapter has no `subgroups`");
      ctx.skip();
    }
    // Scalar loads at stride 1, vec4 at stride 2, 2-wide blocks of 70 output channels.
    await expectVariantMatches(
      'subgroup',
      [0, 2, 4].map((i) => SUBGROUP_CASES[i]),
    );
  });

  it('a training step gives the same loss and gradients in Chromium as in Node through Dawn (≤ 1e-5 relative)', async (ctx) => {
    if (!node) {
      console.warn(`skipped: no WebGPU in Node here: ${noNode}`);
      ctx.skip();
    }
    const inPage = await s.call('stepOutputs');
    const inNode = await node!.call('stepOutputs');
    expect(Math.abs(inPage.loss - inNode.loss) / Math.abs(inNode.loss)).toBeLessThan(1e-5);
    const names = Object.keys(inNode.grads);
    expect(Object.keys(inPage.grads).sort()).toEqual([...names].sort());
    expect(names.length).toBeGreaterThan(10);
    let num = 0;
    let den = 0;
    for (const n of names) {
      const a = inPage.grads[n];
      const b = inNode.grads[n];
      expect(a.length, n).toBe(b.length);
      for (let i = 0; i < b.length; i++) {
        num += (a[i] - b[i]) ** 2;
        den += b[i] ** 2;
      }
    }
    const rel = Math.sqrt(num / den);
    console.log(
      `Chromium vs Node (Dawn): loss ${inPage.loss} vs ${inNode.loss}, gradients rel. L2 ${rel.toExponential(2)}`,
    );
    expect(rel).toBeLessThan(1e-5);
    expect(await s.call('gpuErrors')).toEqual([]);
    expect(await node!.call('gpuErrors')).toEqual([]);
  });
});
