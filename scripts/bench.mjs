// `npm run bench [name…]`: runs the benchmarks in bench/*.bench.ts (all, or those named) with tsx
// and prints their markdown tables. Results are copied into BENCHMARKS.md with machine and date.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { ensureDeps } from './ensure-deps.mjs';
import { dawnEnv } from './dawn-env.mjs';

ensureDeps();
// Names select benchmarks; `--…` options go to each selected benchmark (e.g. `gpu -- --quick`).
const argv = process.argv.slice(2);
const flags = [];
const wanted = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--pack') {
    // `npm run bench gpu -- --pack DIR`: a self-contained folder for a machine without Node.
    const r = spawnSync(process.execPath, ['scripts/pack-gpu-bench.mjs', argv[i + 1] ?? ''], {
      stdio: 'inherit',
    });
    process.exit(r.status ?? 1);
  }
  (argv[i].startsWith('--') ? flags : wanted).push(argv[i]);
}
const all = readdirSync('bench')
  .filter((f) => f.endsWith('.bench.ts'))
  .sort();
const run = wanted.length ? all.filter((f) => wanted.some((w) => f.startsWith(w))) : all;
if (run.length === 0) {
  console.error(`no benchmark matches ${wanted.join(', ')}; available: ${all.join(', ')}`);
  process.exit(2);
}
console.log(
  `# ${new Date().toISOString().slice(0, 10)} — ${cpus()[0]?.model ?? 'unknown CPU'} ×${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}\n`,
);
let failed = 0;
for (const f of run) {
  console.log(`## ${f}\n`);
  const r = spawnSync(
    process.execPath,
    ['--expose-gc', '--max-old-space-size=16384', '--import', 'tsx', `bench/${f}`, ...flags],
    // dawnEnv: benchmarks that use WebGPU in Node (Dawn) find SwiftShader where there is no GPU.
    { stdio: 'inherit', env: { ...process.env, ...dawnEnv() } },
  );
  if (r.status !== 0) failed++;
  console.log('');
}
process.exit(failed ? 1 : 0);
