// Relay under load (issue 18): N sites in this process, each a real SiteClient with its own
// identity key (every frame signed, as the relay requires), over real WebSocket connections on
// loopback to one relay in a child process (bench/relay-load-relay.ts, so its peak RSS is the
// relay's alone). Each round every site sends an int8 update of the whole model; the relay
// broadcasts the global as an int8 delta (whole fp32 in round 1). Prints round times, the relay's
// peak RSS, and whether every site ended with the relay's final model (checksum).
//
// Bounded: the sites in this process hold one model each, so the model is 31.2 M parameters (the
// 801-like nnU-Net) for N ≤ 10 and shrinks as 10/N beyond, keeping sites × parameters — the bytes
// a round moves through the relay — the same for every N. `RELAY_LOAD_SITES=10,50` picks N,
// `RELAY_LOAD_PARAMS=1000000` the model size at N ≤ 10.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import '../src/node/native-crc.ts';
import { SiteClient, type SiteTrainer } from '../src/fed/client.ts';
import { wsConnect } from '../src/fed/ws-transport.ts';
import { modelChecksum } from '../src/fed/global-delta.ts';
import type { FederationConfig } from '../src/fed/protocol.ts';
import type { NamedWeights, WeightSpec } from '../src/model/named-weights.ts';
import { randomArray } from '../src/util/rng.ts';
import { spec801 } from './spec801.ts';

const ROUNDS = 3;
const FULL = spec801();
const fullParams = FULL.reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);
/** Parameters at N ≤ 10 (default the full model; smaller for a quick try). */
const topParams = Number(process.env.RELAY_LOAD_PARAMS ?? fullParams);

/** spec801 shrunk to about `params` parameters (output channels of each large tensor scaled). */
function specOf(params: number): WeightSpec {
  if (params >= fullParams) return FULL;
  const f = params / fullParams;
  return FULL.map((e) =>
    e.shape.length > 1
      ? { name: e.name, shape: [Math.max(1, Math.round(e.shape[0] * f)), ...e.shape.slice(1)] }
      : e,
  );
}

/** A site that "trains" by adding a fixed small random step (shared by all sites: no per-site copy). */
class LoadTrainer implements SiteTrainer {
  numCases = 3;
  private w?: NamedWeights;
  constructor(
    private readonly spec: WeightSpec,
    private readonly init: NamedWeights,
    private readonly step: NamedWeights,
    private readonly sign: number,
  ) {}
  async localFingerprint() {
    return {};
  }
  async prepare() {}
  async weights(): Promise<NamedWeights> {
    const base = this.w ?? this.init;
    if (!this.w) return base;
    return new Map(
      this.spec.map(({ name, shape }) => {
        const g = base.get(name)!.data;
        const s = this.step.get(name)!.data;
        const d = new Float32Array(g.length);
        for (let i = 0; i < d.length; i++) d[i] = g[i] + this.sign * s[i];
        return [name, { shape, data: d }];
      }),
    );
  }
  async loadShared(shared: NamedWeights) {
    this.w = shared; // held by the client anyway; not copied
  }
  async train() {
    return { loss: 0 };
  }
}

function model(spec: WeightSpec, seed: number, amp: number): NamedWeights {
  return new Map(
    spec.map((e, i) => [
      e.name,
      {
        shape: e.shape,
        data: randomArray(
          e.shape.reduce((x, y) => x * y, 1),
          seed * 1000 + i,
          -amp,
          amp,
        ),
      },
    ]),
  );
}

async function run(n: number): Promise<void> {
  const spec = specOf(Math.min(topParams, (topParams * 10) / n));
  const params = spec.reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);
  const config: FederationConfig & { expectedSites: number; token: string } = {
    method: 'fedavg',
    configuration: '3d_fullres',
    rounds: ROUNDS,
    itersPerRound: 1,
    minSites: n,
    roundDeadlineMs: 3_600_000,
    weighting: 'uniform',
    encoding: 'int8',
    broadcast: 'int8',
    expectedSites: n,
    token: 'load',
  };
  const child = spawn(
    process.execPath,
    [
      '--max-old-space-size=16384',
      '--import',
      'tsx',
      'bench/relay-load-relay.ts',
      JSON.stringify(config),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! });
  const closes: number[] = [];
  const problems: string[] = [];
  let final = '';
  let rss = 0;
  let url = '';
  const gotUrl = new Promise<void>((ok) =>
    lines.on('line', (l) => {
      if (l.startsWith('URL ')) {
        url = l.slice(4);
        ok();
      } else if (l.startsWith('LOG ')) {
        const [, t, ...rest] = l.split(' ');
        if (/closed/.test(l)) closes.push(Number(t));
        else problems.push(rest.join(' '));
      } else if (l.startsWith('FINAL ')) final = l.slice(6);
      else if (l.startsWith('RSS ')) rss = Number(l.slice(4));
    }),
  );
  const exited = new Promise((ok) => child.on('exit', ok));
  await gotUrl;
  const init = model(spec, 1, 0.1);
  const step = model(spec, 2, 1e-3);
  const t0 = Date.now();
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      new SiteClient({
        connect: wsConnect(url, WebSocket as never),
        token: 'load',
        siteName: `load${i + 1}`,
        trainer: new LoadTrainer(spec, init, step, i % 2 ? 1 : -0.5),
      }).run(),
    ),
  );
  const total = (Date.now() - t0) / 1000;
  child.stdin!.end();
  await exited;
  const sums = new Set(results.map((r) => modelChecksum(r.global)));
  const same = sums.size === 1 && sums.has(final);
  const rounds = closes.map((t, i) => ((t - (i ? closes[i - 1] : t0)) / 1000).toFixed(1));
  const down = results[0].traffic.find((t) => t.round === 1)?.received ?? 0;
  const up = results[0].traffic.find((t) => t.round === 2)?.sent ?? 0;
  console.log(
    `| ${n} | ${(params / 1e6).toFixed(2)} | ${rounds.join(' / ')} | ${total.toFixed(1)} | ${(rss / 2 ** 20).toFixed(0)} | ${(up / 2 ** 20).toFixed(2)} / ${(down / 2 ** 20).toFixed(2)} | ${same ? `yes (${final})` : `NO: ${[...sums].join(', ')} vs relay ${final}`} |`,
  );
  if (problems.length) console.log(`relay: ${problems.slice(0, 5).join('; ')}`);
  if (!same) process.exitCode = 1;
}

const ns = (process.env.RELAY_LOAD_SITES ?? '10,50,100').split(',').map(Number);
console.log(
  `${ROUNDS} rounds, FedAvg, int8 uploads, int8 delta broadcast (round 1: whole fp32 model), every frame signed\n`,
);
console.log(
  "| sites | parameters (M) | round 1 / 2 / 3 (s, from the first connection) | total (s) | relay peak RSS (MiB) | per site and round: up / down (MiB, round 2) | every site holds the relay's final model |",
);
console.log('|---|---|---|---|---|---|---|');
for (const n of ns) await run(n);
