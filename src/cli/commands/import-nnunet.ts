// `fednnunet import-nnunet`: an nnU-Net v2 trained model (results folder or the zip
// nnUNetv2_export_model_to_zip writes) as this project's model folder, one fold at a time
// (src/infer/nnunet-import.ts). One fold: OUT is the model folder; several: OUT/fold_K/ each.
import { join } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { expandFolds } from '../folds-arg.ts';

const USAGE =
  'fednnunet import-nnunet NNUNET_MODEL_DIR|EXPORT.zip -o MODEL_DIR [--folds 0 1 ...] [--checkpoint checkpoint_final.pth|checkpoint_best.pth]';

const command: Command = {
  summary: 'import an nnU-Net v2 model (results folder or export zip) as model folder(s)',
  async run(argv) {
    const { values, positionals } = parse(
      expandFolds(argv),
      {
        output: { type: 'string', short: 'o' },
        folds: { type: 'string', multiple: true },
        checkpoint: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      true,
    );
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length !== 1 || !values.output) throw new UsageError(`usage: ${USAGE}`);
    const folds = values.folds?.map((f) => {
      if (!/^\d+$/.test(f)) throw new UsageError(`--folds takes fold numbers, got '${f}'`);
      return Number(f);
    });
    const { nnunetModelSource } = await import('../../node/nnunet-source-fs.ts');
    const { planNnUNetRead, readNnUNetFolds } = await import('../../infer/nnunet-folds.ts');
    const { writeModelFolder } = await import('../../node/model-folder-fs.ts');
    const src = await nnunetModelSource(positionals[0]);
    const plan = await planNnUNetRead(src, { folds, checkpoint: values.checkpoint });
    const { checkpoint, folds: use } = plan;
    const t0 = performance.now();
    const written: string[] = [];
    for await (const f of readNnUNetFolds(src, plan)) {
      const out = use.length > 1 ? join(values.output, `fold_${f.fold}`) : values.output;
      await writeModelFolder(out, f.model);
      written.push(out);
      console.log(
        `fold ${f.fold}: ${(f.checkpointBytes / 2 ** 20).toFixed(1)} MiB ${checkpoint} → ${out} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
    console.log(`imported ${written.length} fold(s)`);
    return 0;
  },
};
export default command;
