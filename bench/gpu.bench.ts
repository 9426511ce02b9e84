// `npm run bench gpu [-- --quick] [-- --pack DIR]`: our WebGPU training (fast kernels) in Node
// through Dawn, on whatever adapter Dawn finds (a real GPU, or SwiftShader here), beside PyTorch
// on the same network, patch and batch (CUDA where present, else CPU; through /usr/bin/python3 or
// python3, skipped with the reason when torch is missing). Per size it prints
//   train step <name>: webgpu X ms, pytorch Y ms (<device>), ratio R
// with the peak memory of each; then per kernel (each pass of the 801 net's encoder convolutions,
// every variant we have on this device)
//   kernel <stage> <shape> <pass>: webgpu X ms (<fastest variant>; …), G GFLOP/s, pytorch Y ms (<device>), ratio R
// and a forward-only sliding-window inference of a 128³ volume (64³ with --quick).
// Sizes: the kernels benchmark net, the tiny preset, nnU-Net's unmodified 3d_fullres plan of 801
// at its patch (--quick: on a small patch, as a CPU adapter needs minutes per step).
// --pack DIR writes a folder that runs all this on a machine with no Node and no network
// (scripts/pack-gpu-bench.mjs). PyTorch's loss is cross-entropy on every head instead of DC+CE
// (the cost is the network's); the WebGPU step includes the SGD update and reading the loss back.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { openKernelsNode } from '../test/kernels/open-node.ts';
import type { BenchNet, ConvCase } from '../test/kernels/kernel-suite.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const here = dirname(fileURLToPath(import.meta.url));
// In the packed folder the plan and the PyTorch script lie beside the bundle.
const asset = (name: string, repoPath: string) =>
  existsSync(join(here, name)) ? join(here, name) : join(here, '..', repoPath);

interface Plan {
  configurations: Record<
    string,
    {
      patch_size: number[];
      batch_size: number;
      architecture: {
        arch_kwargs: {
          features_per_stage: number[];
          strides: number[][];
          kernel_sizes: number[][];
        };
      };
    }
  >;
}
const plan801 = (
  JSON.parse(
    readFileSync(
      asset('plan801.json', 'test/reference/plans/Dataset801_PhantomMR/nnUNetPlans.json'),
      'utf8',
    ),
  ) as Plan
).configurations['3d_fullres'];
const k801 = plan801.architecture.arch_kwargs;
const isPlain =
  k801.strides.every((s, i) => s.every((v) => v === (i === 0 ? 1 : 2))) &&
  k801.kernel_sizes.every((k) => k.every((v) => v === 3));
if (!isPlain) throw new Error('the 801 plan no longer has 3³ kernels and strides 1,2,2…');

const V = (p: number[]) => p as [number, number, number];
const sizes: Array<{ name: string; net: BenchNet; steps: number }> = [
  {
    name: 'kernels benchmark net (8-16-32-64, 16³, batch 2)',
    net: { patch: [16, 16, 16], batch: 2, features: [8, 16, 32, 64] },
    steps: 3,
  },
  {
    name: 'tiny preset (8-16-32, 24³, batch 2)',
    net: { patch: [24, 24, 24], batch: 2, features: [8, 16, 32] },
    steps: 3,
  },
  quick
    ? {
        name: `801 3d_fullres (${k801.features_per_stage.join('-')}) on 16×16×32, batch 1 (--quick)`,
        net: { patch: [16, 16, 32], batch: 1, features: k801.features_per_stage },
        steps: 2,
      }
    : {
        name: `801 3d_fullres (${k801.features_per_stage.join('-')}) at its patch ${plan801.patch_size.join('×')}, batch ${plan801.batch_size}`,
        net: {
          patch: V(plan801.patch_size),
          batch: plan801.batch_size,
          features: k801.features_per_stage,
        },
        steps: 4,
      },
];

