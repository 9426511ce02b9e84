import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { memorySource } from '../../src/io/file-source.ts';
import { nnunetArch } from '../../src/infer/nnunet-model.ts';
import { readNnUNetModel } from '../../src/infer/nnunet-folds.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { NNUNET_MODEL as MODEL, networkWeightsEditor, resultsJson } from '../nnunet-helpers.ts';

const { plans, datasetJson } = resultsJson(MODEL);

describe('nnU-Net model import', () => {
  it('builds PlainConvUNet from the plans and loads both folds by name and shape', async () => {
    await useBackend('cpu');
    const m = await readNnUNetModel(fsSource(MODEL));
    expect(m.folds.map((f) => f.fold)).toEqual([0, 1]);
    expect(m.configuration).toBe('3d_fullres');
    expect(m.arch.features).toEqual([8, 16, 32]);
    expect(m.arch.inputChannels).toBe(1);
    expect(m.arch.numClasses).toBe(3);
    expect(m.mirrorAxes).toEqual([0, 1, 2]);
    for (const f of m.folds) {
      const net = new PlainConvUNet(m.arch);
      expect(net.loadNamedWeights(f.weights).length).toBe(net.specs.length);
      // the loaded variables hold the checkpoint's values (round trip through the tf layout)
      const back = await net.namedWeights();
      const src = f.checkpoint.networkWeights.get('decoder.transpconvs.0.weight')!;
      expect(Array.from(back.get('decoder.transpconvs.0.weight')!.data)).toEqual(
        Array.from(src.data as Float32Array),
      );
      net.dispose();
    }
    // the folds differ (distinct trainings), so each fold really has its own weights
    const w0 = m.folds[0].weights.get('encoder.stages.0.0.convs.0.conv.weight')!.data;
    const w1 = m.folds[1].weights.get('encoder.stages.0.0.convs.0.conv.weight')!.data;
    expect(w0).not.toEqual(w1);
  });

  it('fails clearly on a missing, extra, mis-shaped or non-alias parameter', () => {
    const edit = networkWeightsEditor(MODEL, nnunetArch(plans, '3d_fullres', datasetJson));
    expect(edit(() => {})).not.toThrow();
    expect(edit((m) => m.delete('decoder.seg_layers.1.bias'))).toThrow(
      /lacks parameter 'decoder.seg_layers.1.bias'/,
    );
    expect(edit((m) => m.set('decoder.extra.weight', m.get('decoder.seg_layers.1.bias')!))).toThrow(
      /'decoder.extra.weight' that the plans' network does not have/,
    );
    expect(
      edit((m) => {
        const t = m.get('encoder.stages.0.0.convs.0.conv.weight')!;
        m.set('encoder.stages.0.0.convs.0.conv.weight', { ...t, shape: [4, 2, 3, 3, 3] });
      }),
    ).toThrow(/shape \[4,2,3,3,3\].*needs \[8,1,3,3,3\]/);
    expect(
      edit((m) => {
        const t = m.get('encoder.stages.0.0.convs.0.all_modules.0.weight')!;
        const d = (t.data as Float32Array).slice();
        d[0] += 1;
        m.set('encoder.stages.0.0.convs.0.all_modules.0.weight', { ...t, data: d });
      }),
    ).toThrow(/should alias 'encoder.stages.0.0.convs.0.conv.weight'/);
  });

  it('refuses network classes other than PlainConvUNet and ResidualEncoderUNet, naming the class', () => {
    const p = structuredClone(plans);
    p.configurations['3d_fullres'].architecture.network_class_name =
      'dynamic_network_architectures.architectures.unet.ResidualUNet';
    expect(() => nnunetArch(p, '3d_fullres', datasetJson)).toThrow(
      /network class dynamic_network_architectures.architectures.unet.ResidualUNet is not supported/,
    );
  });

  it('names what is missing from a model folder', async () => {
    const files = {
      'plans.json': readFileSync(`${MODEL}/plans.json`),
      'dataset.json': readFileSync(`${MODEL}/dataset.json`),
    };
    await expect(readNnUNetModel(memorySource('m', files))).rejects.toThrow(
      /no fold_K\/checkpoint_final.pth/,
    );
    const one = {
      ...files,
      'fold_0/checkpoint_final.pth': readFileSync(`${MODEL}/fold_0/checkpoint_final.pth`),
    };
    await expect(readNnUNetModel(memorySource('m', one), { folds: [1] })).rejects.toThrow(
      /fold 1 has no checkpoint_final.pth \(available: 0\)/,
    );
  });
});
