// `fednnunet predict`: segment one case with a trained model folder (src/model/model-folder.ts) on
// tfjs (cpu), onnxruntime-node or onnxruntime-web's wasm backend; writes the label map as NIfTI
// with the input's geometry.
import { writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { expandFolds } from '../folds-arg.ts';
import type { PredictTiles } from '../../infer/sliding-window.ts';

const USAGE =
  'fednnunet predict --model MODEL_DIR|MODEL.zip|NNUNET_RESULTS_DIR|NNUNET_EXPORT.zip [--folds 0 1] [--checkpoint checkpoint_final.pth] -i in_0000.nii.gz [-i in_0001.nii.gz ...] -o out.nii.gz [--tta] [--backend tfjs-cpu|ort-node|ort-wasm] [--step-size 0.5] [--threads N]';
const BACKENDS = ['tfjs-cpu', 'ort-node', 'ort-wasm'] as const;
type Backend = (typeof BACKENDS)[number];

const command: Command = {
  summary:
    'segment a case with a model folder (tfjs-cpu, onnxruntime-node or onnxruntime-web wasm)',
  async run(argv) {
    argv = expandFolds(argv);
    const { values } = parse(
      argv,
      {
        folds: { type: 'string', multiple: true },
        checkpoint: { type: 'string' },
        model: { type: 'string', short: 'm' },
        input: { type: 'string', short: 'i', multiple: true },
        output: { type: 'string', short: 'o' },
        tta: { type: 'boolean' },
        backend: { type: 'string' },
        'step-size': { type: 'string' },
        threads: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      false,
    );
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (!values.model || !values.input?.length || !values.output)
      throw new UsageError(`usage: ${USAGE}`);
    const backend = (values.backend ?? 'tfjs-cpu') as Backend;
    if (!BACKENDS.includes(backend))
      throw new UsageError(
        `--backend must be one of ${BACKENDS.join(', ')}, got '${values.backend}'`,
      );
    const stepSize = values['step-size'] === undefined ? 0.5 : Number(values['step-size']);
    if (!(stepSize > 0 && stepSize <= 1))
      throw new UsageError(`--step-size must be in (0, 1], got '${values['step-size']}'`);
    const threads = values.threads === undefined ? undefined : Number(values.threads);
    if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1))
      throw new UsageError(`--threads must be a positive integer, got '${values.threads}'`);

    const { archFromFolder, modelFromFolder } = await import('../../model/model-folder.ts');
    const { readModelFolder } = await import('../../node/model-folder-fs.ts');
    const { fsSource } = await import('../../node/fs-source.ts');
    const { configurationInfo, predictCase, tfjsTilePredictor, tileBatchForBudget } =
      await import('../../infer/predictor.ts');
    const { readVolumeFile } = await import('../../io/formats.ts');
    const { writeNifti } = await import('../../io/nifti-write.ts');

    const { isNnUNetModel } = await import('../../node/nnunet-source-fs.ts');
    if (await isNnUNetModel(values.model, values.checkpoint)) {
      if (backend !== 'tfjs-cpu')
        throw new UsageError(
          'an nnU-Net results folder is predicted with --backend tfjs-cpu only (for now)',
        );
      return predictNnUNet(values.model, values.input, values.output, {
        tta: values.tta ?? false,
        stepSize,
        folds: values.folds,
        checkpoint: values.checkpoint,
      });
    }
    if (values.folds || values.checkpoint)
      throw new UsageError(
        '--folds applies to nnU-Net results folders (plans.json, dataset.json, fold_K/checkpoint_final.pth) and their export zips; so does --checkpoint',
      );
    const md = await readModelFolder(values.model);
    const images = [];
    // Through the file's folder: regular files only, size-capped, a detached header finds its data.
    for (const p of values.input)
      images.push(await readVolumeFile(fsSource(dirname(p)), basename(p)));
    const ctx = { plans: md.plans, configuration: md.configuration, datasetJson: md.datasetJson };
    const { patch } = configurationInfo(md.plans, md.configuration);
    const arch = archFromFolder(md);
    const mirrorAxes = md.meta.inference_allowed_mirroring_axes;

    let predictTiles: PredictTiles;
    let tileBatch = 1;
    let release = async (): Promise<void> => {};
    const t0 = performance.now();
    if (backend === 'tfjs-cpu') {
      const { useBackend } = await import('../../model/tf-backend.ts');
      await useBackend('cpu');
      const model = modelFromFolder(md);
      predictTiles = tfjsTilePredictor(model, patch);
      tileBatch = tileBatchForBudget(arch, patch);
      release = async () => model.dispose();
    } else {
      const { buildOnnxModel, inspectOnnx } = await import('../../infer/onnx-export.ts');
      const { createOrtSession, ortTilePredictor } = await import('../../infer/ort.ts');
      let bytes = md.onnx;
      if (bytes) {
        const info = inspectOnnx(bytes);
        if (info.arch && JSON.stringify(info.arch) !== JSON.stringify(arch))
          throw new Error(`${values.model}/model.onnx does not match the plans' architecture`);
      } else {
        bytes = buildOnnxModel(arch, md.weights);
      }
      const session = await createOrtSession(bytes, { backend, numThreads: threads });
      // Tiles per run: onnxruntime frees intermediates as it goes; a few tiles keep the batch small.
      tileBatch = Math.min(4, tileBatchForBudget(arch, patch));
      predictTiles = ortTilePredictor(session, patch, arch.inputChannels);
      release = () => session.release();
    }
    let res;
    try {
      res = await predictCase(images, ctx, predictTiles, {
        tta: values.tta ?? false,
        mirrorAxes,
        stepSize,
        tileBatch,
      });
    } finally {
      await release();
    }
    const out = values.output;
    writeFileSync(out, writeNifti(res.segmentation, { gzip: out.endsWith('.gz') }));
    const counts = new Map<number, number>();
    for (const v of res.segmentation.data) counts.set(v, (counts.get(v) ?? 0) + 1);
    const t = res.timingsMs;
    console.log(
      `${out}: ${res.segmentation.dims.join('x')} ${res.segmentation.datatype}, labels ${[...counts]
        .sort((a, b) => a[0] - b[0])
        .map(([k, n]) => `${k}:${n}`)
        .join(' ')}`,
    );
    console.log(
      `${backend}${values.tta ? ' +tta' : ''}: preprocess ${(t.preprocess / 1000).toFixed(2)} s, predict ${(t.predict / 1000).toFixed(2)} s, export ${(t.export / 1000).toFixed(2)} s, total ${((performance.now() - t0) / 1000).toFixed(2)} s`,
    );
    return 0;
  },
};
export default command;

