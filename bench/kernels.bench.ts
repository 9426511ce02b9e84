// Fast vs stock WebGPU conv3d kernels (src/model/kernels) in Chromium, in a module worker of the
// test-only kernels page. On a machine without a GPU this is SwiftShader (WebGPU on the CPU).
// Per kernel (forward, dx, dw) on convolutions of the benchmark net, then one whole training
// step of the benchmark net (forward with deep supervision, DC+CE, all gradients); stock and fast
// in the same run. Times are medians and include reading the result back. GFLOP/s counts 2·MACs
// of the convolution (the same for forward, dx and dw). Peak: a large tf.matMul on the same
// backend (tfjs' tuned matmul program).
// Size: FEDNNUNET_BENCH_NET="patch,batch,f1-f2-…" (default 16,2,8-16-32-64: what SwiftShader on 2 cores runs in a few minutes).
import { openKernelsPage } from '../src/node/kernels-page.ts';
import type { BenchNet, ConvCase } from '../workers/kernels.worker.ts';

const [patch, batch, feats] = (process.env.FEDNNUNET_BENCH_NET ?? '16,2,8-16-32-64').split(',');
const P = Number(patch);
const net: BenchNet = { patch: [P, P, P], batch: Number(batch), features: feats.split('-').map(Number) };
const f = net.features;
const B = net.batch;
const CASES: Array<[string, ConvCase]> = [
  [`stage 1 conv`, { batch: B, spatial: [P, P, P], cin: f[0], cout: f[0], kernel: [3, 3, 3], strides: [1, 1, 1], pad: 'same' }],
  [`stage 2 down`, { batch: B, spatial: [P + 1, P + 1, P + 1], cin: f[0], cout: f[1], kernel: [3, 3, 3], strides: [2, 2, 2], pad: 'valid' }],
  [`stage 2 conv`, { batch: B, spatial: [P / 2, P / 2, P / 2], cin: f[1], cout: f[1], kernel: [3, 3, 3], strides: [1, 1, 1], pad: 'same' }],
  [`deepest conv`, { batch: B, spatial: Array(3).fill(P / 2 ** (f.length - 1)) as [number, number, number], cin: f.at(-1)!, cout: f.at(-1)!, kernel: [3, 3, 3], strides: [1, 1, 1], pad: 'same' }],
  [`up 2→1 (transp.)`, { batch: B, spatial: [P, P, P], cin: f[0], cout: f[1], kernel: [2, 2, 2], strides: [2, 2, 2], pad: 'valid' }],
];
const REPS = 3;

const s = await openKernelsPage();
const call = <T>(fn: string, ...args: unknown[]) => s.page.evaluate(([n, a]) => (window as any).__kernels[n as string](...(a as unknown[])), [fn, args] as const) as Promise<T>;
try {
  await call('init');
  const peak = await call<{ ms: number; gflops: number }>('peakMatMul', 1024, REPS);
  console.log(`WebGPU on ${process.env.CHROME_PATH ?? 'Chromium'} (SwiftShader when no GPU); median of ${REPS}, result read-back included.\n`);
  console.log(`peak: tf.matMul 1024×1024×1024 ${peak.ms.toFixed(0)} ms = ${peak.gflops.toFixed(2)} GFLOP/s\n`);
  console.log('| conv | shape | kernel | GFLOP | stock ms | fast ms | stock GFLOP/s | fast GFLOP/s | speedup |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [label, c] of CASES) {
    const r = await call<{ name: string; flops: number; ms: Record<string, { stock: number; fast: number }> }>('benchKernel', c, REPS);
    for (const k of ['y', 'dx', 'dw']) {
      const m = r.ms[k];
      const g = r.flops / 1e9;
      console.log(`| ${label} | ${r.name} | ${k} | ${g.toFixed(3)} | ${m.stock.toFixed(0)} | ${m.fast.toFixed(0)} | ${(g / (m.stock / 1e3)).toFixed(2)} | ${(g / (m.fast / 1e3)).toFixed(2)} | ${(m.stock / m.fast).toFixed(1)}× |`);
    }
  }
  const t = await call<{ stock: number; fast: number; params: number; convFlops: number }>('benchTrainStep', net, 2);
  const g = t.convFlops / 1e9;
  console.log(`\nbenchmark net: ${f.length} stages, features ${f.join('-')}, patch ${P}³, batch ${B}, ${(t.params / 1e6).toFixed(2)} M parameters, ${g.toFixed(2)} GFLOP of 3×3×3 convs per step (${(g / (t.stock / 1e3)).toFixed(2)} GFLOP/s stock, ${(g / (t.fast / 1e3)).toFixed(2)} GFLOP/s fast)`);
  const errors = await call<string[]>('gpuErrors');
  if (errors.length || s.errors.length) throw new Error(`errors: ${[...errors, ...s.errors].join('\n')}`);
  console.log(`train step: stock ${t.stock.toFixed(0)} ms, fast ${t.fast.toFixed(0)} ms, speedup ${(t.stock / t.fast).toFixed(2)}×`);
} finally {
  await s.close();
}
