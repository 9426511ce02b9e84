// `fednnunet simulate`: a relay and N site clients in one Node process, each site training on its
// own raw dataset folder — the FednnU-Net run.py equivalent, for research and workshops.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from '../command.ts';
import { choiceOption, intOption, parse, UsageError } from '../args.ts';
import { describePrivacy, PRIVACY_OPTIONS, privacyFromArgs } from '../privacy-args.ts';
import { AGGREGATION_OPTIONS, applyAggregationArgs } from '../aggregation-args.ts';
import { METHOD_OPTIONS, methodFromArgs } from '../method-args.ts';
import { INIT_MODEL_HELP, INIT_MODEL_OPTIONS, initModelFromArgs } from '../init-model-args.ts';
import { METHOD_NAMES, methodsHelp } from '../../fed/methods.ts';
import type { SiteResult } from '../../fed/client.ts';
import type { FederationConfig } from '../../fed/protocol.ts';
import { runLocalFederation } from '../../node/local-federation.ts';
import { nodeValidationEngine } from '../../infer/validation-engine.ts';
import { fsSource } from '../../node/fs-source.ts';
import { useBackend } from '../../model/tf-backend.ts';
import { TrainerSite } from '../../pipeline/trainer-site.ts';
import { SitePipeline } from '../../pipeline/site-pipeline.ts';
import { rawFolderStore } from '../../pipeline/site-store.ts';
import { writeModelFolder } from '../../node/model-folder-fs.ts';

const USAGE =
  `fednnunet simulate --sites DIR1 DIR2 [DIR3 …] --method ${METHOD_NAMES.join('|')} --rounds R --iters I [--tiny [--tiny-patch N]] [--config 3d_fullres|2d] ` +
  '[--max-update-norm C] [--robust trimmed-mean|median] [--val-iters V] [--val-every K|final|none] [--val-engine auto|ort-node|tfjs] [--encoding fp16|int8|fp32] [--broadcast fp32|fp16|int8] [--weighting uniform|cases] [--seed S] [--backend cpu] [--json FILE] [-o DIR] ' +
  `[--secure-agg [--threshold T] [--clip C] [--phase-deadline-s N]] [--dp-epsilon E [--dp-delta D] --clip C] [--init-model DIR [--init-fold K]]\nmethods:\n${methodsHelp('  ')}\n${INIT_MODEL_HELP}`;

