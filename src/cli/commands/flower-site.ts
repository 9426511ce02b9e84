// `fednnunet flower-site`: a headless FednnU-Net site in a Flower federation. It joins a SuperLink's
// REST Fleet API as a SuperNode (no Python) and answers our ServerApp (flower/fednnunet_app) with
// the same site pipeline and trainer as our own federation (`fednnunet simulate`, the browser).
// With --state-dir it runs the browser's resumable session (src/fed/flower/session.ts): a
// restarted process comes back as the same node, restores its trainer from its checkpoint and
// answers the message it was working on.
import { readFileSync, writeFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from '../command.ts';
import { intOption, parse, UsageError } from '../args.ts';
import { fsSource } from '../../node/fs-source.ts';
import { useBackend } from '../../model/tf-backend.ts';
import { TrainerSite } from '../../pipeline/trainer-site.ts';
import { SitePipeline } from '../../pipeline/site-pipeline.ts';
import { rawFolderStore } from '../../pipeline/site-store.ts';
import { writeModelFolder } from '../../node/model-folder-fs.ts';
import { runFlowerSession, type FlowerMembership } from '../../fed/flower/session.ts';
import { errorMessage } from '../../util/errors.ts';

const USAGE =
  'fednnunet flower-site --superlink URL --dataset RAW_DIR [--tiny [--tiny-patch N]] [--backend cpu] ' +
  '[--seed S] [--val-iters V] [--no-eval] [--state-dir DIR | --key-file FILE] [--heartbeat-s 120] [--json FILE] [-o MODEL_DIR]\n' +
  '  --superlink  the SuperLink REST Fleet API (flower-superlink --fleet-api-type rest), e.g. http://127.0.0.1:9095\n' +
  '  --state-dir  keeps the node key, its id, the rounds answered, the trainer checkpoint and the message\n' +
  '               being answered there: a restarted site (even mid-round) continues as the same node\n' +
  '  --key-file   keeps only the node key there (a restarted site is the same node, but starts over)\n' +
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
      'state-dir': { type: 'string' },
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
    const dir = values['state-dir'];
    const file = (name: string) => join(dir!, name);
    const readBytes = (name: string) =>
      dir && existsSync(file(name)) ? new Uint8Array(readFileSync(file(name))) : undefined;
    // Write-then-rename: a process killed mid-write leaves the previous file, never half of one.
    const writeBytes = (name: string, bytes: Uint8Array | string) => {
      writeFileSync(`${file(name)}.tmp`, bytes, { mode: 0o600 });
      renameSync(`${file(name)}.tmp`, file(name));
    };
    if (dir) mkdirSync(dir, { recursive: true });
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
      ...(dir
        ? {
            saveState: async (b: Uint8Array) => writeBytes('checkpoint.bin', b),
            loadState: async () => readBytes('checkpoint.bin'),
          }
        : {}),
    });
    const keyFile = values['key-file'];
    let saved: FlowerMembership | undefined;
    const membership = readBytes('membership.json');
    if (membership) saved = JSON.parse(new TextDecoder().decode(membership)) as FlowerMembership;
    else if (keyFile && existsSync(keyFile))
      saved = { publicKey: Buffer.from(readFileSync(keyFile)).toString('base64') };
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    let result: Awaited<ReturnType<typeof runFlowerSession>>;
    let last: FlowerMembership | undefined;
    try {
      result = await runFlowerSession({
        superlink: values.superlink,
        heartbeatInterval: intOption('heartbeat-s', values['heartbeat-s'], 1),
        log,
        trainer,
        saved,
        savedMessage: readBytes('message.bin'),
        signal: stop.signal,
        persist: async (m) => {
          last = m;
          if (dir) writeBytes('membership.json', JSON.stringify(m));
          if (keyFile && !existsSync(keyFile))
            writeFileSync(keyFile, Buffer.from(m.publicKey, 'base64'), { mode: 0o600 });
        },
        ...(dir
          ? {
              saveMessage: async (b: Uint8Array | undefined) =>
                b ? writeBytes('message.bin', b) : rmSync(file('message.bin'), { force: true }),
            }
          : {}),
      });
    } catch (e) {
      console.error(errorMessage(e));
      return 1;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    const site = result.site;
    if (dir) {
      // The federation is over: only the key and node id stay (the next run's node).
      writeBytes(
        'membership.json',
        JSON.stringify({ publicKey: last!.publicKey, nodeId: result.nodeId }),
      );
      rmSync(file('checkpoint.bin'), { force: true });
    }
    const report = {
      node: result.nodeId,
      resumed: result.resumed,
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
