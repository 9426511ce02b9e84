import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApp, screenshot, type AppSession } from './harness.ts';
import type { HookedWindow } from '../../src/ui/main.ts';

describe('app shell with WebGPU (SwiftShader)', () => {
  let s: AppSession;
  beforeAll(async () => {
    s = await openApp({ webgpu: true });
  });
  afterAll(async () => s?.close());

  it('loads without console errors, cross-origin isolated, and reports the adapter', async () => {
    const status = await s.page.evaluate(
      () => (window as unknown as HookedWindow).__fednnunet.status,
    );
    expect(status.available).toBe(true);
    expect(status.crossOriginIsolated).toBe(true);
    expect(JSON.stringify(status.adapter).toLowerCase()).toContain('swiftshader');
    expect(status.limits!.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(await s.page.isVisible('#webgpu-banner')).toBe(false);
    await s.page.click('#tab-system');
    expect(await s.page.textContent('#webgpu-status')).toContain('WebGPU is available');
    await screenshot(s.page, 'app-shell-webgpu');
    expect(s.errors).toEqual([]);
  });
});

describe('app shell without WebGPU', () => {
  let s: AppSession;
  beforeAll(async () => {
    s = await openApp({ webgpu: false });
  });
  afterAll(async () => s?.close());

  it('says plainly that WebGPU is missing and lists what still works', async () => {
    // Said on the first screen, whatever tab is open…
    expect(await s.page.textContent('#webgpu-banner')).toContain('no WebGPU');
    // …and in detail on "This browser", reachable from the keyboard.
    // (ArrowLeft from the first tab wraps to the last, "This browser", whatever tabs lie between.)
    await s.page.focus('#tab-data');
    await s.page.keyboard.press('ArrowLeft');
    await s.page.waitForSelector('#no-webgpu');
    const text = await s.page.textContent('#webgpu-status');
    expect(text).toContain('WebGPU is not available');
    expect(text).toContain('What still works here');
    expect(await s.page.isDisabled('#selftest-run')).toBe(true);
    // CPU-only capabilities stay marked usable; GPU ones are not.
    const usable = await s.page.$$eval('#capabilities li', (lis) =>
      lis.map((li) => li.getAttribute('data-usable')),
    );
    expect(usable).toContain('true');
    expect(usable).toContain('false');
    await screenshot(s.page, 'app-shell-no-webgpu');
    expect(s.errors).toEqual([]);
  });
});
