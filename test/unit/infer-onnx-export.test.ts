// The ONNX export, run in onnxruntime-node and in onnxruntime-web (wasm, Node build), agrees with
// the tfjs forward (cpu backend) on random weights and inputs; initializer names and the
// transposed-conv rearrangement are checked against the model's parameters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../../src/model/tf-backend.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import {
  buildOnnxModel,
  exportOnnx,
  inspectOnnx,
  pointwiseToTransposed,
  pointwiseWeightName,
  readOnnxWeights,
  transposedToPointwise,
} from '../../src/infer/onnx-export.ts';
import { createOrtSession, type OrtBackend } from '../../src/infer/ort.ts';
import { randomArray, randomizeWeights, relL2, tfForwardNC, tinyConfig } from './infer-helpers.ts';

beforeAll(async () => {
  await useBackend('cpu');
});

const CASES = [
  {
    name: '3d, anisotropic [1,2,2] stride',
    dims: 3 as const,
    strides: [
      [1, 1, 1],
      [2, 2, 2],
      [1, 2, 2],
    ],
    kernels: [
      [3, 3, 3],
      [3, 3, 3],
      [1, 3, 3],
    ],
    shape: [2, 1, 8, 16, 12],
  },
  {
    name: '3d, 2 input channels, 4 stages',
    dims: 3 as const,
    strides: [
      [1, 1, 1],
      [2, 2, 2],
      [2, 2, 1],
      [2, 1, 2],
    ],
    kernels: undefined,
    shape: [1, 2, 8, 8, 8],
    features: [4, 6, 8, 8],
  },
  {
    name: '2d, [2,1] stride',
    dims: 2 as const,
    strides: [
      [1, 1],
      [2, 2],
      [2, 1],
    ],
    kernels: undefined,
    shape: [3, 1, 16, 12],
  },
];

const models: PlainConvUNet[] = [];
afterAll(() => models.forEach((m) => m.dispose()));

describe('ONNX export of PlainConvUNet', () => {
  for (const c of CASES) {
    it(`${c.name}: ort-node and ort-wasm match tfjs (rel. L2 < 1e-4)`, async () => {
      const inCh = c.shape[1];
      const model = PlainConvUNet.fromPlan(
        tinyConfig(c.dims, c.strides, c.kernels, c.features),
        inCh,
        3,
        { seed: 1 },
      );
      models.push(model);
      await randomizeWeights(model, 7);
      const x = randomArray(
        c.shape.reduce((a, b) => a * b, 1),
        11,
      );
      const ref = await tfForwardNC(model, x, c.shape);
      const bytes = await exportOnnx(model);
      for (const backend of ['ort-node', 'ort-wasm'] as OrtBackend[]) {
        const s = await createOrtSession(bytes, { backend, numThreads: 1 });
        const y = await s.run(x, c.shape);
        await s.release();
        expect(y.shape).toEqual([c.shape[0], 3, ...c.shape.slice(2)]);
        const err = relL2(y.data, ref);
        console.log(`${c.name} ${backend}: rel. L2 ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-4);
      }
    });
  }

  it('initializers keep the nnU-Net names; the transposed convs are rearranged as documented', async () => {
    const model = PlainConvUNet.fromPlan(
      tinyConfig(3, [
        [1, 1, 1],
        [2, 2, 2],
        [1, 2, 2],
      ]),
      1,
      2,
      { seed: 2 },
    );
    models.push(model);
    const w = await randomizeWeights(model, 3);
    const info = inspectOnnx(buildOnnxModel(model.arch, w));
    expect(info.opset).toBe(17);
    expect(info.inputs).toEqual(['input']);
    expect(info.outputs).toEqual(['logits']);
    expect(info.arch).toEqual(model.arch);
    expect(info.opTypes).not.toContain('ConvTranspose');
    const floatNames = info.initializers.filter((t) => t.dataType === 1).map((t) => t.name);
    // Every parameter but the transposed-conv weights and the unused (deep-supervision) seg heads.
    const expected = model.specs
      .map((s) => s.name)
      .filter(
        (n) =>
          !/^decoder\.transpconvs\.\d+\.weight$/.test(n) && !/^decoder\.seg_layers\.0\./.test(n),
      );
    expect(new Set(floatNames.filter((n) => !n.endsWith('.pointwise')))).toEqual(new Set(expected));
    expect(floatNames.filter((n) => n.endsWith('.pointwise')).sort()).toEqual([
      pointwiseWeightName(0),
      pointwiseWeightName(1),
    ]);
    const shapes = new Map(info.initializers.map((t) => [t.name, t.shape]));
    for (const s of model.specs) {
      if (!shapes.has(s.name) || s.name.startsWith('decoder.transpconvs.')) continue;
      expect(shapes.get(s.name), s.name).toEqual(s.shape);
    }
    // transpconvs.0: 16 → 8 channels, stride [1,2,2]: pointwise [8·4, 16, 1, 1, 1]; bias [8, 1, 1, 1].
    expect(shapes.get(pointwiseWeightName(0))).toEqual([32, 16, 1, 1, 1]);
    expect(shapes.get('decoder.transpconvs.0.bias')).toEqual([8, 1, 1, 1]);
    expect(shapes.get(pointwiseWeightName(1))).toEqual([32, 8, 1, 1, 1]);
    // Reading the weights back undoes the rearrangement: the model's state_dict minus seg head 0.
    const back = readOnnxWeights(buildOnnxModel(model.arch, w));
    for (const name of expected.concat([
      'decoder.transpconvs.0.weight',
      'decoder.transpconvs.1.weight',
    ])) {
      expect(back.get(name)?.shape, name).toEqual(w.get(name)!.shape);
      expect(back.get(name)!.data, name).toEqual(w.get(name)!.data);
    }
  });

  it('pointwise rearrangement: channel ((o·sd + a)·sh + b)·sw + c holds W[i, o, a, b, c]', () => {
    const shape = [3, 2, 1, 2, 2];
    const w = Float32Array.from({ length: 24 }, (_, i) => i);
    const p = transposedToPointwise(w, shape);
    expect(p.shape).toEqual([8, 3, 1, 1, 1]);
    const at = (i: number, o: number, a: number, b: number, c: number) =>
      w[(((i * 2 + o) * 1 + a) * 2 + b) * 2 + c];
    for (let i = 0; i < 3; i++)
      for (let o = 0; o < 2; o++)
        for (let b = 0; b < 2; b++)
          for (let c = 0; c < 2; c++) {
            expect(p.data[(((o * 1 + 0) * 2 + b) * 2 + c) * 3 + i]).toBe(at(i, o, 0, b, c));
          }
    expect(pointwiseToTransposed(p.data, p.shape, [1, 2, 2])).toEqual({ data: w, shape });
  });

  it('a missing weight is reported by name', () => {
    const model = PlainConvUNet.fromPlan(
      tinyConfig(2, [
        [1, 1],
        [2, 2],
      ]),
      1,
      2,
    );
    models.push(model);
    expect(() => buildOnnxModel(model.arch, new Map())).toThrow(
      /missing weight 'encoder.stages.0.0.convs.0.conv.weight'/,
    );
  });
});
