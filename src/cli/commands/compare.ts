// `fednnunet compare`: the FednnU-Net paper's comparison (local, AsymFedAvg, FFE, FedAvg,
// centralised) on the given sites' raw nnU-Net folders, with equal budgets and held-out cases
// (src/eval/method-comparison.ts); prints the table, writes OUT/summary.json and OUT/compare.svg.
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Command } from '../command.ts';
import { intOption, parse, UsageError } from '../args.ts';

const USAGE =
  'fednnunet compare --sites DIR1 DIR2 [DIR3 …] --rounds R --iters I [--tiny [--tiny-patch N]] [--holdout K] ' +
  '[--methods local,centralised,fedavg,ffe,asym] [--seed S] [--config 3d_fullres|2d] [--engine auto|ort-node|tfjs] [-o OUT]';

const command: Command = {
  summary:
    'train local, centralised and federated models with equal budgets and compare their held-out Dice per site',
  async run(argv) {
    const { values, positionals } = parse(argv, {
      sites: { type: 'string', multiple: true },
      rounds: { type: 'string' },
      iters: { type: 'string' },
      tiny: { type: 'boolean' },
      'tiny-patch': { type: 'string' },
      holdout: { type: 'string', default: '1' },
      methods: { type: 'string', default: 'local,asym,ffe,fedavg,centralised' },
      seed: { type: 'string', default: '0' },
      config: { type: 'string', default: '3d_fullres' },
      engine: { type: 'string', default: 'auto' },
      output: { type: 'string', short: 'o', default: 'fednnunet-compare' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const { COMPARE_METHODS, compareMethods, formatComparisonTable } =
      await import('../../eval/method-comparison.ts');
    const dirs = [...(values.sites ?? []), ...positionals];
    if (dirs.length < 2) throw new UsageError(`need at least two --sites; usage: ${USAGE}`);
    if (values.rounds === undefined || values.iters === undefined)
      throw new UsageError(`--rounds and --iters are required; usage: ${USAGE}`);
    const methods = values.methods.split(',').map((m) => m.trim());
    for (const m of methods)
      if (!(COMPARE_METHODS as readonly string[]).includes(m))
        throw new UsageError(`--methods: '${m}' is not one of ${COMPARE_METHODS.join(', ')}`);
    if (values['tiny-patch'] !== undefined && !values.tiny)
      throw new UsageError('--tiny-patch needs --tiny');
    if (values.config !== '3d_fullres' && values.config !== '2d')
      throw new UsageError(`--config must be 3d_fullres or 2d, got '${values.config}'`);
    const engineName = values.engine;
    if (engineName !== 'auto' && engineName !== 'ort-node' && engineName !== 'tfjs')
      throw new UsageError(`--engine must be auto, ort-node or tfjs, got '${engineName}'`);
    const rounds = intOption('rounds', values.rounds, 1);
    const iters = intOption('iters', values.iters, 1);
    const holdout = intOption('holdout', values.holdout, 1);
    const seed = intOption('seed', values.seed, 0);
    const tiny = values.tiny
      ? values['tiny-patch']
        ? { patch: intOption('tiny-patch', values['tiny-patch'], 4) }
        : true
      : undefined;

    const { useBackend } = await import('../../model/tf-backend.ts');
    const { fsSource } = await import('../../node/fs-source.ts');
    const { rawFolderStore } = await import('../../pipeline/site-store.ts');
    const { runLocalFederation } = await import('../../node/local-federation.ts');
    const { nodeValidationEngine } = await import('../../infer/validation-engine.ts');
    const { comparisonSvg } = await import('../../eval/comparison-svg.ts');
    await useBackend('cpu');
    const engine = await nodeValidationEngine(engineName);
    console.log(`evaluation engine: ${engine.name}${engine.note ? ` (${engine.note})` : ''}`);
    const sites = [];
    for (const d of dirs) {
      const dir = resolve(d);
      sites.push({
        name: basename(dir),
        store: await rawFolderStore(fsSource(dir), basename(dir)),
      });
    }
    const t0 = performance.now();
    const summary = await compareMethods(sites, {
      rounds,
      iters,
      holdout,
      seed,
      tiny,
      configuration: values.config,
      methods: methods as (typeof COMPARE_METHODS)[number][],
      engine,
      runFederation: (config, trainers) => runLocalFederation(config, trainers),
      log: (l) => console.log(`[compare] ${l}`),
    });
    const out = resolve(values.output);
    mkdirSync(out, { recursive: true });
    writeFileSync(
      join(out, 'summary.json'),
      `${JSON.stringify(
        { ...summary, sitesDirs: dirs.map((d) => resolve(d)) },
        (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v),
        2,
      )}\n`,
    );
    writeFileSync(join(out, 'compare.svg'), comparisonSvg(summary));
    console.log(
      `\nHeld-out Dice (nnU-Net, foreground mean; ${holdout} case(s) per site; ${rounds} × ${iters} iterations per model):`,
    );
    console.log(formatComparisonTable(summary));
    for (const m of summary.methods)
      console.log(
        m.status === 'done'
          ? `${m.label}: training ${m.trainSeconds.toFixed(1)} s, evaluation ${m.evalSeconds.toFixed(1)} s`
          : `${m.label}: skipped (${m.reason})`,
      );
    console.log(
      `total ${((performance.now() - t0) / 1000).toFixed(1)} s; wrote ${join(out, 'summary.json')} and ${join(out, 'compare.svg')}`,
    );
    return 0;
  },
};
export default command;
