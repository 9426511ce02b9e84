// Split-K in the tiled conv3d variant (src/model/kernels/conv3d-tiled.ts): which programs each pass
// builds for a deep-stage shape with few tiles and a long K (split, then a sum) and for a
// full-resolution shape with many tiles (one GEMM). The values are checked on WebGPU in
// kernels-node.test.ts, whose tiled cases include both kinds.
import { describe, expect, it } from 'vitest';
import {
  conv3dBackpropFilterTiled,
  conv3dBackpropInputTiled,
  conv3dForwardTiled,
} from '../../src/model/kernels/conv3d-tiled.ts';
import {
  fakeTensor,
  fakeWebGPUBackend,
  type FakeWebGPUBackend,
} from './helpers/fake-webgpu-backend.ts';

const t = fakeTensor;

function passes(spatial: number[], cin: number, cout: number) {
  const x = t([1, ...spatial, cin]);
  const w = t([3, 3, 3, cin, cout]);
  const dy = t([1, ...spatial, cout]);
  const a = { strides: [1, 1, 1], pad: 'same' as const };
  const run = (f: (b: FakeWebGPUBackend) => unknown) => {
    const b = fakeWebGPUBackend();
    f(b);
    return b;
  };
  return {
    forward: run((b) => conv3dForwardTiled(b, x, w, a)),
    dx: run((b) => conv3dBackpropInputTiled(b, dy, w, { ...a, inputShape: x.shape })),
    dw: run((b) => conv3dBackpropFilterTiled(b, x, dy, { ...a, filterShape: w.shape })),
  };
}

describe('tiled conv3d: split-K where the tile grid is small', () => {
  it('a deep stage (4×4×4 voxels, 320→320: 20 tiles, K = 8640) splits K in forward and dx, then sums; the partials are freed', () => {
    const deep = passes([4, 4, 4], 320, 320);
    // dw's grid is the filter (8640 × 320: 2700 tiles) and its K only 64 voxels: one GEMM.
    expect(deep.dw.programs).toHaveLength(1);
    for (const [pass, b] of Object.entries({ forward: deep.forward, dx: deep.dx })) {
      expect(b.programs, pass).toHaveLength(2);
      const [gemm, sum] = b.programs;
      const [S, elems] = gemm.outputShape;
      expect(S, pass).toBeGreaterThan(1);
      // At most ~256 tiles' worth of partial results.
      expect(S * Math.ceil(elems / 1024), pass).toBeLessThanOrEqual(256 + 20);
      expect(sum.shaderKey, pass).toMatch(/sksum/);
      expect(sum.getUserCode(), pass).toContain(`p < ${S}`);
      expect(b.disposed, pass).toHaveLength(1);
    }
  });

  it('a full-resolution stage (32×32×32, 32→32: 2048 tiles) runs one GEMM per pass', () => {
    for (const [pass, b] of Object.entries(passes([32, 32, 32], 32, 32))) {
      if (pass === 'dw') continue; // dw's M × N is the filter (864 × 32): few tiles, K = 32 768
      expect(b.programs, pass).toHaveLength(1);
      expect(b.programs[0].shaderKey, pass).not.toMatch(/_sk/);
    }
    const dw = passes([32, 32, 32], 32, 32).dw;
    expect(dw.programs).toHaveLength(2);
    expect(dw.programs[0].outputShape[0]).toBeGreaterThan(1);
  });
});
