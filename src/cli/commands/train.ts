// `fednnunet train`: the site pipeline over a raw dataset folder (fingerprint + plan unless
// --plans, preprocess; in memory) + nnU-Net's training loop, writing a model folder
// (src/model/model-folder.ts) with train's own files beside it: dataset_fingerprint.json (unless
// --plans), training_log.json, checkpoint_*.ckpt.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Command } from '../command.ts';
import { intOption, parse, UsageError } from '../args.ts';
import { useBackend } from '../../model/tf-backend.ts';
import { installNodeWebGPU } from '../../node/webgpu.ts';
import { fsSource } from '../../node/fs-source.ts';
import { writeModelFolder } from '../../node/model-folder-fs.ts';
import { pseudoDiceProvenance } from '../../model/model-folder.ts';
import type { Plans } from '../../plan/types.ts';
import { prepareTraining, SitePipeline } from '../../pipeline/site-pipeline.ts';
import { rawFolderStore } from '../../pipeline/site-store.ts';
import { encodeCheckpoint } from '../../train/train-checkpoint.ts';
import { Trainer } from '../../train/trainer.ts';

const USAGE =
  'fednnunet train RAW_DATASET_DIR --epochs E --iters I -o MODEL_DIR [--plans plans.json] [--config 3d_fullres|2d|3d_lowres] ' +
  '[--val-iters V] [--tiny] [--tiny-patch N] [--seed S] [--fold all|random80] [--no-augmentation] [--no-deep-supervision] ' +
  '[--checkpointing] [--backend cpu|webgpu] [--precision fp32|mixed]';

const json = (x: unknown) =>
  `${JSON.stringify(x, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 4)}\n`;

