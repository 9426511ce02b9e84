// `fednnunet preprocess`: nnU-Net's DefaultPreprocessor.run_case for cases of a raw dataset folder
// with a plans file, one case in memory at a time: the site pipeline's preprocessing stage over the
// folder (src/pipeline), its arrays written as files instead of stored. Writes CASE_data.npy, CASE_seg.npy and
// CASE_properties.json per case (format: src/preprocess/files.ts).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { fsSource } from '../../node/fs-source.ts';
import { SitePipeline } from '../../pipeline/site-pipeline.ts';
import { rawFolderStore } from '../../pipeline/site-store.ts';
import { encodePreprocessed, fileNames } from '../../preprocess/files.ts';
import { resolveConfiguration, type PreprocessPlans } from '../../preprocess/preprocess.ts';
import { errorMessage } from '../../util/errors.ts';

const USAGE =
  'fednnunet preprocess RAW_DATASET_DIR --plans plans.json [--config 3d_fullres] [--case ID ...] -o OUT_DIR [--seed N]';

const command: Command = {
  summary: 'preprocess cases (crop, normalise, resample) with a plans file into .npy + properties',
  async run(argv) {
    const { values, positionals } = parse(argv, {
      plans: { type: 'string' },
      config: { type: 'string', short: 'c', default: '3d_fullres' },
      case: { type: 'string', multiple: true },
      output: { type: 'string', short: 'o' },
      seed: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      console.log(
        `${USAGE}\nWithout --case, every training case. class_locations in CASE_properties.json are the full [0, z, y, x] lists (seeded sample).`,
      );
      return 0;
    }
    if (positionals.length !== 1 || !values.plans || !values.output)
      throw new UsageError(`usage: ${USAGE}`);
    const seed = values.seed === undefined ? undefined : Number(values.seed);
    if (seed !== undefined && !Number.isInteger(seed))
      throw new UsageError(`--seed needs an integer, got '${values.seed}'`);
    let plans: PreprocessPlans;
    try {
      plans = JSON.parse(readFileSync(values.plans, 'utf8')) as PreprocessPlans;
    } catch (e) {
      throw new Error(`cannot read plans ${values.plans}: ${errorMessage(e)}`);
    }
    if (!plans || typeof plans !== 'object' || !plans.configurations || !plans.transpose_forward)
      throw new Error(
        `${values.plans} is not an nnU-Net plans file (no configurations / transpose_forward)`,
      );
    resolveConfiguration(plans, values.config); // fails early on an unknown configuration

    const store = await rawFolderStore(fsSource(positionals[0]));
    const pipeline = new SitePipeline(store);
    const wanted = values.case ?? store.caseIds;
    const unknown = wanted.filter((id) => !store.caseIds.includes(id));
    if (unknown.length)
      throw new Error(
        `no case ${unknown.join(', ')} in ${store.datasetName} (cases: ${store.caseIds.join(', ')})`,
      );

    mkdirSync(values.output, { recursive: true });
    for (const id of wanted) {
      const t0 = performance.now();
      const c = await store.readCase(id);
      const pc = pipeline.preprocessCase(c, plans, values.config, seed);
      const files = encodePreprocessed(pc, { affine: c.image.affine });
      const names = fileNames(id);
      writeFileSync(join(values.output, names.data), files.data);
      writeFileSync(join(values.output, names.seg), files.seg);
      writeFileSync(join(values.output, names.properties), files.properties);
      console.log(
        `${id}: ${pc.shape.join('x')} (${pc.properties.shape_after_cropping_and_before_resampling.join('x')} after crop), ${(performance.now() - t0).toFixed(0)} ms`,
      );
    }
    console.log(`-> ${values.output}`);
    return 0;
  },
};
export default command;
