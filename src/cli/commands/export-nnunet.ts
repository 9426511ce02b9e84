// `fednnunet export-nnunet`: a model folder as nnU-Net v2's trained-model folder, or as the zip
// nnUNetv2_export_model_to_zip writes (src/model/nnunet-export.ts).
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';

const USAGE =
  'fednnunet export-nnunet --model MODEL_DIR|MODEL.zip -o OUT_DIR|OUT.zip [--dataset-name Dataset123_Name] [--fold 0] [--fingerprint dataset_fingerprint.json]';

const command: Command = {
  summary: 'export a model folder for nnU-Net v2 (plans, dataset, fold_0/checkpoint_final.pth)',
  async run(argv) {
    const { values } = parse(
      argv,
      {
        model: { type: 'string', short: 'm' },
        output: { type: 'string', short: 'o' },
        'dataset-name': { type: 'string' },
        fold: { type: 'string' },
        fingerprint: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      false,
    );
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (!values.model || !values.output) throw new UsageError(`usage: ${USAGE}`);
    const fold = values.fold === undefined ? 0 : Number(values.fold);
    if (!Number.isInteger(fold) || fold < 0)
      throw new UsageError(`--fold takes a fold number, got '${values.fold}'`);
    const { readModelFolder } = await import('../../node/model-folder-fs.ts');
    const { exportNnUNetModel, nnunetExportZip } = await import('../../model/nnunet-export.ts');
    const { writeParts } = await import('../../node/write-parts.ts');
    const md = await readModelFolder(values.model);
    const fingerprint = values.fingerprint
      ? (JSON.parse(readFileSync(values.fingerprint, 'utf8')) as object)
      : undefined;
    const ex = exportNnUNetModel(md, {
      datasetName: values['dataset-name'],
      fold,
      fingerprint,
    });
    const out = values.output;
    if (out.toLowerCase().endsWith('.zip')) {
      mkdirSync(dirname(out), { recursive: true });
      const n = writeParts(out, nnunetExportZip(ex));
      console.log(
        `${out}: ${ex.datasetName}/${ex.modelDir}/ (fold ${ex.fold}), ${(n / 2 ** 20).toFixed(1)} MiB`,
      );
      console.log(
        `nnU-Net: nnUNetv2_install_pretrained_model_from_zip ${out}; nnUNetv2_predict -d ${ex.datasetName} -c ${ex.configuration} -f ${ex.fold} -i IN -o OUT`,
      );
    } else {
      let n = 0;
      for (const f of ex.files) {
        const p = join(out, f.path);
        mkdirSync(dirname(p), { recursive: true });
        n += writeParts(p, f.parts);
      }
      console.log(
        `${out}/: nnU-Net model folder ${ex.modelDir} of ${ex.datasetName} (fold ${ex.fold}), ${(n / 2 ** 20).toFixed(1)} MiB`,
      );
      console.log(
        `nnU-Net: nnUNetv2_predict_from_modelfolder -m ${out} -f ${ex.fold} -i IN -o OUT (or place it as $nnUNet_results/${ex.datasetName}/${ex.modelDir})`,
      );
    }
    if (!fingerprint)
      console.log(
        'dataset_fingerprint.json is a summary from the plans (give the real one with --fingerprint)',
      );
    return 0;
  },
};
export default command;
