// The subgroup variant of the long sum/mean split pass (src/model/kernels/reduce.ts) and the
// device that offers it (src/model/kernels/subgroups.ts). Pure part: which program the reduce
// builds with and without the `subgroups` feature. On WebGPU in Node (Dawn; SwiftShader here
// lists `subgroups`): forced to 'subgroup', the kernel runs and matches the cpu backend.
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reduce, setReduceVariant } from '../../src/model/kernels/reduce.ts';
import { hasSubgroups, hoistEnable } from '../../src/model/kernels/subgroups.ts';
import type { RawProgram } from '../../src/model/kernels/program.ts';
import { fakeWebGPUBackend, type FakeWebGPUBackend } from './helpers/fake-webgpu-backend.ts';
import { installNodeWebGPU, type NodeWebGPU } from '../../src/node/webgpu.ts';
import { useBackend } from '../../src/model/tf-backend.ts';

const x = { dataId: {}, shape: [2, 4099, 3], dtype: 'float32' } as TensorInfo;
const sum = (b: FakeWebGPUBackend, op: 'sum' | 'max' = 'sum') =>
  reduce(b, x, { axis: 1, keepDims: false }, op);

describe('subgroup reduce variant: when it is offered', () => {
  afterAll(() => setReduceVariant('serial'));

  it('runs only where the device has `subgroups` and the variant is chosen; max stays serial', () => {
    const keys = (features: string[], op: 'sum' | 'max' = 'sum') => {
      const b = fakeWebGPUBackend(features);
      sum(b, op);
      return b.programs.map((p) => p.shaderKey);
    };
    setReduceVariant('subgroup');
    expect(keys(['subgroups'])[0]).toMatch(/^fnk_sgred1_/);
    expect(keys([])[0]).toMatch(/^fnk_red1_/);
    expect(keys(['subgroups'], 'max')[0]).toMatch(/^fnk_red1_/);
    setReduceVariant('serial');
    expect(keys(['subgroups'])[0]).toMatch(/^fnk_red1_/);
    expect(hasSubgroups({ device: { features: new Set(['subgroups']) } })).toBe(true);
    expect(hasSubgroups({ device: { features: new Set() } })).toBe(false);
    expect(hasSubgroups({})).toBe(false);
  });

  it('moves `enable subgroups;` ahead of the tfjs prelude', () => {
    const code = 'struct Uniforms {};\nenable subgroups;\nfn main() {}';
    const h = hoistEnable(code);
    expect(h.startsWith('enable subgroups;\n')).toBe(true);
    expect(h.match(/enable subgroups;/g)).toHaveLength(1);
    expect(hoistEnable('fn main() {}')).toBe('fn main() {}');
  });
});

let gpu: NodeWebGPU | undefined;
try {
  gpu = await installNodeWebGPU();
} catch (e) {
  console.warn(`skipped: ${String(e)}`);
}
const offered = !!gpu?.adapter.features.has('subgroups');

describe.skipIf(!offered)('subgroup reduce on WebGPU (Dawn)', { timeout: 600_000 }, () => {
  // Odd lengths (a chunk tail per partial, a last partial shorter than the rest) and inner > 1.
  const cases: Array<[string, number[], number | number[], 'sum' | 'mean']> = [
    ['sum [3001] all', [3001], 0, 'sum'],
    ['sum [2,4099,3] axis 1', [2, 4099, 3], 1, 'sum'],
    ['mean [5003,7] axis 0', [5003, 7], 0, 'mean'],
    ['mean [3,2,1031,1] axes 1,2', [3, 2, 1031, 1], [1, 2], 'mean'],
  ];
  const run = (shape: number[], axis: number | number[], op: 'sum' | 'mean') =>
    tf.tidy(() => {
      const n = shape.reduce((a, b) => a * b, 1);
      const v = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) + 0.25);
      return tf[op](tf.tensor(v, shape), axis);
    });
  let keys: string[] = [];

  beforeAll(async () => {
    await useBackend('webgpu', { reduceVariant: 'subgroup' });
    const b = tf.backend() as unknown as {
      runWebGPUProgram(p: RawProgram, ...r: unknown[]): unknown;
    };
    const orig = b.runWebGPUProgram.bind(b);
    b.runWebGPUProgram = (p, ...r) => {
      keys.push(p.shaderKey);
      return orig(p, ...r);
    };
  });
  afterAll(async () => {
    await useBackend('cpu');
    setReduceVariant('serial');
  });

  it('the device was created with `subgroups`', () => {
    expect(hasSubgroups(tf.backend())).toBe(true);
  });

  it.each(cases)('%s matches the cpu backend (rel. L2 < 1e-5)', async (_n, shape, axis, op) => {
    await useBackend('webgpu', { reduceVariant: 'subgroup' });
    keys = [];
    const got = await run(shape, axis, op).data();
    expect(keys.some((k) => k.startsWith('fnk_sgred1_'))).toBe(true);
    await useBackend('cpu');
    const ref = await run(shape, axis, op).data();
    let d = 0;
    let r = 0;
    for (let i = 0; i < ref.length; i++) {
      d += (got[i] - ref[i]) ** 2;
      r += ref[i] ** 2;
    }
    expect(r).toBeGreaterThan(0);
    expect(Math.sqrt(d / r)).toBeLessThan(1e-5);
  });
});