const command: Command = {
  summary:
    'run a relay and N headless sites in this process; prints per-site validation Dice per round',
  async run(argv) {
    const { values, positionals } = parse(argv, {
      sites: { type: 'string', multiple: true },
      ...METHOD_OPTIONS,
      rounds: { type: 'string' },
      iters: { type: 'string' },
      config: { type: 'string', default: '3d_fullres' },
      'val-iters': { type: 'string', default: '10' },
      'val-every': { type: 'string', default: '1' },
      'val-engine': { type: 'string', default: 'auto' },
      tiny: { type: 'boolean' },
      'tiny-patch': { type: 'string' },
      encoding: { type: 'string', default: 'fp16' },
      broadcast: { type: 'string', default: 'fp32' },
      weighting: { type: 'string', default: 'uniform' },
      seed: { type: 'string', default: '0' },
      backend: { type: 'string', default: 'cpu' },
      json: { type: 'string' },
      output: { type: 'string', short: 'o' },
      ...PRIVACY_OPTIONS,
      ...AGGREGATION_OPTIONS,
      ...INIT_MODEL_OPTIONS,
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    // `--sites A B C`: parseArgs gives the first after --sites, the rest are positionals.
    const dirs = [...(values.sites ?? []), ...positionals];
    if (dirs.length < 2) throw new UsageError(`need at least two --sites; usage: ${USAGE}`);
    const config: FederationConfig = {
      ...methodFromArgs(values),
      configuration: choiceOption('config', values.config, ['3d_fullres', '2d'] as const),
      rounds: intOption('rounds', values.rounds, 1),
      itersPerRound: intOption('iters', values.iters, 1),
      minSites: dirs.length,
      roundDeadlineMs: 24 * 3600_000,
      weighting: choiceOption('weighting', values.weighting, ['uniform', 'cases'] as const),
      encoding: choiceOption('encoding', values.encoding, ['fp16', 'int8', 'fp32'] as const),
      // Absent means fp32, so a state.json from before the option still matches (persistence.ts).
      ...(values.broadcast !== 'fp32'
        ? { broadcast: choiceOption('broadcast', values.broadcast, ['fp16', 'int8'] as const) }
        : {}),
    };
    const privacy = privacyFromArgs(values, dirs.length, config);
    if (privacy) {
      config.privacy = privacy;
      console.log(describePrivacy(privacy, dirs.length));
    }
    applyAggregationArgs(values, config);
    const initialWeights = await initModelFromArgs(values, config);
    if (values.backend !== 'cpu')
      throw new UsageError(
        '--backend: only cpu runs in Node (WebGPU training runs in the browser app)',
      );
    await useBackend('cpu');
    const valEveryArg = values['val-every'];
    const valEvery =
      valEveryArg === 'final' || valEveryArg === 'none'
        ? valEveryArg
        : intOption('val-every', valEveryArg, 1);
    const engine = await nodeValidationEngine(
      choiceOption('val-engine', values['val-engine'], ['auto', 'ort-node', 'tfjs'] as const),
    );
    if (valEvery !== 'none')
      console.log(
        `validation: ${engine.name}, ${valEvery === 'final' ? 'after the last round only' : valEvery === 1 ? 'after every round' : `every ${valEvery} rounds and after the last`}${engine.note ? ` (${engine.note})` : ''}`,
      );

    const sites: TrainerSite[] = [];
    const datasetJsons: Record<string, unknown>[] = [];
    for (const dir of dirs) {
      // Each site's stages over its raw folder, as the browser runs them over IndexedDB.
      const store = await rawFolderStore(fsSource(dir));
      datasetJsons.push(store.datasetJson!);
      sites.push(
        new TrainerSite({
          pipeline: new SitePipeline(store),
          tiny: values.tiny
            ? values['tiny-patch']
              ? { patch: intOption('tiny-patch', values['tiny-patch'], 4) }
              : true
            : undefined,
          seed: intOption('seed', values.seed, 0),
          valIters: intOption('val-iters', values['val-iters'], 0),
          evaluate: valEvery !== 'none',
          valEvery: valEvery === 'none' ? undefined : valEvery,
          validationEngine: engine,
          log: (l) => console.log(`[site] ${l}`),
        }),
      );
    }

    const results: SiteResult[] = await runLocalFederation(config, sites, {
      hideCaseCount: !!privacy,
      log: (l) => console.log(`[relay] ${l}`),
      initialWeights,
    });

    // Report: Dice per round per site (before local training = after the previous aggregation).
    console.log(
      `\n${config.method}: ${config.rounds} rounds × ${config.itersPerRound} iterations, ${sites.length} sites`,
    );
    // Per round: each site's Dice after that round's aggregation, and the time all sites spent
    // training it and evaluating it (summed over sites; the sites share this process's CPU).
    const sec = (ms: number) => (ms / 1000).toFixed(1);
    console.log(
      ['round', ...sites.map((_, i) => `site${i + 1} Dice`), 'train s', 'eval s'].join('\t'),
    );
    // From a pretrained model, round 1 starts from it: its Dice is the row for round 0.
    if (config.initModel)
      console.log(
        [
          '0 (initial model)',
          ...sites.map((s) => s.rounds.find((x) => x.round === 1)?.diceBefore?.toFixed(4) ?? ''),
          '',
          sec(sites.reduce((a, s) => a + (s.rounds.find((x) => x.round === 1)?.evalMs ?? 0), 0)),
        ].join('\t'),
      );
    for (let r = 1; r <= config.rounds; r++) {
      const next = (s: TrainerSite) => s.rounds.find((x) => x.round === r + 1);
      const here = (s: TrainerSite) => s.rounds.find((x) => x.round === r);
      const evalMs =
        r < config.rounds
          ? sites.reduce((a, s) => a + (next(s)?.evalMs ?? 0), 0)
          : sites.reduce((a, s) => a + s.finalEvalMs, 0);
      console.log(
        [
          r === config.rounds ? `${r} (final)` : r,
          ...sites.map(
            (s) => (r === config.rounds ? s.finalDice : next(s)?.diceBefore)?.toFixed(4) ?? '',
          ),
          sec(sites.reduce((a, s) => a + (here(s)?.trainMs ?? 0), 0)),
          sec(evalMs),
        ].join('\t'),
      );
    }
    const trainTotal = sites.reduce((a, s) => a + s.rounds.reduce((b, x) => b + x.trainMs, 0), 0);
    const evalTotal = sites.reduce(
      (a, s) => a + s.finalEvalMs + s.rounds.reduce((b, x) => b + x.evalMs, 0),
      0,
    );
    console.log(
      `time: training ${sec(trainTotal)} s, evaluation ${sec(evalTotal)} s (${engine.name}), summed over sites`,
    );
    const spent = results[0].privacy.at(-1);
    if (spent)
      console.log(
        `differential privacy: ε = ${spent.epsilon.toFixed(3)} spent after ${spent.round} rounds (δ = ${spent.delta}, noise multiplier ${spent.noiseMultiplier.toFixed(4)})`,
      );
    const report = {
      config,
      validation: { engine: engine.name, every: valEvery },
      sites: sites.map((s, i) => ({
        dataset: dirs[i],
        plans: {
          patch_size: s.trainer!.config.patch_size,
          spacing: s.trainer!.config.spacing,
          n_stages: s.trainer!.config.architecture.arch_kwargs.n_stages,
        },
        sharedTensors: results[i].shared.length,
        localTensors: s.trainer!.net.specs.length - results[i].shared.length,
        rounds: s.rounds.map((r) => ({
          round: r.round,
          diceBefore: r.diceBefore ?? null,
          trainLoss: r.epoch.trainLoss,
          pseudoDice: r.epoch.pseudoDice,
          trainSeconds: r.trainMs / 1000,
          evalSeconds: r.evalMs / 1000,
        })),
        finalDice: s.finalDice,
        finalEvalSeconds: s.finalEvalMs / 1000,
        traffic: results[i].traffic,
      })),
      ...(privacy ? { privacy: { ...privacy, spent: results[0].privacy } } : {}),
    };
    for (const [i, s] of report.sites.entries()) {
      const sent = s.traffic.reduce((a, t) => a + t.sent, 0);
      const recv = s.traffic.reduce((a, t) => a + t.received, 0);
      // A round's model arrives while the site is still counting the previous round, so traffic
      // row r ≥ 1 holds round r's upload and round r + 1's model (or the final one).
      const later = s.traffic.filter((t) => t.round >= 1);
      const mean = (k: 'sent' | 'received') =>
        later.length ? later.reduce((a, t) => a + t[k], 0) / later.length / 1024 : 0;
      console.log(
        `site${i + 1}: shared ${s.sharedTensors} tensors, local ${s.localTensors}; sent ${(sent / 2 ** 20).toFixed(2)} MiB, received ${(recv / 2 ** 20).toFixed(2)} MiB; ` +
          `per round after the first model (upload ${config.encoding}, broadcast ${config.broadcast ?? 'fp32'}): sent ${mean('sent').toFixed(1)} KiB, received ${mean('received').toFixed(1)} KiB`,
      );
    }
    if (values.json)
      writeFileSync(
        values.json,
        JSON.stringify(
          report,
          (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v),
          2,
        ),
      );
    if (values.output) {
      for (const [i, s] of sites.entries()) {
        const r = report.sites[i];
        await writeModelFolder(join(values.output, `site${i + 1}`), {
          plans: s.plans!,
          datasetJson: datasetJsons[i] as never,
          configuration: config.configuration,
          weights: await s.trainer!.net.namedWeights(),
          provenance: {
            trained_by: 'fednnunet simulate',
            method: config.method,
            sites: sites.length,
            site: `site${i + 1}`,
            rounds: config.rounds,
            iterations: config.rounds * config.itersPerRound,
            shared_tensors: r.sharedTensors,
            local_tensors: r.localTensors,
            ...(s.finalDice !== undefined && Number.isFinite(s.finalDice)
              ? {
                  validation_dice: s.finalDice,
                  validation: 'sliding window over whole validation cases, mean foreground Dice',
                }
              : {}),
          },
        });
      }
      console.log(`models written to ${values.output}/site1…site${sites.length}`);
    }
    for (const s of sites) s.trainer?.dispose();
    return 0;
  },
};
export default command;
