// Fast vs stock WebGPU conv3d kernels (src/model/kernels) in Node through Dawn, or (--chromium) in
// Chromium, in a module worker of the test-only kernels page. On a machine without a GPU this is SwiftShader (WebGPU on the CPU).
// Per kernel (forward, dx, dw) on convolutions of the benchmark net, then one whole training
// step of the benchmark net (forward with deep supervision, DC+CE, all gradients, SGD update);
// stock and fast in the same run, with the losses of the first steps compared. Times are medians
// and include reading the result back. GFLOP/s counts 2·MACs of the convolution (the same for
// forward, dx and dw). Peak: a large tf.matMul on the same backend, and our own register-blocked
// GEMM (the faster of the two on SwiftShader). A per-kernel GPU-time breakdown of one step
// (tf.profile with WebGPU timestamp queries) shows where the time goes.
// Size: FEDNNUNET_BENCH_NET="patch,batch,f1-f2-…" (default 16,2,8-16-32-64: what SwiftShader on 2 cores runs in a few minutes).
import { spawnSync } from 'node:child_process';
import { openKernelsPage } from '../test/pages/kernels/open-page.ts';
import { openKernelsNode } from '../test/kernels/open-node.ts';
import type { BenchNet, ConvCase } from '../test/kernels/kernel-suite.ts';
import { CONV_VARIANTS } from '../src/model/kernels/conv-variants.ts';

const VARIANTS = [...CONV_VARIANTS];

const [patch, batch, feats] = (process.env.FEDNNUNET_BENCH_NET ?? '16,2,8-16-32-64').split(',');
const P = Number(patch);
const net: BenchNet = {
  patch: [P, P, P],
  batch: Number(batch),
  features: feats.split('-').map(Number),
};
const f = net.features;
const B = net.batch;
const CASES: Array<[string, ConvCase]> = [
  [
    `stage 1 conv`,
    {
      batch: B,
      spatial: [P, P, P],
      cin: f[0],
      cout: f[0],
      kernel: [3, 3, 3],
      strides: [1, 1, 1],
      pad: 'same',
    },
  ],
  [
    `stage 2 down`,
    {
      batch: B,
      spatial: [P + 1, P + 1, P + 1],
      cin: f[0],
      cout: f[1],
      kernel: [3, 3, 3],
      strides: [2, 2, 2],
      pad: 'valid',
    },
  ],
  [
    `stage 2 conv`,
    {
      batch: B,
      spatial: [P / 2, P / 2, P / 2],
      cin: f[1],
      cout: f[1],
      kernel: [3, 3, 3],
      strides: [1, 1, 1],
      pad: 'same',
    },
  ],
  [
    `deepest conv`,
    {
      batch: B,
      spatial: Array(3).fill(P / 2 ** (f.length - 1)) as [number, number, number],
      cin: f.at(-1)!,
      cout: f.at(-1)!,
      kernel: [3, 3, 3],
      strides: [1, 1, 1],
      pad: 'same',
    },
  ],
  [
    `up 2→1 (transp.)`,
    {
      batch: B,
      spatial: [P, P, P],
      cin: f[0],
      cout: f[1],
      kernel: [2, 2, 2],
      strides: [2, 2, 2],
      pad: 'valid',
    },
  ],
];
const REPS = 3;

const STEPS = 4;

// In Node through Dawn by default; `npm run bench kernels -- --chromium` runs it in Chromium.
const inChromium = process.argv.includes('--chromium');
const s = inChromium
  ? await openKernelsPage()
  : { ...(await openKernelsNode()), errors: [] as string[], close: async () => {} };
