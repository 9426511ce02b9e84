// FednnU-Net over Flower: a real Flower SuperLink (the vendored kit, flower/kit: Flower's Python
// package from source) with the REST Fleet API on loopback, our ServerApp (flower/fednnunet_app)
// and TypeScript sites (src/fed/flower) running the real pipeline and trainer on demo phantoms.
// Skips, saying why, when the kit's Python dependencies (Debian packages) are missing; `.ci/run`
// installs them with flower/kit/setup.sh.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { flowerGateway } from '../../src/node/relay/flower-gateway.ts';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlowerNode } from '../../src/fed/flower/node.ts';
import { FlowerSite } from '../../src/fed/flower/site.ts';
import { TrainerSite } from '../../src/pipeline/trainer-site.ts';
import { SitePipeline, withTiny } from '../../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../../src/pipeline/site-store.ts';
import { DEMO_SITES, demoDataset } from '../../src/demo/phantoms.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { mergeSiteFingerprints } from '../../src/fed/ffe-merge.ts';
import { sharedSpec } from '../../src/fed/aggregate.ts';
import { specOf } from '../../src/model/named-weights.ts';
import type { DatasetFingerprint } from '../../src/fingerprint/types.ts';
import { readModelFolder } from '../../src/node/model-folder-fs.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const KIT = join(ROOT, 'flower/kit');
const APP = join(ROOT, 'flower/fednnunet_app');
const PY = '/usr/bin/python3';
const PY_DEPS =
  'grpc, google.protobuf, starlette, uvicorn, numpy, cryptography, sqlalchemy, typer, Cryptodome, tomli_w, pathspec, yaml, requests';

function missingDeps(): string | undefined {
  const r = spawnSync(PY, ['-c', `import ${PY_DEPS}`], { encoding: 'utf8' });
  if (r.error) return `no ${PY}`;
  if (r.status !== 0)
    return `the Flower kit's Python dependencies are missing (${r.stderr.trim().split('\n').at(-1)}); run: sh flower/kit/setup.sh DIR`;
  return undefined;
}
const missing = missingDeps();
if (missing) console.warn(`flower-federation tests skipped: ${missing}`);

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

let dir = '';
let link: ChildProcess | undefined;
let linkLog = '';
let fleetUrl = '';
let env: NodeJS.ProcessEnv = {};

async function waitForFleet(): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (link?.exitCode !== null && link?.exitCode !== undefined)
      throw new Error(`the SuperLink exited: ${linkLog.slice(-2000)}`);
    // Any HTTP answer means the REST server is up (a GET on a POST route answers 405).
    const up = await fetch(`${fleetUrl}/api/v0/fleet/pull-messages`).then(
      () => true,
      () => false,
    );
    if (up) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error('the SuperLink REST API did not come up');
}

/** Submits a run of our ServerApp and waits for it to end; its streamed log. */
function submit(overrides: Record<string, string | number | boolean>): Promise<string> {
  const args = Object.entries(overrides).map(([k, v]) =>
    typeof v === 'string' ? `${k}='${v}'` : `${k}=${v}`,
  );
  return new Promise((res, rej) => {
    const p = spawn(PY, [join(KIT, 'submit_run.py'), APP, 'local', ...args], { env, cwd: dir });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', rej);
    p.on('exit', () => res(out));
  });
}

function demoSite(i: number, patch: number) {
  const ds = demoDataset(DEMO_SITES[i], i, 3);
  const pipeline = new SitePipeline(memoryCasesStore(ds.name, ds.datasetJson, ds.cases));
  return {
    pipeline,
    trainer: new TrainerSite({ pipeline, tiny: { patch }, valIters: 0, evaluate: false }),
  };
}

/** Sites join, the run is submitted, every node serves until the run has finished. */
async function federate(
  sites: TrainerSite[],
  overrides: Record<string, string | number | boolean>,
  beforeSubmit?: () => Promise<void>,
  urls: string[] = [],
) {
  const nodes = sites.map(
    (_, i) =>
      new FlowerNode({ superlink: urls[i] ?? fleetUrl, heartbeatInterval: 120, pollMs: 300 }),
  );
  const handlers = sites.map((t) => new FlowerSite(t));
  const ids: string[] = [];
  for (const n of nodes) ids.push(await n.join());
  const serving = nodes.map((n, i) =>
    n.serve(handlers[i].handle, { done: () => handlers[i].done }).finally(() => n.leave()),
  );
  await beforeSubmit?.();
  const out = await submit(overrides);
  await Promise.all(serving);
  return { ids, handlers, out };
}

