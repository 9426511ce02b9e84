// GPU memory of a training step in this implementation, as the planner needs it: the peak bytes
// of tensors alive during one step (tf.profile, engine-level: every tensor tfjs allocates, kernel
// scratch buffers excluded) divided by nnU-Net's VRAM estimate (conv output elements × batch, the
// quantity the planner budgets). Networks: the tiny preset (3 stages, 8/16/32) at 16³ and 24³
// and a 4-stage 8-16-32-64 net at 16³, batch 2; activation checkpointing off and on; on
// WebGPU (fast kernels) in Chromium and on the cpu backend there for comparison.
import { openKernelsPage } from '../test/pages/kernels/open-page.ts';
import type { BenchNet } from '../test/kernels/kernel-suite.ts';

const NETS: BenchNet[] = [
  { patch: [16, 16, 16], batch: 2, features: [8, 16, 32] },
  { patch: [24, 24, 24], batch: 2, features: [8, 16, 32] },
  { patch: [16, 16, 16], batch: 2, features: [8, 16, 32, 64] },
];

const s = await openKernelsPage();
const call = s.call;
try {
  await call('init');
  console.log(
    '| net | patch, batch | backend | checkpointing | peak MiB | estimate elements (M) | bytes per element |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const n of NETS) {
    for (const [backend, fast] of [
      ['webgpu', true],
      ['cpu', false],
    ] as const) {
      for (const ckpt of [false, true]) {
        const r = await call('stepPeak', n, backend, fast, ckpt);
        console.log(
          `| ${n.features.join('-')} | ${n.patch[0]}³, ${n.batch} | ${backend}${fast ? ' (fast kernels)' : ''} | ${ckpt ? 'on' : 'off'} | ${(r.peakBytes / 2 ** 20).toFixed(1)} | ${(r.elements / 1e6).toFixed(2)} | ${r.bytesPerElement.toFixed(1)} |`,
        );
      }
    }
  }
  const errors = await call('gpuErrors');
  if (errors.length || s.errors.length)
    throw new Error(`errors: ${[...errors, ...s.errors].join('\n')}`);
} finally {
  await s.close();
}