/**
 * Predicts with a model trained by nnU-Net (results folder or export zip); folds are ensembled as
 * nnU-Net does. Folds are read one at a time: each checkpoint is dropped once its network holds
 * the weights.
 */
async function predictNnUNet(
  model: string,
  inputs: string[],
  out: string,
  o: { tta: boolean; stepSize: number; folds?: string[]; checkpoint?: string },
): Promise<number> {
  const { ensembleTilePredictor, nnunetArch } = await import('../../infer/nnunet-model.ts');
  const { readNnUNetFolds } = await import('../../infer/nnunet-import.ts');
  const { nnunetModelSource } = await import('../../node/nnunet-source-fs.ts');
  const { configurationInfo, predictCase, tfjsTilePredictor, tileBatchForBudget } =
    await import('../../infer/predictor.ts');
  const { readVolumeFile } = await import('../../io/formats.ts');
  const { fsSource } = await import('../../node/fs-source.ts');
  const { writeNifti } = await import('../../io/nifti-write.ts');
  const { useBackend } = await import('../../model/tf-backend.ts');
  const { PlainConvUNet } = await import('../../model/unet.ts');
  const folds = o.folds?.map((f) => {
    if (!/^\d+$/.test(f)) throw new UsageError(`--folds takes fold numbers, got '${f}'`);
    return Number(f);
  });
  const t0 = performance.now();
  await useBackend('cpu');
  const nets: InstanceType<typeof PlainConvUNet>[] = [];
  const used: number[] = [];
  let first: import('../../model/model-folder.ts').ModelFolder | undefined;
  let res;
  try {
    for await (const f of readNnUNetFolds(nnunetModelSource(model), {
      folds,
      checkpoint: o.checkpoint,
    })) {
      first ??= { ...f.model, weights: new Map() };
      const arch = nnunetArch(f.model.plans as never, f.model.configuration, f.model.datasetJson);
      const net = new PlainConvUNet(arch);
      nets.push(net);
      net.loadNamedWeights(f.model.weights);
      used.push(f.fold);
    }
    const m = first!;
    const arch = nnunetArch(m.plans as never, m.configuration, m.datasetJson);
    const images = [];
    for (const p of inputs) images.push(await readVolumeFile(fsSource(dirname(p)), basename(p)));
    const { patch } = configurationInfo(m.plans, m.configuration);
    const mirrorAxes = (m.meta as { inference_allowed_mirroring_axes?: number[] })
      .inference_allowed_mirroring_axes;
    res = await predictCase(
      images,
      { plans: m.plans, configuration: m.configuration, datasetJson: m.datasetJson },
      ensembleTilePredictor(nets.map((n) => tfjsTilePredictor(n, patch))),
      { tta: o.tta, mirrorAxes, stepSize: o.stepSize, tileBatch: tileBatchForBudget(arch, patch) },
    );
  } finally {
    for (const n of nets) n.dispose();
  }
  writeFileSync(out, writeNifti(res.segmentation, { gzip: out.endsWith('.gz') }));
  console.log(
    `${out}: nnU-Net ${first!.configuration}, folds ${used.join(' ')}${o.checkpoint ? ` (${o.checkpoint})` : ''}${o.tta ? ' +tta' : ''}, ${res.segmentation.dims.join('x')} ${res.segmentation.datatype}, ${((performance.now() - t0) / 1000).toFixed(2)} s`,
  );
  return 0;
}
