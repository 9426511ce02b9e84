// `npm run bench mixed-precision`: peak memory and time of one training step (forward with deep
// supervision, DC+CE, gradients, SGD-Nesterov with clipping) in fp32 vs mixed precision (fp16
// storage of the saved activations, src/model/mixed-precision.ts, with GradScaler unscale and
// finite check), and mixed precision with activation checkpointing of every stage, on WebGPU in
// Node through Dawn (SwiftShader here). Each (net, variant) runs in its own process so tfjs'
// buffer pool starts empty. Printed per run:
//   peak tensor MiB (tf.profile: every tensor alive during the step, weights and momentum
//   included, kernel scratch buffers excluded), of which the step's own (peak − bytes before),
//   ms per step (median of 3 after a warm-up, without profiling; --timed=N times N steps instead).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Net {
  name: string;
  features: number[];
  patch: number;
  batch: number;
}
const NETS: Net[] = [
  { name: 'tiny preset', features: [8, 16, 32], patch: 16, batch: 2 },
  { name: 'medium', features: [16, 32, 64, 128], patch: 32, batch: 2 },
];

interface Result {
  peakBytes: number;
  stepBytes: number;
  ms: number[];
  adapter: string;
}

type Variant = 'fp32' | 'mixed' | 'mixed+checkpointing';
const VARIANTS: Variant[] = ['fp32', 'mixed', 'mixed+checkpointing'];

async function child(net: Net, variant: Variant, timed: number): Promise<Result> {
  const precision = variant === 'fp32' ? 'fp32' : 'mixed';
  const ckpt = variant === 'mixed+checkpointing';
  const { installNodeWebGPU } = await import('../src/node/webgpu.ts');
  const gpu = await installNodeWebGPU();
  const { useBackend, tf, assertNoGpuErrors } = await import('../src/model/tf-backend.ts');
  await useBackend('webgpu');
  const { CHECK_CONFIG } = await import('../src/train/gradient-check.ts');
  const { PlainConvUNet } = await import('../src/model/unet.ts');
  const { SGDNesterov } = await import('../src/train/optimizer.ts');
  const { GradScaler, unscaleAndCheck } = await import('../src/train/grad-scaler.ts');
  const { dcAndCeLoss, deepSupervisionLoss } = await import('../src/train/loss.ts');
  const { deepSupervisionTargets } = await import('../src/train/ds-targets.ts');
  const { randomArray } = await import('../src/util/rng.ts');
  const cfg = structuredClone(CHECK_CONFIG);
  cfg.patch_size = [net.patch, net.patch, net.patch];
  const a = cfg.architecture.arch_kwargs;
  a.n_stages = net.features.length;
  a.features_per_stage = [...net.features];
  a.kernel_sizes = net.features.map(() => [3, 3, 3]);
  a.strides = net.features.map((_, i) => (i === 0 ? [1, 1, 1] : [2, 2, 2]));
  a.n_conv_per_stage = net.features.map(() => 2);
  a.n_conv_per_stage_decoder = net.features.slice(1).map(() => 2);
  const m = PlainConvUNet.fromPlan(cfg as never, 1, 3, {
    seed: 1,
    precision,
    checkpointEncoder: net.features.map(() => ckpt),
    checkpointDecoder: net.features.slice(1).map(() => ckpt),
  });
  if (m.precisionInUse !== precision) throw new Error(`${precision} is not available here`);
  const opt = new SGDNesterov(tf, new Map(m.specs.map((p) => [p.name, m.variable(p.name)])), {
    lr: 1e-2,
  });
  const scaler = precision === 'mixed' ? new GradScaler() : null;
  const vox = net.patch ** 3;
  const shape = [net.patch, net.patch, net.patch];
  const x = tf.tensor(randomArray(net.batch * vox, 2), [net.batch, ...shape, 1]);
  const seg = Int8Array.from({ length: net.batch * vox }, (_, i) => (i * 7919) % 3);
  const ys = deepSupervisionTargets(seg, net.batch, shape, a.strides).map((t) =>
    tf.tensor(Int32Array.from(t.seg), [net.batch, ...t.shape], 'int32'),
  );
  const step = async (): Promise<number> => {
    const scale = scaler?.scale ?? 1;
    const { value, grads } = tf.variableGrads(() => {
      const l = deepSupervisionLoss(m.forward(x), ys, (o, t) =>
        dcAndCeLoss(o, t, { batchDice: false }),
      );
      return scaler ? tf.mul(l, scale) : l;
    }, m.variables);
    let byName = new Map<string, import('@tensorflow/tfjs').Tensor>();
    for (const p of m.specs) {
      const g = grads[m.variable(p.name).name];
      if (g) byName.set(p.name, g);
    }
    let stepped = true;
    if (scaler) {
      const u = unscaleAndCheck(tf, byName, scaler.invScale);
      byName = u.grads;
      stepped = scaler.update(!Number.isFinite((await u.probe.data())[0]));
      u.probe.dispose();
    }
    if (stepped) opt.step(byName).dispose();
    const loss = (await value.data())[0] / scale;
    tf.dispose([value, ...Object.values(grads)]);
    if (scaler) byName.forEach((g) => g.dispose());
    return loss;
  };
  await step(); // warm-up: pipelines compile
  const before = tf.memory().numBytes;
  const prof = await tf.profile(async () => tf.scalar(await step()));
  (prof.result as import('@tensorflow/tfjs').Tensor).dispose();
  const ms: number[] = [];
  for (let i = 0; i < timed; i++) {
    const t0 = performance.now();
    await step();
    ms.push(performance.now() - t0);
  }
  assertNoGpuErrors();
  return {
    peakBytes: prof.peakBytes,
    stepBytes: prof.peakBytes - before,
    ms,
    adapter: gpu.name + (gpu.software ? ' (software)' : ''),
  };
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  const net = NETS[Number(argv[1])];
  const r = await child(net, argv[2] as Variant, Number(argv[3]));
  console.log(`RESULT ${JSON.stringify(r)}`);
  process.exit(0);
}

