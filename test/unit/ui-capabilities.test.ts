// "This browser" (src/ui/capabilities.ts): each row follows from the facts probed here, so a
// feature that exists is never marked "not yet built" and a missing adapter or thread is said.
import { describe, expect, it } from 'vitest';
import { capabilityRows, type BrowserFacts } from '../../src/ui/capabilities.ts';

const hardware: BrowserFacts = {
  webgpu: {
    available: true,
    crossOriginIsolated: true,
    adapter: { vendor: 'nvidia', architecture: 'ada', device: '', description: '' },
    features: ['shader-f16'],
    limits: { maxStorageBufferBindingSize: 2 * 1024 ** 3 },
  },
  storage: { usage: 50 * 1024 ** 2, quota: 10 * 1024 ** 3 },
  threads: 8,
};
const byId = (f: BrowserFacts) => Object.fromEntries(capabilityRows(f).map((r) => [r.id, r]));

describe('capability rows', () => {
  it('marks everything usable on a hardware adapter, with what was measured', () => {
    const r = byId(hardware);
    for (const row of Object.values(r)) expect(row.usable, row.id).toBe(true);
    expect(r.train.detail).toBe('on nvidia ada; largest GPU buffer 2.0 GiB');
    expect(r.storage.detail).toBe('50 MiB used of 10.0 GiB available to this site');
    expect(r.threads.detail).toMatch(/^8 thread/);
    expect(r.predict.detail).toMatch(/WebGPU/);
    expect(JSON.stringify(capabilityRows(hardware))).not.toMatch(/not yet built|planned/);
  });

  it('says what is missing without WebGPU, isolation, f16 or a storage estimate', () => {
    const r = byId({
      webgpu: { available: false, crossOriginIsolated: false, reason: 'navigator.gpu is missing' },
      threads: 4,
    });
    expect(r.train).toMatchObject({
      usable: false,
      detail: 'needs WebGPU: navigator.gpu is missing',
    });
    expect(r.selftest.usable).toBe(false);
    expect(r.federate.usable).toBe(false);
    expect(r.plan.usable).toBe(true);
    expect(r.predict).toMatchObject({ usable: true, detail: 'Automatic uses ONNX on WebAssembly' });
    expect(r.threads).toMatchObject({ usable: false });
    expect(r.threads.detail).toMatch(/not cross-origin isolated/);
    expect(r.f16.usable).toBe(false);
    expect(r.storage).toMatchObject({
      usable: true,
      detail: 'storage quota not reported by this browser',
    });
  });

  it('flags a software adapter as slow and predicts with WebAssembly there; a full quota blocks import', () => {
    const swift: BrowserFacts = {
      ...hardware,
      webgpu: {
        ...hardware.webgpu,
        adapter: { vendor: 'google', architecture: 'swiftshader', device: '', description: '' },
        features: [],
      },
      storage: { usage: 100, quota: 100 },
    };
    const r = byId(swift);
    expect(r.train.usable).toBe(true);
    expect(r.train.detail).toMatch(/software adapter.*slowly/);
    expect(r.predict.detail).toMatch(/WebAssembly/);
    expect(r.f16.usable).toBe(false);
    expect(r.storage.usable).toBe(false);
  });
});
