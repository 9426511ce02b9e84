// Training speed and memory on WebGPU in Chromium (SwiftShader here: a CPU emulating a GPU),
// through the app's train worker: tiny preset, batch 2, demo site A, with and without activation
// checkpointing. Peak bytes are tfjs' numBytes sampled after the forward pass and after the step.
import { build } from 'vite';
import { openApp } from '../src/node/app-session.ts';
import { preparedDemo } from '../test/browser/demo-pages.ts';
import type { HookedWindow } from '../src/ui/main.ts';

await build({ logLevel: 'warn' });
const s = await openApp({ webgpu: true });
try {
  const id = await preparedDemo(s.page, 0);
  console.log(
    '| patch (batch 2) | checkpointing | ms / iteration (median of 3 after 1 warm-up) | peak tf MiB |',
  );
  console.log('|---|---|---|---|');
  for (const patch of [8, 16, 24]) {
    for (const checkpointing of [false, true]) {
      const r = await s.page.evaluate(
        async ([datasetId, p, c]) => {
          const f = (window as unknown as HookedWindow).__fednnunet;
          const its: Array<{ ms: number; peak: number }> = [];
          await f.train.train(
            {
              datasetId,
              configuration: '3d_fullres',
              epochs: 1,
              itersPerEpoch: 4,
              valIters: 0,
              tiny: { patch: p },
              backend: 'webgpu',
              restart: true,
              checkpointing: c,
            },
            f.proxy((e) => {
              if (e.type === 'iteration') its.push({ ms: e.msPerIter, peak: e.peakBytes });
            }),
          );
          return its;
        },
        [id, patch, checkpointing] as const,
      );
      const ms = r
        .slice(1)
        .map((x) => x.ms)
        .sort((a, b) => a - b)[1];
      const peak = Math.max(...r.map((x) => x.peak)) / 2 ** 20;
      console.log(
        `| ${patch}³ | ${checkpointing ? 'on' : 'off'} | ${ms.toFixed(0)} | ${peak.toFixed(1)} |`,
      );
    }
  }
} finally {
  await s.close();
}