const command: Command = {
  summary: 'train a model on a raw dataset (nnU-Net recipe; --tiny for a small CPU-sized network)',
  async run(argv) {
    const { values, positionals } = parse(argv, {
      plans: { type: 'string' },
      config: { type: 'string' },
      epochs: { type: 'string' },
      iters: { type: 'string' },
      'val-iters': { type: 'string' },
      tiny: { type: 'boolean' },
      'tiny-patch': { type: 'string' },
      seed: { type: 'string' },
      fold: { type: 'string' },
      'no-augmentation': { type: 'boolean' },
      'no-deep-supervision': { type: 'boolean' },
      checkpointing: { type: 'boolean' },
      backend: { type: 'string' },
      precision: { type: 'string' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (
      positionals.length !== 1 ||
      !values.output ||
      values.epochs === undefined ||
      values.iters === undefined
    )
      throw new UsageError(`usage: ${USAGE}`);
    const epochs = intOption('epochs', values.epochs, 1, 0);
    const iters = intOption('iters', values.iters, 1, 0);
    const valIters = intOption('val-iters', values['val-iters'], 0, 50);
    const seed = intOption('seed', values.seed, 0, 0);
    const fold = values.fold ?? 'random80';
    if (fold !== 'all' && fold !== 'random80')
      throw new UsageError(`--fold must be 'all' or 'random80', got '${fold}'`);
    if (values['tiny-patch'] !== undefined && !values.tiny)
      throw new UsageError('--tiny-patch needs --tiny');
    const backend = values.backend ?? 'cpu';
    if (backend === 'webgpu') {
      // WebGPU in Node through Dawn; throws saying which Vulkan driver to install when none.
      const gpu = await installNodeWebGPU();
      console.log(`WebGPU adapter: ${gpu.name}${gpu.software ? ' (software: slow)' : ''}`);
    } else if (backend !== 'cpu') {
      throw new UsageError(`--backend must be cpu or webgpu, got '${backend}'`);
    }
    const precision = values.precision ?? 'fp32';
    if (precision !== 'fp32' && precision !== 'mixed')
      throw new UsageError(`--precision must be fp32 or mixed, got '${precision}'`);
    // fp16 activation storage runs in our WebGPU kernels; the cpu backend has no use for it.
    if (precision === 'mixed' && backend !== 'webgpu')
      throw new UsageError('--precision mixed needs --backend webgpu');
    await useBackend(backend);

    const dir = resolve(positionals[0]);
    const store = await rawFolderStore(fsSource(dir), basename(dir));
    const ds = { json: store.datasetJson! };
    const plansIn = values.plans
      ? (JSON.parse(readFileSync(values.plans, 'utf8')) as Plans)
      : undefined;
    const configuration =
      values.config ?? (plansIn && !plansIn.configurations['3d_fullres'] ? '2d' : '3d_fullres');

    const t0 = Date.now();
    const prep = await prepareTraining(new SitePipeline(store), {
      configuration,
      plans: plansIn,
      tiny: values.tiny ? { patch: intOption('tiny-patch', values['tiny-patch'], 4, 24) } : false,
      onProgress: (stage, done, total) => {
        if (done === total)
          console.log(`${stage}: ${total} cases (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      },
    });
    const trainer = new Trainer({
      plans: prep.plans,
      configuration,
      datasetJson: ds.json,
      cases: prep.cases,
      options: {
        epochs,
        itersPerEpoch: iters,
        valIters,
        seed,
        split: fold,
        augmentation: !values['no-augmentation'],
        deepSupervision: !values['no-deep-supervision'],
        checkpointing: values.checkpointing ?? false,
        precision,
      },
    });
    if (trainer.precisionInUse !== precision) {
      trainer.dispose();
      throw new Error(
        `--precision ${precision}: not available for this configuration (mixed covers 3-D networks only)`,
      );
    }
    const cfg = trainer.config;
    console.log(
      `${configuration}${values.tiny ? ' (tiny)' : ''}: patch ${cfg.patch_size.join('x')}, batch ${cfg.batch_size}, ` +
        `${trainer.net.parameterCount()} parameters; train ${trainer.trainIds.length} / val ${trainer.valIds.length} cases; backend ${backend}, ${trainer.precisionInUse}`,
    );

    const out = resolve(values.output);
    mkdirSync(out, { recursive: true });
    // Given plans need no fingerprint: the folder then records the plans only (the model folder
    // itself, plans.json and dataset.json included, is written when training ends).
    if (prep.fingerprint)
      writeFileSync(join(out, 'dataset_fingerprint.json'), json(prep.fingerprint));

    await trainer.run({
      onEvent: async (e) => {
        if (e.type !== 'epoch') return;
        console.log(
          `epoch ${e.epoch}: lr ${e.lr.toExponential(3)}  train ${e.trainLoss.toFixed(4)}  val ${e.valLoss.toFixed(4)}  ` +
            `pseudo-Dice ${e.dicePerClass.map((d) => d.toFixed(4)).join(' ')}  ema ${e.ema.toFixed(4)}  ` +
            `${e.msPerIter.toFixed(0)} ms/iter  peak ${(e.peakBytes / 2 ** 20).toFixed(1)} MiB  ${e.seconds.toFixed(1)} s`,
        );
        // nnU-Net's checkpoint_best: whenever the EMA is strictly above every earlier one.
        if (e.isNewBest)
          writeFileSync(
            join(out, 'checkpoint_best.ckpt'),
            encodeCheckpoint(await trainer.checkpoint()),
          );
      },
    });

    const ck = await trainer.checkpoint();
    writeFileSync(join(out, 'checkpoint_final.ckpt'), encodeCheckpoint(ck));
    await writeModelFolder(out, {
      plans: prep.plans,
      datasetJson: ds.json as never,
      configuration,
      weights: ck.weights,
      meta: { inference_allowed_mirroring_axes: trainer.mirrorAxes },
      provenance: {
        trained_by: 'fednnunet train',
        method: 'local',
        sites: 1,
        dataset: basename(dir),
        epochs,
        iterations: epochs * iters,
        ...pseudoDiceProvenance(ck.log),
      },
    });
    writeFileSync(
      join(out, 'training_log.json'),
      json({ ...ck.log, split: ck.split, options: ck.options }),
    );
    trainer.dispose();
    console.log(`-> ${out} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return 0;
  },
};
export default command;
