// `fednnunet fingerprint`: nnU-Net's DatasetFingerprintExtractor on a raw dataset folder, one case
// in memory at a time. Writes dataset_fingerprint.json as nnU-Net's save_json does (keys sorted,
// indent 4, Python float formatting), and optionally the private FFE summary of it.
import { writeFileSync } from 'node:fs';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { pyJsonDumps } from '../../eval/py-json.ts';
import { SitePipeline } from '../../pipeline/site-pipeline.ts';
import { rawFolderStore } from '../../pipeline/site-store.ts';
import { summarizeFingerprint } from '../../fingerprint/ffe.ts';
import type { DatasetFingerprint } from '../../fingerprint/types.ts';
import { fsSource } from '../../node/fs-source.ts';

const USAGE =
  'fednnunet fingerprint RAW_DATASET_DIR -o dataset_fingerprint.json [--private-summary summary.json] [--quiet]';

/** dataset_fingerprint.json byte for byte as nnU-Net writes it: only shapes are Python ints. */
export function fingerprintJson(fp: DatasetFingerprint): string {
  return pyJsonDumps(fp, (path) => path[0] !== 'shapes_after_crop');
}

const command: Command = {
  summary: 'dataset fingerprint of a raw nnU-Net dataset folder (dataset_fingerprint.json)',
  async run(argv) {
    const { values, positionals } = parse(argv, {
      output: { type: 'string', short: 'o' },
      'private-summary': { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length !== 1 || !values.output) throw new UsageError(`usage: ${USAGE}`);
    const t0 = performance.now();
    // The site pipeline's fingerprint stage over the folder (the browser runs it over IndexedDB).
    const pipeline = new SitePipeline(await rawFolderStore(fsSource(positionals[0])));
    const cases = pipeline.store.caseIds;
    const fingerprint = await pipeline.fingerprint({
      onProgress:
        values.quiet || !process.stderr.isTTY
          ? undefined
          : ({ done, total, caseId }) =>
              process.stderr.write(`\r${done}/${total} ${caseId}`.padEnd(40)),
    });
    if (!values.quiet && process.stderr.isTTY) process.stderr.write('\n');
    writeFileSync(values.output, fingerprintJson(fingerprint));
    if (values['private-summary'])
      writeFileSync(
        values['private-summary'],
        `${JSON.stringify(summarizeFingerprint(fingerprint), null, 4)}\n`,
      );
    const ch = Object.keys(fingerprint.foreground_intensity_properties_per_channel).length;
    console.log(
      `${cases.length} cases, ${ch} channel(s), median relative size after cropping ${fingerprint.median_relative_size_after_cropping.toFixed(6)}, ${((performance.now() - t0) / 1000).toFixed(1)} s -> ${values.output}`,
    );
    return 0;
  },
};
export default command;