const python = ['/usr/bin/python3', 'python3'].find(
  (p) => spawnSync(p, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0,
);
function torch(
  req: string[],
): { ok: true; r: Record<string, unknown> } | { ok: false; why: string } {
  if (!python) return { ok: false, why: 'no python3 with torch here' };
  const r = spawnSync(
    python,
    [asset('torch_reference.py', 'bench/torch_reference.py'), '--gpu-bench', ...req],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  if (r.status !== 0)
    return { ok: false, why: (r.stderr || String(r.error)).trim().split('\n').pop() ?? '' };
  return { ok: true, r: JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown> };
}

const mib = (b: number | null | undefined) =>
  typeof b === 'number' ? `${(b / 2 ** 20).toFixed(0)} MiB` : 'n/a';

const k = await openKernelsNode();
await k.call('init');
console.log(
  `WebGPU in Node (Dawn), adapter: ${k.gpu.name}${k.gpu.software ? ' — a software adapter (CPU): no measure of a GPU' : ''}; ${quick ? 'quick sizes' : 'full sizes'}; median of the steps after the first.\n`,
);
const failures: string[] = [];
for (const s of sizes) {
  let line: string;
  try {
    const w = await k.call('gpuTrainStep', s.net, s.steps);
    const t = torch([
      'train',
      s.net.features.join('-'),
      ...s.net.patch.map(String),
      String(s.net.batch),
      String(s.steps),
    ]);
    const py = t.ok ? (t.r as { ms: number; device: string; peakBytes: number | null }) : undefined;
    line =
      `train step ${s.name}: webgpu ${w.ms.toFixed(0)} ms, ` +
      (py
        ? `pytorch ${py.ms.toFixed(0)} ms (${py.device}), ratio ${(py.ms / w.ms).toFixed(2)}`
        : `pytorch skipped (${t.ok ? '' : t.why})`) +
      `; ${(w.params / 1e6).toFixed(2)} M parameters; peak memory webgpu ${mib(w.peakBytes)} (live tensors), pytorch ${mib(py?.peakBytes)}; losses ${w.losses.map((l) => l.toFixed(4)).join(', ')}`;
    if (!w.losses.every(Number.isFinite)) failures.push(`${s.name}: non-finite loss`);
  } catch (e) {
    line = `train step ${s.name}: failed: ${String(e).slice(0, 300)}`;
    failures.push(line);
  }
  console.log(line);
}

// Per kernel: each pass of the 801 net's encoder convolutions (every stage's stride-1 conv and
// stride-2 downsampling, at the training step's sizes: its patch, or --quick's), every variant we
// have on this device, beside PyTorch's same convolution (cuDNN on CUDA). The stride-2 convs run
// as the U-Net runs them: 'valid' on an input padded by one (conv.ts), PyTorch on the same input.
const kNet = sizes[2].net;
const spatialAt = (i: number) => kNet.patch.map((p) => p / 2 ** i) as [number, number, number];
const convCases: Array<[string, ConvCase]> = [];
k801.features_per_stage.forEach((f, i) => {
  const k3: [number, number, number] = [3, 3, 3];
  if (i > 0)
    convCases.push([
      `stage ${i} down`,
      {
        batch: kNet.batch,
        spatial: spatialAt(i - 1).map((v) => v + 1) as [number, number, number],
        cin: k801.features_per_stage[i - 1],
        cout: f,
        kernel: k3,
        strides: [2, 2, 2],
        pad: 'valid',
      },
    ]);
  convCases.push([
    `stage ${i} conv`,
    {
      batch: kNet.batch,
      spatial: spatialAt(i),
      cin: f,
      cout: f,
      kernel: k3,
      strides: [1, 1, 1],
      pad: 'same',
    },
  ]);
});
const tuning = await k.call('convTuning');
console.log(
  `\nconv variants on this adapter: ${tuning ? `${JSON.stringify(tuning.choice)}, reduce ${tuning.reduce} (${tuning.source})` : 'unknown'}` +
    (tuning && 'ms' in tuning && tuning.ms ? `; autotune ms ${JSON.stringify(tuning.ms)}` : ''),
);
for (const [label, c] of convCases) {
  try {
    const r = await k.call('gpuConvPasses', c, quick ? 3 : 5);
    const t = torch([
      'conv',
      `${c.cin}-${c.cout}`,
      String(c.batch),
      ...c.spatial.map(String),
      ...c.kernel.map(String),
      ...c.strides.map(String),
      c.pad === 'same' ? '1' : '0',
      quick ? '3' : '5',
    ]);
    const py = t.ok ? (t.r as { ms: Record<string, number>; device: string }) : undefined;
    for (const p of ['forward', 'dx', 'dw'] as const) {
      const vs = Object.entries(r.ms[p]) as Array<[string, number]>;
      const [bestV, best] = vs.reduce((a, b) => (b[1] < a[1] ? b : a));
      const pm = py?.ms[p];
      console.log(
        `kernel ${label} ${r.name} ${p}: webgpu ${best.toFixed(2)} ms (${bestV}; ${vs.map(([v, m]) => `${v} ${m.toFixed(2)}`).join(', ')}), ${(r.flops / 1e9 / (best / 1e3)).toFixed(1)} GFLOP/s, ` +
          (pm !== undefined
            ? `pytorch ${pm.toFixed(2)} ms (${py!.device}), ratio ${(pm / best).toFixed(2)}`
            : `pytorch skipped (${t.ok ? '' : t.why})`),
      );
    }
  } catch (e) {
    const line = `kernel ${label}: failed: ${String(e).slice(0, 300)}`;
    failures.push(line);
    console.log(line);
  }
}

// Forward-only sliding window: the 801 plan's net on its patch over 128³, or (--quick) the tiny
// preset's net on its 32³ patch over 64³ (27 tiles): on SwiftShader one 32³ tile takes seconds,
// so 128³'s 343 tiles alone would take 20+ minutes.
const inf = quick
  ? { name: 'tiny preset net, patch 32³', features: [8, 16, 32], patch: V([32, 32, 32]), side: 64 }
  : {
      name: `801 3d_fullres net, patch ${plan801.patch_size.join('×')}`,
      features: k801.features_per_stage,
      patch: V(plan801.patch_size),
      side: 128,
    };
try {
  const vol = V([inf.side, inf.side, inf.side]);
  const w = await k.call('gpuSlidingWindow', inf.features, inf.patch, vol);
  // torch_reference.py's sliding window takes a cubic patch: the largest side.
  const t = torch([
    'predict',
    inf.features.join('-'),
    String(Math.max(...inf.patch)),
    ...vol.map(String),
  ]);
  const py = t.ok ? (t.r as { seconds: number; device: string }) : undefined;
  console.log(
    `\ninference ${inf.side}³ (${inf.name}, ${w.tiles} tiles, step 0.5): webgpu ${w.seconds.toFixed(2)} s, ` +
      (py
        ? `pytorch ${py.seconds.toFixed(2)} s (${py.device}, cubic ${Math.max(...inf.patch)}³ tiles)`
        : `pytorch skipped (${t.ok ? '' : t.why})`),
  );
} catch (e) {
  failures.push(`inference: ${String(e).slice(0, 300)}`);
  console.log(`inference ${inf.side}³: failed: ${String(e).slice(0, 300)}`);
}
const gpuErrors = await k.call('gpuErrors');
if (gpuErrors.length) failures.push(`WebGPU errors: ${gpuErrors.join('; ').slice(0, 500)}`);
if (failures.length) {
  console.error(`\n${failures.length} failure(s):\n${failures.join('\n')}`);
  process.exit(1);
}
process.exit(0);
