// ResidualEncoderUNet from nnU-Net plans against torch (dynamic-network-architectures itself):
// test/reference/resenc holds a tiny random-weight network saved as an nnU-Net results folder, an
// input batch and torch's logits (see its README). Our tfjs forward (and the ONNX export on
// onnxruntime-node) must give the same logits; names and shapes must match the checkpoint exactly.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { archFromPlan, paramSpecs } from '../../src/model/arch.ts';
import { nnunetArch, predictNnUNetCase } from '../../src/infer/nnunet-model.ts';
import { readNnUNetModel } from '../../src/infer/nnunet-folds.ts';
import { buildOnnxModel } from '../../src/infer/onnx-export.ts';
import { createOrtSession } from '../../src/infer/ort.ts';
import { readNpy } from '../../src/io/npy.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { ellipsoidPhantom } from '../../src/demo/ellipsoid-phantom.ts';
import { configurationInfo, tfjsTilePredictor } from '../../src/infer/predictor.ts';
import { ortTilePredictor } from '../../src/infer/ort.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { networkWeightsEditor, RESENC_MODEL as MODEL, resultsJson } from '../nnunet-helpers.ts';
import { REFERENCE } from '../paths.ts';

const DIR = `${REFERENCE}/resenc`;
const { plans, datasetJson } = resultsJson(MODEL);
const meta = JSON.parse(readFileSync(`${DIR}/fixture_meta.json`, 'utf8')) as {
  unique_parameters: Array<[string, number[]]>;
};
const input = readNpy(new Uint8Array(readFileSync(`${DIR}/input.npy`)));
const expected = readNpy(new Uint8Array(readFileSync(`${DIR}/logits.npy`)));

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('ResidualEncoderUNet (nnU-Net ResEnc presets)', () => {
  it('has exactly the state_dict names and shapes of dynamic-network-architectures', () => {
    const arch = nnunetArch(plans, '3d_fullres', datasetJson);
    expect(arch.residual).toEqual({ nBlocksPerStage: [1, 2, 2], stemChannels: 4 });
    expect(paramSpecs(arch).map((s) => [s.name, s.shape])).toEqual(meta.unique_parameters);
  });

  it('tfjs forward equals torch on the reference input (max |Δ| ≤ 1e-4)', async () => {
    await useBackend('cpu');
    const m = await readNnUNetModel(fsSource(MODEL));
    expect(m.mirrorAxes).toEqual([0, 1, 2]);
    const net = new PlainConvUNet(m.arch);
    try {
      expect(net.loadNamedWeights(m.folds[0].weights).length).toBe(meta.unique_parameters.length);
      const [n, , ...spatial] = input.shape;
      const y = await net.predictLogits(input.data as Float32Array, n, spatial);
      const d = maxAbsDiff(y, expected.data as Float32Array);
      console.log(`ResEnc tfjs-cpu vs torch: max |Δlogit| ${d.toExponential(2)}`);
      expect(d).toBeLessThanOrEqual(1e-4);
    } finally {
      net.dispose();
    }
  });

  it('its ONNX export on onnxruntime-node equals torch (max |Δ| ≤ 1e-4)', async () => {
    const m = await readNnUNetModel(fsSource(MODEL));
    const s = await createOrtSession(buildOnnxModel(m.arch, m.folds[0].weights), {
      backend: 'ort-node',
    });
    try {
      const y = await s.run(input.data as Float32Array, input.shape);
      expect(y.shape).toEqual(expected.shape);
      const d = maxAbsDiff(y.data, expected.data as Float32Array);
      console.log(`ResEnc onnxruntime-node vs torch: max |Δlogit| ${d.toExponential(2)}`);
      expect(d).toBeLessThanOrEqual(1e-4);
    } finally {
      await s.release();
    }
  });

  it('predicts a case through the nnU-Net pipeline on tfjs-cpu and onnxruntime-node alike', async () => {
    await useBackend('cpu');
    const m = await readNnUNetModel(fsSource(MODEL));
    const { patch } = configurationInfo(m.plans, m.configuration);
    const { image } = ellipsoidPhantom(5, 16);
    const net = new PlainConvUNet(m.arch);
    net.loadNamedWeights(m.folds[0].weights);
    const s = await createOrtSession(buildOnnxModel(m.arch, m.folds[0].weights), {
      backend: 'ort-node',
    });
    try {
      const opts = { tta: true, tileBatch: 2, returnProbabilities: true };
      const a = await predictNnUNetCase(image, m, [tfjsTilePredictor(net, patch)], opts);
      const b = await predictNnUNetCase(
        image,
        m,
        [ortTilePredictor(s, patch, m.arch.inputChannels)],
        opts,
      );
      expect(a.segmentation.dims).toEqual([16, 16, 16]);
      const pa = a.probabilities!.data;
      const pb = b.probabilities!.data;
      let same = 0;
      for (let i = 0; i < a.segmentation.data.length; i++)
        if (a.segmentation.data[i] === b.segmentation.data[i]) same++;
      const d = maxAbsDiff(pa, pb);
      console.log(
        `ResEnc case 16³ (3 tiles) +tta: tfjs vs ort labels identical ${same}/${a.segmentation.data.length}, max |Δp| ${d.toExponential(2)}`,
      );
      expect(same / a.segmentation.data.length).toBeGreaterThanOrEqual(0.999);
      expect(d).toBeLessThanOrEqual(4e-3); // at most one fp16 ulp flip (see nnunet-parity.test.ts)
      // random weights still give a non-trivial map
      expect(new Set(a.segmentation.data).size).toBeGreaterThan(1);
    } finally {
      net.dispose();
      await s.release();
    }
  }, 300_000);

  it('fails clearly on a missing, mis-shaped or unknown parameter, and on unsupported kwargs', () => {
    const edit = networkWeightsEditor(MODEL, nnunetArch(plans, '3d_fullres', datasetJson));
    expect(edit(() => {})).not.toThrow();
    expect(edit((m) => m.delete('encoder.stages.1.blocks.0.skip.1.conv.weight'))).toThrow(
      /lacks parameter 'encoder.stages.1.blocks.0.skip.1.conv.weight'/,
    );
    expect(
      edit((m) => {
        const t = m.get('encoder.stem.convs.0.conv.weight')!;
        m.set('encoder.stem.convs.0.conv.weight', { ...t, shape: [4, 1, 1, 3, 3] });
      }),
    ).toThrow(/shape \[4,1,1,3,3\].*needs \[4,1,3,3,3\]/);
    // a projection the plans' network does not have (block 1 of stage 1 keeps its channels)
    expect(
      edit((m) =>
        m.set(
          'encoder.stages.1.blocks.1.skip.0.conv.weight',
          m.get('encoder.stages.1.blocks.0.skip.1.conv.weight')!,
        ),
      ),
    ).toThrow(/'encoder.stages.1.blocks.1.skip.0.conv.weight' that the plans' network does not/);

    const cfg = (k: Record<string, unknown>) => {
      const p = structuredClone(plans);
      Object.assign(p.configurations['3d_fullres'].architecture.arch_kwargs, k);
      return p;
    };
    expect(() =>
      nnunetArch(
        cfg({ block: 'dynamic_network_architectures.building_blocks.residual.BottleneckD' }),
        '3d_fullres',
        datasetJson,
      ),
    ).toThrow(/block .*BottleneckD is not supported/);
    expect(() =>
      nnunetArch(cfg({ n_blocks_per_stage: undefined }), '3d_fullres', datasetJson),
    ).toThrow(/ResidualEncoderUNet needs arch_kwargs.n_blocks_per_stage/);
    expect(() =>
      nnunetArch(cfg({ n_blocks_per_stage: [1, 2] }), '3d_fullres', datasetJson),
    ).toThrow(/n_blocks_per_stage: 2 entries, expected 3/);
  });

  it('refuses any other network class, naming it', () => {
    for (const cls of [
      'dynamic_network_architectures.architectures.unet.ResidualUNet',
      'dynamic_network_architectures.architectures.primus.Primus',
    ]) {
      const p = structuredClone(plans);
      p.configurations['3d_fullres'].architecture.network_class_name = cls;
      expect(() => nnunetArch(p, '3d_fullres', datasetJson)).toThrow(
        new RegExp(`network class ${cls.replace(/\./g, '\\.')} is not supported`),
      );
    }
  });

  it('the trainer can build it from plans (shared model module): gradients reach every parameter', async () => {
    await useBackend('cpu');
    const { variableGrads, tidy, mean, tensor } = await import('@tensorflow/tfjs');
    const arch = archFromPlan(plans.configurations['3d_fullres'] as never, 1, 3);
    const net = new PlainConvUNet(arch, { seed: 3, deepSupervision: true });
    try {
      const x = tensor(input.data as Float32Array, [2, 8, 16, 16, 1]);
      const { grads } = variableGrads(() =>
        tidy(() => {
          const outs = net.forward(x);
          expect(outs.length).toBe(2); // deep supervision: one map per decoder level
          return mean(outs[0]).add(mean(outs[1])) as never;
        }),
      );
      const named = Object.keys(grads);
      expect(named.length).toBe(net.variables.length);
      for (const g of Object.values(grads)) g.dispose();
      x.dispose();
    } finally {
      net.dispose();
    }
  });
});
