// The Predict tab's engine choice (src/infer/engine-choice.ts): which runtime and execution
// providers each setting gets with and without a WebGPU adapter, and the package's model.onnx check.
import { describe, expect, it } from 'vitest';
import { chooseEngine, INFER_BACKENDS, onnxBytesFor, ortEngineName } from '../../src/infer/engine-choice.ts';
import { archFromFolder as archFromDir, type ModelFolder as ModelDir } from '../../src/model/model-folder.ts';
import { buildOnnxModel } from '../../src/infer/onnx-export.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { DATASET_JSON, tinyPlans } from './infer-helpers.ts';

async function tinyModel(features: number[]): Promise<ModelDir> {
  await useBackend('cpu');
  const { plans, configuration } = tinyPlans({ patch: [8, 8, 8], spacing: [1, 1, 1], strides: [[1, 1, 1], [2, 2, 2]], features });
  const m = PlainConvUNet.fromPlan(plans.configurations[configuration] as never, 1, 3, { seed: 1 });
  const weights = await m.namedWeights();
  m.dispose();
  return { plans, datasetJson: DATASET_JSON as never, configuration, weights };
}

describe('engine choice', () => {
  it('maps each setting to a runtime, with and without WebGPU', () => {
    expect(chooseEngine('auto', true)).toEqual({ kind: 'ort', session: { backend: 'ort-web', executionProviders: ['webgpu', 'wasm'] } });
    expect(chooseEngine('auto', false)).toEqual({ kind: 'ort', session: { backend: 'ort-web', executionProviders: ['wasm'] } });
    expect(chooseEngine('onnx-webgpu', true)).toEqual({ kind: 'ort', session: { backend: 'ort-web', executionProviders: ['webgpu'] } });
    expect(chooseEngine('onnx-wasm', false)).toEqual({ kind: 'ort', session: { backend: 'ort-wasm' } });
    expect(chooseEngine('tfjs', true)).toEqual({ kind: 'tfjs', fastKernels: true });
    expect(chooseEngine('tfjs-stock', true)).toEqual({ kind: 'tfjs', fastKernels: false });
  });

  it('refuses WebGPU engines without an adapter, and unknown settings, with what to choose instead', () => {
    expect(() => chooseEngine('tfjs', false)).toThrow(/no WebGPU.*Automatic/);
    expect(() => chooseEngine('tfjs-stock', false)).toThrow(/no WebGPU/);
    expect(() => chooseEngine('onnx-webgpu', false)).toThrow(/no WebGPU.*WebAssembly/);
    expect(() => chooseEngine('cuda' as never, true)).toThrow(/unknown engine 'cuda'/);
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
    expect(() => onnxBytesFor({ ...md, onnx: foreign }, arch)).toThrow(/does not match its plans.json/);
  });
});