const call = s.call;
try {
  await call('init');
  const peak = await call('peakMatMul', 1024, REPS);
  const own = await call('peakGemm', 1024, REPS);
  console.log(
    `WebGPU ${inChromium ? `in ${process.env.CHROME_PATH ?? 'Chromium'}` : 'in Node (Dawn)'} (SwiftShader when no GPU); median of ${REPS}, result read-back included.\n`,
  );
  console.log(
    `peak: tf.matMul 1024×1024×1024 ${peak.ms.toFixed(0)} ms = ${peak.gflops.toFixed(2)} GFLOP/s; register-blocked WGSL GEMM (8×8 per thread, vec4) ${own.ms.toFixed(0)} ms = ${own.gflops.toFixed(2)} GFLOP/s\n`,
  );
  // fast = the register-blocked variant (the default); every conv3d variant gets its own column.
  console.log(
    `| conv | shape | kernel | GFLOP | stock ms | ${VARIANTS.map((v) => `${v} ms`).join(' | ')} | stock GFLOP/s | fast GFLOP/s | fast % of GEMM peak | speedup | fastest variant |`,
  );
  console.log(`|---|---|---|---|---|${VARIANTS.map(() => '---|').join('')}---|---|---|---|---|`);
  for (const [label, c] of CASES) {
    const r = await call('benchKernel', c, REPS);
    for (const k of ['y', 'dx', 'dw'] as const) {
      const m = r.ms[k];
      const g = r.flops / 1e9;
      const fastG = g / (m.fast / 1e3);
      const best = VARIANTS.reduce((a, v) =>
        (m.variants[v] ?? Infinity) < (m.variants[a] ?? Infinity) ? v : a,
      );
      console.log(
        `| ${label} | ${r.name} | ${k} | ${g.toFixed(3)} | ${m.stock.toFixed(0)} | ${VARIANTS.map((v) => m.variants[v]?.toFixed(0) ?? '—').join(' | ')} | ${(g / (m.stock / 1e3)).toFixed(2)} | ${fastG.toFixed(2)} | ${((100 * fastG) / own.gflops).toFixed(0)}% | ${(m.stock / m.fast).toFixed(1)}× | ${best} |`,
      );
    }
  }
  // The per-adapter autotune on the first two benchmark convolutions (a fresh in-memory cache).
  const tune = await call('tuneConv', [CASES[0][1], CASES[1][1]], REPS);
  console.log(
    `\nautotune (stage 1 conv + stage 2 down, median of ${REPS}, ms summed): ${(
      ['forward', 'dx', 'dw'] as const
    )
      .map(
        (p) =>
          `${p} ${VARIANTS.filter((v) => tune.first.ms![p][v] !== undefined)
            .map((v) => `${v} ${tune.first.ms![p][v]!.toFixed(0)}`)
            .join(' / ')} → ${tune.first.choice[p]}`,
      )
      .join('; ')}`,
  );
  // Where one step's GPU time goes (WebGPU timestamp queries through tf.profile), by kernel name.
  console.log('\nGPU time of one training step by kernel (tf.profile), stock vs fast:\n');
  const prof = {} as Record<
    'stock' | 'fast',
    { wallMs: number; kernels: Array<{ name: string; calls: number; ms: number }> }
  >;
  for (const mode of ['stock', 'fast'] as const)
    prof[mode] = await call('profileTrainStep', net, mode === 'fast');
  const names = [...new Set([...prof.stock.kernels, ...prof.fast.kernels].map((k) => k.name))];
  const get = (m: 'stock' | 'fast', name: string) => prof[m].kernels.find((k) => k.name === name);
  const rows = names
    .map((name) => ({ name, stock: get('stock', name), fast: get('fast', name) }))
    .sort(
      (a, b) => (b.stock?.ms ?? 0) + (b.fast?.ms ?? 0) - (a.stock?.ms ?? 0) - (a.fast?.ms ?? 0),
    );
  console.log('| kernel | stock calls | stock ms | fast calls | fast ms |');
  console.log('|---|---|---|---|---|');
  for (const r of rows.slice(0, 14))
    console.log(
      `| ${r.name} | ${r.stock?.calls ?? 0} | ${(r.stock?.ms ?? 0).toFixed(0)} | ${r.fast?.calls ?? 0} | ${(r.fast?.ms ?? 0).toFixed(0)} |`,
    );
  const tot = (m: 'stock' | 'fast') => prof[m].kernels.reduce((a, k) => a + k.ms, 0);
  const calls = (m: 'stock' | 'fast') => prof[m].kernels.reduce((a, k) => a + k.calls, 0);
  console.log(
    `| all (${names.length} kernel names) | ${calls('stock')} | ${tot('stock').toFixed(0)} | ${calls('fast')} | ${tot('fast').toFixed(0)} |`,
  );

  const t = await call('benchTrainStep', net, STEPS);
  const g = t.convFlops / 1e9;
  console.log(
    `\nbenchmark net: ${f.length} stages, features ${f.join('-')}, patch ${P}³, batch ${B}, ${(t.params / 1e6).toFixed(2)} M parameters, ${g.toFixed(2)} GFLOP of 3×3×3 convs per step (${(g / (t.stock.ms / 1e3)).toFixed(2)} GFLOP/s stock, ${(g / (t.fast.ms / 1e3)).toFixed(2)} GFLOP/s fast)`,
  );
  const maxRel = Math.max(
    ...t.stock.losses.map((l, i) => Math.abs(l - t.fast.losses[i]) / Math.abs(l)),
  );
  console.log(
    `losses over ${STEPS} SGD steps from the same weights and batch: stock ${t.stock.losses.map((l) => l.toFixed(6)).join(', ')}; fast ${t.fast.losses.map((l) => l.toFixed(6)).join(', ')}; max rel. difference ${maxRel.toExponential(2)}`,
  );
  const errors = await call('gpuErrors');
  if (errors.length || s.errors.length)
    throw new Error(`errors: ${[...errors, ...s.errors].join('\n')}`);
  if (!(maxRel < 1e-4)) throw new Error(`fast and stock losses differ by ${maxRel} (> 1e-4)`);
  // The same net and patch in PyTorch on the CPU (Debian's python3-torch), when it is installed.
  const torch = spawnSync(
    '/usr/bin/python3',
    ['bench/torch_reference.py', '--train', f.join('-'), String(P), String(B)],
    { encoding: 'utf8' },
  );
  if (torch.status === 0) {
    const [ms, threads, version] = torch.stdout.trim().split(' ');
    console.log(
      `PyTorch ${version} on the CPU (${threads} threads), same net and patch (cross-entropy on every head instead of DC+CE): ${ms} ms per training step`,
    );
  } else
    console.log(
      `PyTorch reference skipped: /usr/bin/python3 with torch is not available (${(torch.stderr || String(torch.error)).trim().split('\n').pop()})`,
    );
  console.log(
    `train step: stock ${t.stock.ms.toFixed(0)} ms, fast ${t.fast.ms.toFixed(0)} ms, speedup ${(t.stock.ms / t.fast.ms).toFixed(2)}×`,
  );
} finally {
  await s.close();
}
