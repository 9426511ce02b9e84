// When the filter gradient's subgroup variant (src/model/kernels/conv3d-subgroup.ts) runs, and
// what the registered kernel's dispatch (convDw) runs instead where it declines: pure, with a
// backend stand-in that records the programs. Its values are checked on WebGPU in
// kernels-node.test.ts and test/browser/kernels.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { conv3dBackpropFilterSubgroup } from '../../src/model/kernels/conv3d-subgroup.ts';
import { convDw, setConvVariants } from '../../src/model/kernels/conv-variants.ts';
import {
  fakeTensor,
  fakeWebGPUBackend,
  type FakeWebGPUBackend,
} from './helpers/fake-webgpu-backend.ts';

const t = fakeTensor;
/** dw of a 3³ 'same' conv, 8 → 16 channels, over `batch` × D × H × 4 voxels. */
const dw = (b: FakeWebGPUBackend, batch: number, d: number, h: number) =>
  conv3dBackpropFilterSubgroup(b, t([batch, d, h, 4, 8]), t([batch, d, h, 4, 16]), {
    strides: 1,
    pad: 'same',
    filterShape: [3, 3, 3, 8, 16],
  });

describe('subgroup dw variant: which shapes it takes', () => {
  afterEach(() => setConvVariants('regblock'));

  it('runs one program (no partials) for ≥ 64 (b, od, oh) rows on a device with `subgroups`', () => {
    const b = fakeWebGPUBackend(['subgroups']);
    expect(dw(b, 2, 4, 8)).not.toBeNull(); // 64 rows
    expect(b.programs).toHaveLength(1);
    expect(b.programs[0].shaderKey).toMatch(/^fnk_sgc3w_/);
    expect(b.programs[0].getUserCode()).toContain('subgroupAdd');
  });

  it('declines fewer rows than threads, and a device without `subgroups`', () => {
    expect(dw(fakeWebGPUBackend(['subgroups']), 1, 7, 9)).toBeNull(); // 63 rows
    expect(dw(fakeWebGPUBackend([]), 2, 4, 8)).toBeNull();
  });

  it('the registered kernel then runs regblock, not the stock kernel', () => {
    setConvVariants({ dw: 'subgroup' });
    const b = fakeWebGPUBackend(['subgroups']);
    const out = convDw(b, t([1, 7, 9, 4, 8]), t([1, 7, 9, 4, 16]), {
      strides: 1,
      pad: 'same',
      filterShape: [3, 3, 3, 8, 16],
    });
    expect(out).not.toBeNull();
    expect(b.programs[0].shaderKey).toMatch(/^fnk_c3w_/);
  });
});
