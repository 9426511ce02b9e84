// Whole-case prediction in the browser's infer worker (Chromium; WebGPU is SwiftShader on a machine
// without a GPU): a 128×128×96 volume (x, y, z) with the tiny 3d network of bench/predict.bench.ts
// (3 stages, features 4/8/16, patch 64³, 18 tiles at step 0.5, no TTA) on onnxruntime-web WebGPU,
// onnxruntime-web wasm and tfjs WebGPU. Driven through the Predict tab (model folder and NIfTI
// picked with the file inputs); times are the worker's. Each engine gets a fresh browser; the first
// run includes session creation / shader compilation, the second reuses the cached network.
// BENCH_TFJS_DIMS=x,y,z times tfjs on a smaller volume (SwiftShader runs tfjs' shaders slowly);
// BENCH_ENGINES=onnx-webgpu,onnx-wasm,tfjs picks the engines (default all three).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'vite';
import { writeModelFolder } from '../src/node/model-folder-fs.ts';
import { writeNifti } from '../src/io/nifti-write.ts';
import { useBackend } from '../src/model/tf-backend.ts';
import { PlainConvUNet } from '../src/model/unet.ts';
import { openApp } from '../src/node/app-session.ts';
import { mulberry32 } from '../src/util/rng.ts';

import { architecture, patch } from './bench-net.ts';
import type { HookedWindow } from '../src/ui/main.ts';

const plans = {
  transpose_forward: [0, 1, 2],
  transpose_backward: [0, 1, 2],
  foreground_intensity_properties_per_channel: {
    '0': { mean: 0, std: 1, percentile_00_5: -1, percentile_99_5: 1 },
  },
  configurations: {
    '3d_fullres': {
      patch_size: patch,
      spacing: [1, 1, 1],
      normalization_schemes: ['ZScoreNormalization'],
      use_mask_for_norm: [false],
      resampling_fn_data_kwargs: { order: 3, order_z: 0, force_separate_z: null },
      resampling_fn_seg_kwargs: { order: 1, order_z: 0, force_separate_z: null },
      resampling_fn_probabilities_kwargs: { order: 1, order_z: 0, force_separate_z: null },
      architecture,
    },
  },
};
const datasetJson = {
  channel_names: { '0': 'T1' },
  labels: { background: 0, organ: 1, lesion: 2 },
  numTraining: 1,
  file_ending: '.nii.gz',
};

function volume(dims: [number, number, number]): Uint8Array {
  const n = dims[0] * dims[1] * dims[2];
  const data = new Int16Array(n);
  const r = mulberry32(3);
  for (let i = 0; i < n; i++) data[i] = Math.round(r() * 1000);
  return writeNifti({
    data,
    dims,
    channels: 1,
    spacing: [1, 1, 1],
    affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
    datatype: 'int16',
  });
}

await build({ logLevel: 'warn' });
await useBackend('cpu');
const work = mkdtempSync(join(tmpdir(), 'bench-predict-'));
const modelDir = join(work, 'BenchModel');
const net = PlainConvUNet.fromPlan(plans.configurations['3d_fullres'], 1, 3, { seed: 1 });
const weights = await net.namedWeights();
net.dispose();
await writeModelFolder(modelDir, { plans, datasetJson, configuration: '3d_fullres', weights });
const full: [number, number, number] = [128, 128, 96];
const tfjsDims = (process.env.BENCH_TFJS_DIMS?.split(',').map(Number) ?? full) as [
  number,
  number,
  number,
];
const vols = new Map<string, string>();
for (const d of [full, tfjsDims]) {
  const key = d.join('x');
  if (!vols.has(key)) {
    const p = join(work, `vol_${key}.nii`);
    writeFileSync(p, volume(d));
    vols.set(key, p);
  }
}

const rows: string[] = [];
try {
  const engines = process.env.BENCH_ENGINES?.split(',') ?? ['onnx-webgpu', 'onnx-wasm', 'tfjs'];
  for (const [backend, dims] of (
    [
      ['onnx-webgpu', full],
      ['onnx-wasm', full],
      ['tfjs', tfjsDims],
    ] as const
  ).filter(([b]) => engines.includes(b))) {
    const s = await openApp({ webgpu: true, path: '#predict' });
    try {
      await s.page.setInputFiles('#model-import-folder', modelDir);
      await s.page.waitForSelector('#model-status.ok');
      await s.page.setInputFiles('#scan-files', vols.get(dims.join('x'))!);
      await s.page.selectOption('#predict-backend', backend);
      const times: Array<{
        total: number;
        predict: number;
        preprocess: number;
        export: number;
        load: number;
        tiles: number;
        engine: string;
      }> = [];
      for (let rep = 0; rep < 2; rep++) {
        await s.page.click('#predict-run');
        await s.page.waitForFunction(
          () => {
            const st = document.querySelector('#predict-status') as HTMLElement | null;
            return st?.dataset.phase === 'done' || document.querySelector('#predict-error p');
          },
          undefined,
          { timeout: 1_800_000, polling: 1000 },
        );
        const err = await s.page.textContent('#predict-error');
        if (err) throw new Error(`${backend}: ${err}`);
        times.push(
          await s.page.evaluate(() => {
            const r = (window as unknown as HookedWindow).__fednnunet.predict.last()!;
            return { ...r.timingsMs, tiles: r.tiles, engine: r.engine };
          }),
        );
        await s.page.evaluate(() => {
          (document.querySelector('#predict-status') as HTMLElement).dataset.phase = '';
        });
      }
      const [a, b] = times;
      const f = (ms: number) => (ms / 1000).toFixed(2);
      rows.push(
        `| ${a.engine} | ${dims.join('×')} | ${a.tiles} | ${f(a.total)} | ${f(b.total)} | ${f(b.predict)} | ${(b.predict / a.tiles).toFixed(0)} | ${f(b.preprocess + b.export)} |`,
      );
      console.error(rows[rows.length - 1]);
    } finally {
      await s.close();
    }
  }
  console.log(
    'Chromium infer worker, no TTA, tiny net (3 stages, 4/8/16, patch 64³); times in s (per tile in ms).\n',
  );
  console.log(
    '| engine | volume (x×y×z) | tiles | first run, total | second run, total | second run, network | per tile (ms) | preprocess + export |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
} finally {
  rmSync(work, { recursive: true, force: true });
}