const self = fileURLToPath(import.meta.url);
const MiB = (b: number) => (b / 2 ** 20).toFixed(1);
const median = (v: number[]) => [...v].sort((p, q) => p - q)[Math.floor(v.length / 2)];
// --nets=0,1 picks nets by index (default all).
const pick = argv.find((a) => a.startsWith('--nets='));
const chosen = pick ? pick.slice(7).split(',').map(Number) : NETS.map((_, i) => i);
// --variants=fp32,mixed picks variants (default all three).
const pickV = argv.find((a) => a.startsWith('--variants='));
const variants = pickV ? (pickV.slice(11).split(',') as Variant[]) : VARIANTS;
if (!variants.includes('fp32')) throw new Error('--variants: fp32 is the reference, keep it');
const timedArg = argv.find((a) => a.startsWith('--timed='));
const timed = timedArg ? Number(timedArg.slice(8)) : 3;
if (!(Number.isInteger(timed) && timed >= 1)) throw new Error(`--timed=N: N ≥ 1, got ${timedArg}`);
let adapter = '';
console.log(
  `| net | patch, batch | variant | peak tensor MiB (vs fp32) | of which the step (vs fp32) | ms/step (median of ${timed}) |`,
);
console.log('|---|---|---|---|---|---|');
for (const i of chosen) {
  const net = NETS[i];
  const res: Record<string, Result> = {};
  for (const variant of variants) {
    const p = spawnSync(
      process.execPath,
      ['--import', 'tsx', self, '--child', String(i), variant, String(timed)],
      { encoding: 'utf8', env: process.env, maxBuffer: 1 << 26 },
    );
    const line = p.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (p.status !== 0 || !line)
      throw new Error(`${net.name} ${variant} failed:\n${p.stdout}\n${p.stderr}`);
    res[variant] = JSON.parse(line.slice(7)) as Result;
    adapter = res[variant].adapter;
  }
  for (const variant of variants) {
    const r = res[variant];
    const f = res.fp32;
    console.log(
      `| ${net.name} ${net.features.join('-')} | ${net.patch}³, ${net.batch} | ${variant} | ${MiB(r.peakBytes)} (${((100 * r.peakBytes) / f.peakBytes).toFixed(0)} %) | ${MiB(r.stepBytes)} (${((100 * r.stepBytes) / f.stepBytes).toFixed(0)} %) | ${median(r.ms).toFixed(0)} |`,
    );
  }
}
console.log(`adapter: ${adapter}`);
