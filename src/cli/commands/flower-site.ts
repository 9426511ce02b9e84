// `fednnunet flower-site`: a headless FednnU-Net site in a Flower federation. It joins a SuperLink's
// REST Fleet API as a SuperNode (no Python) and answers our ServerApp (flower/fednnunet_app) with
// the same site pipeline and trainer as our own federation (`fednnunet simulate`, the browser).
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import type { Command } from '../command.ts';
import { intOption, parse, UsageError } from '../args.ts';
import { fsSource } from '../../node/fs-source.ts';
import { useBackend } from '../../model/tf-backend.ts';
import { TrainerSite } from '../../pipeline/trainer-site.ts';
import { SitePipeline } from '../../pipeline/site-pipeline.ts';
import { rawFolderStore } from '../../pipeline/site-store.ts';
import { writeModelFolder } from '../../node/model-folder-fs.ts';
import { FlowerNode } from '../../fed/flower/node.ts';
import { FlowerSite } from '../../fed/flower/site.ts';

const USAGE =
  'fednnunet flower-site --superlink URL --dataset RAW_DIR [--tiny [--tiny-patch N]] [--backend cpu] ' +
  '[--seed S] [--val-iters V] [--no-eval] [--key-file FILE] [--heartbeat-s 120] [--json FILE] [-o MODEL_DIR]\n' +
  '  --superlink  the SuperLink REST Fleet API (flower-superlink --fleet-api-type rest), e.g. http://127.0.0.1:9095\n' +
  '  --key-file   keeps the node key there, so a restarted site comes back as the same node\n' +
  "  --heartbeat-s  the interval the SuperLink expects heartbeats in; training blocks this process's\n" +
  '               event loop, so it must exceed the longest training step (default 120)\n' +
  "  -o           writes this site's final model folder (with its local layers under AsymFedAvg)";

const command: Command = {
  summary: 'join a Flower federation (SuperLink REST Fleet API) as a FednnU-Net site',
  async run(argv) {
    const { values } = parse(argv, {
      superlink: { type: 'string' },
      dataset: { type: 'string' },
      tiny: { type: 'boolean' },
      'tiny-patch': { type: 'string' },
      backend: { type: 'string', default: 'cpu' },
      seed: { type: 'string', default: '0' },
      'val-iters': { type: 'string', default: '10' },
      'no-eval': { type: 'boolean' },
      'key-file': { type: 'string' },
      'heartbeat-s': { type: 'string', default: '120' },
      json: { type: 'string' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (!values.superlink || !values.dataset)
      throw new UsageError(`need --superlink and --dataset; usage: ${USAGE}`);
    if (values.backend !== 'cpu')
      throw new UsageError(
        '--backend: only cpu runs in Node (WebGPU training runs in the browser app)',
      );
    await useBackend('cpu');
    const store = await rawFolderStore(fsSource(values.dataset));
    const log = (l: string) => console.log(`[flower-site] ${l}`);
    const trainer = new TrainerSite({
      pipeline: new SitePipeline(store),
      tiny: values.tiny
        ? values['tiny-patch']
          ? { patch: intOption('tiny-patch', values['tiny-patch'], 4) }
          : true
        : undefined,
      seed: intOption('seed', values.seed, 0),
      valIters: intOption('val-iters', values['val-iters'], 0),
      evaluate: !values['no-eval'],
      log,
    });
    let publicKey: Uint8Array | undefined;
    const keyFile = values['key-file'];
    if (keyFile && existsSync(keyFile)) publicKey = new Uint8Array(readFileSync(keyFile));
    const node = new FlowerNode({
      superlink: values.superlink,
      publicKey,
      heartbeatInterval: intOption('heartbeat-s', values['heartbeat-s'], 1),
      log,
    });
    if (keyFile && !publicKey) writeFileSync(keyFile, node.publicKey, { mode: 0o600 });
    const site = new FlowerSite(trainer, log);
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    await node.join();
    try {
      await node.serve(site.handle, { done: () => site.done, signal: stop.signal });
    } finally {
      await node.leave();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    if (!site.done) {
      console.error('left before the federation ended');
      return 1;
    }
    const report = {
      node: node.nodeId,
      method: site.state.config?.method,
      plans: trainer.plans,
      rounds: site.state.rounds,
      sharedKeys: site.state.sharedKeys,
      final: site.state.finalMetrics,
    };
    if (values.json)
      writeFileSync(
        values.json,
        JSON.stringify(report, (_k, v) =>
          typeof v === 'number' && !Number.isFinite(v) ? null : v,
        ),
      );
    if (values.output) {
      const cfg = site.state.config!;
      await writeModelFolder(values.output, {
        plans: trainer.plans!,
        datasetJson: store.datasetJson as never,
        configuration: cfg.configuration,
        weights: await trainer.trainer!.net.namedWeights(),
        provenance: {
          trained_by: 'fednnunet flower-site',
          method: cfg.method,
          rounds: site.state.rounds.length,
          iterations: site.state.rounds.length * cfg.itersPerRound,
          shared_tensors: site.state.sharedKeys?.length,
          ...(site.state.finalMetrics?.dice !== undefined
            ? {
                validation_dice: site.state.finalMetrics.dice,
                validation: 'sliding window over whole validation cases, mean foreground Dice',
              }
            : {}),
        },
      });
      log(`model written to ${values.output}`);
    }
    trainer.trainer?.dispose();
    return 0;
  },
};
export default command;
