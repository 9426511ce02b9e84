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
      return predictNnUNet(values.model, values.input, values.output, {
        tta: values.tta ?? false,
        stepSize,
        folds: values.folds,
        checkpoint: values.checkpoint,
        backend,
        threads,
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
 * Predicts with a model trained by nnU-Net (its results folder) exactly as nnUNetPredictor does
 * (fp16 blending, folds averaged on fp16 logits, the checkpoint's mirroring axes with --tta), on
 * tfjs-cpu or onnxruntime (each fold exported to ONNX in memory).
 */
async function predictNnUNet(
  model: string,
  inputs: string[],
  out: string,
  o: {
    tta: boolean;
    stepSize: number;
    folds?: string[];
    checkpoint?: string;
    backend: Backend;
    threads?: number;
  },
): Promise<number> {
  const { predictNnUNetCase } = await import('../../infer/nnunet-model.ts');
  const { readNnUNetModel } = await import('../../infer/nnunet-folds.ts');
  const { configurationInfo, tfjsTilePredictor, tileBatchForBudget } =
    await import('../../infer/predictor.ts');
  const { readVolumeFile } = await import('../../io/formats.ts');
  const { fsSource } = await import('../../node/fs-source.ts');
  const { writeNifti } = await import('../../io/nifti-write.ts');
  const folds = o.folds?.map((f) => {
    if (!/^\d+$/.test(f)) throw new UsageError(`--folds takes fold numbers, got '${f}'`);
    return Number(f);
  });
  const t0 = performance.now();
  const { nnunetModelSource } = await import('../../node/nnunet-source-fs.ts');
  const m = await readNnUNetModel(await nnunetModelSource(model), {
    folds,
    checkpoint: o.checkpoint,
  });
  const images = [];
  for (const p of inputs) images.push(await readVolumeFile(fsSource(dirname(p)), basename(p)));
  const { patch } = configurationInfo(m.plans, m.configuration);
  const predictors: PredictTiles[] = [];
  const releases: Array<() => Promise<void> | void> = [];
  let tileBatch = tileBatchForBudget(m.arch, patch);
  let res;
  try {
    if (o.backend === 'tfjs-cpu') {
      const { useBackend } = await import('../../model/tf-backend.ts');
      const { PlainConvUNet } = await import('../../model/unet.ts');
      await useBackend('cpu');
      for (const f of m.folds) {
        const net = new PlainConvUNet(m.arch);
        releases.push(() => net.dispose());
        net.loadNamedWeights(f.weights);
        predictors.push(tfjsTilePredictor(net, patch));
      }
    } else {
      const { buildOnnxModel } = await import('../../infer/onnx-export.ts');
      const { createOrtSession, ortTilePredictor } = await import('../../infer/ort.ts');
      tileBatch = Math.min(4, tileBatch);
      for (const f of m.folds) {
        const s = await createOrtSession(buildOnnxModel(m.arch, f.weights), {
          backend: o.backend,
          numThreads: o.threads,
        });
        releases.push(() => s.release());
        predictors.push(ortTilePredictor(s, patch, m.arch.inputChannels));
      }
    }
    res = await predictNnUNetCase(images, m, predictors, {
      tta: o.tta,
      stepSize: o.stepSize,
      tileBatch,
    });
  } finally {
    for (const r of releases) await r();
  }
  writeFileSync(out, writeNifti(res.segmentation, { gzip: out.endsWith('.gz') }));
  console.log(
    `${out}: nnU-Net ${m.configuration} (${m.arch.residual ? 'ResidualEncoderUNet' : 'PlainConvUNet'}), folds ${m.folds.map((f) => f.fold).join(' ')}${o.checkpoint ? ` (${o.checkpoint})` : ''}${o.tta ? ` +tta (axes ${(m.mirrorAxes ?? []).join(' ') || 'none'})` : ''}, ${o.backend}, ${res.segmentation.dims.join('x')} ${res.segmentation.datatype}, ${((performance.now() - t0) / 1000).toFixed(2)} s`,
  );
  return 0;
}
