// The Predict tab's engine choice (src/infer/engine-choice.ts): which runtime and execution
// providers each setting gets with and without a WebGPU adapter (Automatic avoids software adapters), and the package's model.onnx check.
import { describe, expect, it } from 'vitest';
import {
  chooseEngine,
  INFER_BACKENDS,
  onnxBytesFor,
  ortEngineName,
  type EngineChoice,
} from '../../src/infer/engine-choice.ts';
import { isSoftwareAdapter, type AdapterFacts } from '../../src/gpu/probe.ts';
import {
  archFromFolder as archFromDir,
  type ModelFolder as ModelDir,
} from '../../src/model/model-folder.ts';
import { buildOnnxModel } from '../../src/infer/onnx-export.ts';
import { twoStageModel } from './helpers/tiny-model.ts';

async function tinyModel(features: number[]): Promise<ModelDir> {
  return (await twoStageModel(features)) as never;
}

describe('engine choice', () => {
  const hw: AdapterFacts = { vendor: 'nvidia', architecture: 'ada', device: '', description: '' };
  const swiftshader: AdapterFacts = {
    vendor: 'google',
    architecture: 'swiftshader',
    device: '',
    description: '',
  };
  const session = (c: EngineChoice) => (c.kind === 'ort' ? c.session : c);

  it('maps each setting to a runtime, with and without WebGPU', () => {
    expect(session(chooseEngine('auto', hw))).toEqual({
      backend: 'ort-web',
      executionProviders: ['webgpu', 'wasm'],
    });
    expect(session(chooseEngine('auto', null))).toEqual({
      backend: 'ort-web',
      executionProviders: ['wasm'],
    });
    expect(session(chooseEngine('onnx-webgpu', hw))).toEqual({
      backend: 'ort-web',
      executionProviders: ['webgpu'],
    });
    expect(session(chooseEngine('onnx-wasm', null))).toEqual({ backend: 'ort-wasm' });
    expect(chooseEngine('tfjs', hw)).toMatchObject({ kind: 'tfjs', fastKernels: true });
    expect(chooseEngine('tfjs-stock', hw)).toMatchObject({ kind: 'tfjs', fastKernels: false });
  });

  it('Automatic takes WebAssembly on a software adapter and says why', () => {
    const c = chooseEngine('auto', swiftshader);
    expect(session(c)).toEqual({ backend: 'ort-web', executionProviders: ['wasm'] });
    expect(c.reason).toMatch(/Automatic.*google swiftshader.*software.*WebAssembly/);
    // The browser's own fallback flag counts even under an unknown name.
    expect(session(chooseEngine('auto', { ...hw, isFallbackAdapter: true }))).toEqual({
      backend: 'ort-web',
      executionProviders: ['wasm'],
    });
    expect(chooseEngine('auto', hw).reason).toMatch(/hardware WebGPU adapter \(nvidia ada\)/);
    expect(chooseEngine('auto', null).reason).toMatch(/no WebGPU adapter/);
    // An explicit choice is honoured on a software adapter (the user asked for it).
    expect(session(chooseEngine('onnx-webgpu', swiftshader))).toEqual({
      backend: 'ort-web',
      executionProviders: ['webgpu'],
    });
    expect(chooseEngine('onnx-webgpu', swiftshader).reason).toBe('chosen in the settings');
  });

  it('tells software adapters from hardware ones', () => {
    expect(isSoftwareAdapter(swiftshader)).toBe(true);
    expect(
      isSoftwareAdapter({ vendor: 'mesa', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' }),
    ).toBe(true);
    expect(isSoftwareAdapter({ description: 'Microsoft Basic Render Driver' })).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'apple', architecture: 'metal-3' })).toBe(false);
    expect(
      isSoftwareAdapter({ vendor: 'nvidia', architecture: 'ada', isFallbackAdapter: false }),
    ).toBe(false);
    expect(
      isSoftwareAdapter({ vendor: 'intel', architecture: 'gen-12lp', isFallbackAdapter: true }),
    ).toBe(true);
  });

  it('refuses WebGPU engines without an adapter, and unknown settings, with what to choose instead', () => {
    expect(() => chooseEngine('tfjs', null)).toThrow(/no WebGPU.*Automatic/);
    expect(() => chooseEngine('tfjs-stock', null)).toThrow(/no WebGPU/);
    expect(() => chooseEngine('onnx-webgpu', null)).toThrow(/no WebGPU.*WebAssembly/);
    expect(() => chooseEngine('cuda' as never, hw)).toThrow(/unknown engine 'cuda'/);
    expect(INFER_BACKENDS).toHaveLength(5);
  });

  it('names the engine by its execution providers and wasm threads', () => {
    expect(ortEngineName(['webgpu', 'wasm'], 4)).toBe('onnxruntime-web webgpu');
    expect(ortEngineName(['wasm'], 4)).toBe('onnxruntime-web wasm (4 threads)');
    expect(ortEngineName(['wasm'], 1)).toBe('onnxruntime-web wasm');
  });

  it("uses the package's model.onnx when it matches the plans, builds one when absent, refuses a mismatch", async () => {
    const md = await tinyModel([4, 8]);
    const arch = archFromDir(md);
    const built = onnxBytesFor(md, arch);
    expect(built.byteLength).toBeGreaterThan(1000);
    const own = buildOnnxModel(arch, md.weights);
    expect(onnxBytesFor({ ...md, onnx: own }, arch)).toBe(own);
    const other = await tinyModel([2, 4]);
    const foreign = buildOnnxModel(archFromDir(other), other.weights);
    expect(() => onnxBytesFor({ ...md, onnx: foreign }, arch)).toThrow(
      /does not match its plans.json/,
    );
  });
});
