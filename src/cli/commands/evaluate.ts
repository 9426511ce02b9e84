// `fednnunet evaluate`: nnU-Net's compute_metrics_on_folder (spec §9) on two folders of label
// maps matched by file name; writes summary.json as nnU-Net does. Labels: --labels, a dataset.json,
// or the dataset.json of the model folder that made the predictions (--model).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { isVolumePath, readVolumeFile } from '../../io/formats.ts';
import { fsSource } from '../../node/fs-source.ts';

const USAGE =
  'fednnunet evaluate --pred DIR --ref DIR [--labels 1,2 | --dataset-json dataset.json | --model MODEL_DIR] [--chill] -o summary.json';

function parseLabels(s: string): number[] {
  const out = s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')
    .map(Number);
  if (out.length === 0 || out.some((v) => !Number.isInteger(v) || v < 0))
    throw new UsageError(`--labels needs comma-separated non-negative integers, got '${s}'`);
  return out;
}

function listImages(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new Error(`cannot read folder ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return names.filter(isVolumePath).sort();
}

const command: Command = {
  summary: 'Dice/IoU of predicted vs reference label maps (nnU-Net summary.json)',
  async run(argv) {
    const { values } = parse(
      argv,
      {
        pred: { type: 'string' },
        ref: { type: 'string' },
        labels: { type: 'string' },
        'dataset-json': { type: 'string' },
        model: { type: 'string', short: 'm' },
        chill: { type: 'boolean' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
      false,
    );
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (!values.pred || !values.ref || !values.output) throw new UsageError(`usage: ${USAGE}`);
    if (values['dataset-json'] && values.model)
      throw new UsageError('give --dataset-json or --model, not both');
    const { evaluateCase, summarize, summaryToJson } = await import('../../eval/metrics.ts');
    const { labelInfo } = await import('../../model/labels.ts');

    const predDir = resolve(values.pred);
    const refDir = resolve(values.ref);
    const refs = listImages(refDir);
    if (refs.length === 0)
      throw new Error(`no .nii/.nii.gz (or .nrrd/.nhdr/.mha/.mhd) files in ${values.ref}`);
    const preds = new Set(listImages(predDir));
    const missing = refs.filter((r) => !preds.has(r));
    if (missing.length && !values.chill)
      throw new Error(
        `${missing.length} reference file(s) have no prediction in ${values.pred} (first: ${missing[0]}); --chill skips them`,
      );
    const todo = refs.filter((r) => preds.has(r));
    if (todo.length === 0)
      throw new Error(`no prediction in ${values.pred} matches a reference file name`);

    let labels: (number | number[])[] | undefined = values.labels
      ? parseLabels(values.labels)
      : undefined;
    let ignore: number | undefined;
    const dj = values.model
      ? (await (await import('../../node/model-folder-fs.ts')).readModelFolder(values.model))
          .datasetJson
      : values['dataset-json']
        ? (JSON.parse(readFileSync(values['dataset-json'], 'utf8')) as Parameters<
            typeof labelInfo
          >[0])
        : undefined;
    if (dj) {
      const info = labelInfo(dj);
      labels ??= info.foreground;
      ignore = info.ignoreLabel;
    }
    const read = (dir: string, name: string) => readVolumeFile(fsSource(dir), name);
    const loaded: Array<{ name: string; ref: ArrayLike<number>; pred: ArrayLike<number> }> = [];
    const seen = new Set<number>();
    for (const name of todo) {
      const r = await read(refDir, name);
      const p = await read(predDir, name);
      if (r.channels !== 1 || p.channels !== 1 || r.dims.some((d, i) => d !== p.dims[i])) {
        throw new Error(
          `${name}: prediction ${p.dims.join('x')}×${p.channels} vs reference ${r.dims.join('x')}×${r.channels}`,
        );
      }
      if (!labels) for (const v of r.data) if (v !== 0) seen.add(v);
      loaded.push({ name, ref: r.data, pred: p.data });
    }
    // Without --labels / --dataset-json: the nonzero values found in the references.
    labels ??= [...seen].sort((a, b) => a - b);
    if (labels.length === 0) throw new Error('no foreground label to evaluate (give --labels)');
    const results = loaded.map((c) =>
      evaluateCase(
        c.ref,
        c.pred,
        labels,
        { reference_file: join(refDir, c.name), prediction_file: join(predDir, c.name) },
        ignore,
      ),
    );
    const summary = summarize(results, labels);
    writeFileSync(values.output, summaryToJson(summary));
    const fmt = (v: number) => (Number.isNaN(v) ? 'NaN' : v.toFixed(4));
    console.log(
      `${results.length} case(s)${missing.length ? `, ${missing.length} skipped` : ''}; mean Dice ${Object.entries(
        summary.mean,
      )
        .map(([k, m]) => `${k}: ${fmt(m.Dice)}`)
        .join(', ')}; foreground ${fmt(summary.foreground_mean.Dice)}`,
    );
    console.log(`-> ${values.output}`);
    return 0;
  },
};
export default command;