const noName = (p: object) => {
  const { dataset_name: _d, plans_name: _p, ...rest } = p as Record<string, unknown>;
  return rest;
};

describe.skipIf(!!missing)('FednnU-Net over a Flower SuperLink (REST Fleet API)', () => {
  beforeAll(async () => {
    await useBackend('cpu');
    dir = mkdtempSync(join(tmpdir(), 'flower-test-'));
    execFileSync('tar', ['xzf', join(KIT, 'flwr-py.tgz'), '-C', dir]);
    const [fleet, appio, control] = [await freePort(), await freePort(), await freePort()];
    writeFileSync(
      join(dir, 'config.toml'),
      `[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:${control}"\ninsecure = true\n`,
    );
    env = {
      ...process.env,
      FLWR_HOME: dir,
      FLWR_PY: dir,
      PYTHONPATH: `${join(KIT, 'shims')}:${dir}`,
      PATH: `${join(KIT, 'bin')}:${process.env.PATH}`,
    };
    link = spawn(
      join(KIT, 'bin/flower-superlink'),
      [
        '--insecure',
        '--fleet-api-type',
        'rest',
        '--fleet-api-address',
        `127.0.0.1:${fleet}`,
        '--serverappio-api-address',
        `127.0.0.1:${appio}`,
        '--control-api-address',
        `127.0.0.1:${control}`,
      ],
      { env, cwd: dir },
    );
    link.stdout?.on('data', (d) => (linkLog = (linkLog + d).slice(-20_000)));
    link.stderr?.on('data', (d) => (linkLog = (linkLog + d).slice(-20_000)));
    fleetUrl = `http://127.0.0.1:${fleet}`;
    await waitForFleet();
  }, 180_000);

  afterAll(() => {
    link?.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("FFE, 2 rounds, two TypeScript sites (one through the relay's gateway): one plan (our planner on the Python merge), one final model", async () => {
    const a = demoSite(0, 8);
    const b = demoSite(1, 8);
    const model = join(dir, 'model-ffe');
    // Site B reaches the SuperLink through the same-origin gateway a browser would use.
    const gateway = createHttpServer(flowerGateway(fleetUrl));
    await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
    const gatewayUrl = `http://127.0.0.1:${(gateway.address() as { port: number }).port}`;
    const { ids, handlers, out } = await federate(
      [a.trainer, b.trainer],
      {
        method: 'ffe',
        'num-server-rounds': 2,
        iters: 2,
        'min-nodes': 2,
        tiny: true,
        'out-dir': model,
      },
      undefined,
      [fleetUrl, gatewayUrl],
    ).finally(() => gateway.close());
    expect(out, out).toContain('model saved to');
    for (const h of handlers) {
      expect(h.done).toBe(true);
      expect(h.state.rounds.map((r) => r.round)).toEqual([1, 2]);
      expect(Number.isFinite(h.state.rounds[0].metrics.loss)).toBe(true);
    }
    // The ServerApp merged the fingerprints in node-id order; our relay's merge on the same
    // fingerprints gives the plans both sites trained with.
    const order = [0, 1].sort((i, j) => (BigInt(ids[i]) < BigInt(ids[j]) ? -1 : 1));
    const fps = [a, b].map((s) => s.trainer.fingerprint as DatasetFingerprint);
    const merged = mergeSiteFingerprints(
      order.map((i) => fps[i] as unknown as Record<string, unknown>),
      order.map(() => 3),
    ) as unknown as DatasetFingerprint;
    const expected = withTiny(a.pipeline.makePlans(merged), '3d_fullres', { patch: 8 });
    expect(noName(a.trainer.plans!)).toEqual(noName(b.trainer.plans!));
    expect(noName(a.trainer.plans!)).toEqual(noName(expected));
    // Identical final weights at both sites, equal to the model folder the ServerApp wrote.
    const wa = await a.trainer.weights();
    const wb = await b.trainer.weights();
    const saved = await readModelFolder(model);
    expect([...saved.weights.keys()]).toEqual([...wa.keys()]);
    for (const [name, t] of wa) {
      expect(wb.get(name)!.data).toEqual(t.data);
      expect(saved.weights.get(name)!.data).toEqual(t.data);
    }
    expect(saved.meta.provenance?.method).toBe('ffe');
    a.trainer.trainer!.dispose();
    b.trainer.trainer!.dispose();
  }, 900_000);

  it('AsymFedAvg with different plans exchanges exactly the name-and-shape intersection', async () => {
    const a = demoSite(0, 8);
    const b = demoSite(1, 16);
    const { handlers, out } = await federate([a.trainer, b.trainer], {
      method: 'asym',
      'num-server-rounds': 1,
      iters: 1,
      'min-nodes': 2,
      tiny: true,
      'out-dir': join(dir, 'model-asym'),
    });
    expect(out, out).toContain('model saved to');
    const specA = specOf(await a.trainer.weights());
    const specB = specOf(await b.trainer.weights());
    const shared = sharedSpec([specA, specB]).map((s) => s.name);
    expect(shared.length).toBeGreaterThan(0);
    expect(shared.length).toBeLessThan(Math.max(specA.length, specB.length));
    for (const h of handlers) {
      expect(h.done).toBe(true);
      expect(new Set(h.state.rounds[0].keys)).toEqual(new Set(shared));
    }
    a.trainer.trainer!.dispose();
    b.trainer.trainer!.dispose();
  }, 900_000);

  it('FedAvg: a numpy-only Python ClientApp (Python SuperNode) beside a TypeScript site', async () => {
    const a = demoSite(0, 8);
    // What the TS site's round started from (the global) and what it sent back.
    const seen: Array<Map<string, Float32Array>> = [];
    const snapshot = async () =>
      new Map([...(await a.trainer.weights())].map(([k, t]) => [k, t.data.slice()]));
    const train = a.trainer.train.bind(a.trainer);
    a.trainer.train = async (round: number) => {
      seen.push(await snapshot());
      const m = await train(round);
      seen.push(await snapshot());
      return m;
    };
    const [clientio] = [await freePort()];
    let py: ChildProcess | undefined;
    let pyLog = '';
    const model = join(dir, 'model-mixed');
    try {
      const { out } = await federate(
        [a.trainer],
        {
          method: 'fedavg',
          'num-server-rounds': 1,
          iters: 1,
          'min-nodes': 2,
          tiny: true,
          'out-dir': model,
        },
        async () => {
          py = spawn(
            PY,
            [
              join(KIT, 'supernode_rest.py'),
              '--insecure',
              '--rest',
              '--superlink',
              fleetUrl,
              '--clientappio-api-address',
              `127.0.0.1:${clientio}`,
            ],
            { env, cwd: dir, detached: true },
          );
          py.stdout?.on('data', (d) => (pyLog = (pyLog + d).slice(-20_000)));
          py.stderr?.on('data', (d) => (pyLog = (pyLog + d).slice(-20_000)));
        },
      );
      expect(out, `${out}\n--- supernode ---\n${pyLog}`).toContain('model saved to');
    } finally {
      // The SuperNode and the ClientApp processes it started (its process group).
      if (py?.pid) process.kill(-py.pid, 'SIGTERM');
    }
    // Global = case-weighted mean of the TS site's update (3 cases) and the numpy client's
    // (2 cases: the global it was sent, minus 0.001), as the ServerApp computes it.
    const [start, sent] = seen;
    const saved = await readModelFolder(model);
    for (const [name, g] of saved.weights) {
      const want = sent.get(name)!.map((v, i) => (3 * v + 2 * (start.get(name)![i] - 0.001)) / 5);
      const got = g.data;
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
      expect(worst, name).toBeLessThan(1e-6);
    }
    a.trainer.trainer!.dispose();
  }, 900_000);
});
