import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApp, type AppSession } from './harness.ts';
import type { HookedWindow } from '../../src/ui/main.ts';

describe('tfjs on WebGPU in a dedicated module worker', () => {
  let s: AppSession;
  beforeAll(async () => {
    s = await openApp({ webgpu: true });
  });
  afterAll(async () => s?.close());

  it('conv3d forward and both gradients match the cpu backend (rel. L2 < 1e-4)', async () => {
    const r = await s.page.evaluate(() =>
      (window as unknown as HookedWindow).__fednnunet.selfTest(),
    );
    expect(r.backend).toBe('webgpu');
    expect(JSON.stringify(r.gpu.adapter).toLowerCase()).toContain('swiftshader');
    expect(r.relL2.y).toBeLessThan(1e-4);
    expect(r.relL2.dx).toBeLessThan(1e-4);
    expect(r.relL2.dw).toBeLessThan(1e-4);
    // Non-trivial outputs: a zero tensor would "match" too.
    expect(await s.page.textContent('#selftest-result')).toContain('WebGPU matches the CPU');
    expect(s.errors).toEqual([]);
  });
});
