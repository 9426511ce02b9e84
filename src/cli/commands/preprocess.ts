// `fednnunet preprocess`: nnU-Net's DefaultPreprocessor.run_case for cases of a raw dataset folder
// with a plans file, one case in memory at a time. Writes CASE_data.npy, CASE_seg.npy and
// CASE_properties.json per case (format: src/preprocess/files.ts).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { loadCase, openRawDataset, stackChannels } from '../../io/raw-dataset.ts';
import { fsSource } from '../../node/fs-source.ts';
import { encodePreprocessed, fileNames } from '../../preprocess/files.ts';
import { resolveConfiguration, runCase, type PreprocessDatasetJson, type PreprocessPlans } from '../../preprocess/preprocess.ts';

const USAGE = 'fednnunet preprocess RAW_DATASET_DIR --plans plans.json [--config 3d_fullres] [--case ID ...] -o OUT_DIR [--seed N]';

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
      console.log(`${USAGE}\nWithout --case, every training case. class_locations in CASE_properties.json are the full [0, z, y, x] lists (seeded sample).`);
      return 0;
    }
    if (positionals.length !== 1 || !values.plans || !values.output) throw new UsageError(`usage: ${USAGE}`);
    const seed = values.seed === undefined ? undefined : Number(values.seed);
    if (seed !== undefined && !Number.isInteger(seed)) throw new UsageError(`--seed needs an integer, got '${values.seed}'`);
    let plans: PreprocessPlans;
    try {
      plans = JSON.parse(readFileSync(values.plans, 'utf8')) as PreprocessPlans;
    } catch (e) {
      throw new Error(`cannot read plans ${values.plans}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!plans || typeof plans !== 'object' || !plans.configurations || !plans.transpose_forward) throw new Error(`${values.plans} is not an nnU-Net plans file (no configurations / transpose_forward)`);
    resolveConfiguration(plans, values.config); // fails early on an unknown configuration

    const src = fsSource(positionals[0]);
    const ds = await openRawDataset(src);
    if (ds.problems.length) throw new Error(`${src.name}: ${ds.problems.join('; ')}`);
    const wanted = values.case ?? ds.cases.map((c) => c.id);
    const unknown = wanted.filter((id) => !ds.cases.some((c) => c.id === id));
    if (unknown.length) throw new Error(`no case ${unknown.join(', ')} in ${src.name} (cases: ${ds.cases.map((c) => c.id).join(', ')})`);

    mkdirSync(values.output, { recursive: true });
    for (const id of wanted) {
      const t0 = performance.now();
      const { images, label } = await loadCase(src, ds.cases.find((c) => c.id === id)!);
      const image = images.length === 1 ? images[0] : stackChannels(images);
      const pc = runCase(image, label ?? null, plans, values.config, ds.json as PreprocessDatasetJson, { seed });
      const files = encodePreprocessed(pc, { affine: images[0].affine });
      const names = fileNames(id);
      writeFileSync(join(values.output, names.data), files.data);
      writeFileSync(join(values.output, names.seg), files.seg);
      writeFileSync(join(values.output, names.properties), files.properties);
      console.log(`${id}: ${pc.shape.join('x')} (${pc.properties.shape_after_cropping_and_before_resampling.join('x')} after crop), ${(performance.now() - t0).toFixed(0)} ms`);
    }
    console.log(`-> ${values.output}`);
    return 0;
  },
};
export default command;
