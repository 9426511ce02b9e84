// `fednnunet plan`: nnU-Net's ExperimentPlanner on a raw dataset folder's dataset.json and a
// fingerprint file (a dataset_fingerprint.json, an FFE aggregate, or a private FFE summary).
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { fingerprintFromSummary, type PrivateFingerprintSummary } from '../../fingerprint/ffe.ts';
import type { DatasetFingerprint } from '../../fingerprint/types.ts';
import type { ConfigurationPlan } from '../../plan/types.ts';
import { fsSource } from '../../node/fs-source.ts';
import { SitePipeline } from '../../pipeline/site-pipeline.ts';
import { rawFolderStore } from '../../pipeline/site-store.ts';

const USAGE =
  'fednnunet plan RAW_DATASET_DIR --fingerprint fp.json -o plans.json [--memory-budget-mb N]';

const command: Command = {
  summary:
    'plan 2d/3d configurations (nnU-Net ExperimentPlanner) from dataset.json and a fingerprint',
  async run(argv) {
    const { values, positionals } = parse(argv, {
      fingerprint: { type: 'string' },
      output: { type: 'string', short: 'o' },
      'memory-budget-mb': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length !== 1 || !values.fingerprint || !values.output)
      throw new UsageError(`usage: ${USAGE}`);
    let memoryBudgetMB: number | undefined;
    if (values['memory-budget-mb'] !== undefined) {
      memoryBudgetMB = Number(values['memory-budget-mb']);
      if (!Number.isFinite(memoryBudgetMB) || memoryBudgetMB <= 0)
        throw new UsageError(
          `--memory-budget-mb needs a positive number, got '${values['memory-budget-mb']}'`,
        );
    }
    const dir = resolve(positionals[0]);
    const pipeline = new SitePipeline(await rawFolderStore(fsSource(dir), basename(dir)));
    const fpIn = JSON.parse(readFileSync(values.fingerprint, 'utf8')) as
      DatasetFingerprint | PrivateFingerprintSummary;
    const fingerprint = 'private_ffe' in fpIn ? fingerprintFromSummary(fpIn) : fpIn;

    // The site pipeline's planning stage (pure: no case is read).
    const plans = pipeline.makePlans(fingerprint, { memoryBudgetMB });
    // nnU-Net writes plans with indent 4 and keys in insertion order.
    writeFileSync(values.output, `${JSON.stringify(plans, null, 4)}\n`);
    for (const [name, c] of Object.entries(plans.configurations)) {
      if (!('patch_size' in c)) continue;
      const cfg = c as ConfigurationPlan;
      const note = cfg.browser_budget?.changed.length
        ? ` (budget changed ${cfg.browser_budget.changed.map((x) => x.field).join(', ')})`
        : '';
      console.log(
        `${name.padEnd(12)} patch ${cfg.patch_size.join('x')}  batch ${cfg.batch_size}  stages ${cfg.architecture.arch_kwargs.n_stages}  spacing ${cfg.spacing.map((s) => +s.toFixed(4)).join(', ')}${note}`,
      );
    }
    console.log(`-> ${values.output}`);
    return 0;
  },
};
export default command;
