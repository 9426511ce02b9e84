// Whole-case prediction time in Node for a 128×128×96 volume (x, y, z) with a tiny 3d network
// (3 stages, features 4/8/16, patch 64³, 18 tiles at step 0.5, no TTA): tfjs cpu backend vs
// onnxruntime-node (CPU EP) vs onnxruntime-web's wasm backend (Node build). The configuration
// spacing equals the image spacing, so preprocessing is crop + z-score only.
import { buildOnnxModel } from '../src/infer/onnx-export.ts';
import { createOrtSession, ortTilePredictor } from '../src/infer/ort.ts';
import {
  predictCase,
  tfjsTilePredictor,
  tileBatchForBudget,
  type PredictorPlans,
} from '../src/infer/predictor.ts';
import type { Volume } from '../src/io/volume.ts';
import { useBackend } from '../src/model/tf-backend.ts';
import { PlainConvUNet } from '../src/model/unet.ts';
import { randomArray } from '../src/util/rng.ts';

import { architecture, patch } from './bench-net.ts';

const plans: PredictorPlans = {
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
      resampling_fn_probabilities_kwargs: { order: 1, order_z: 0, force_separate_z: null },
      architecture,
    },
  },
};
const datasetJson = { channel_names: { '0': 'MR' }, labels: { background: 0, a: 1, b: 2 } };
const ctx = { plans, configuration: '3d_fullres', datasetJson };
const dims: [number, number, number] = [128, 128, 96];
const image: Volume = {
  data: randomArray(dims[0] * dims[1] * dims[2], 1, 0.5, 1.5),
  dims,
  channels: 1,
  spacing: [1, 1, 1],
  affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
  datatype: 'float32',
};

await useBackend('cpu');
const model = PlainConvUNet.fromPlan(plans.configurations['3d_fullres'] as never, 1, 3, {
  seed: 1,
  deepSupervision: false,
});
const onnx = buildOnnxModel(model.arch, await model.namedWeights());

console.log(
  `volume ${dims.join('×')} (x, y, z), patch ${patch.join('×')}, net 3 stages 4/8/16 (${model.parameterCount()} parameters), ONNX ${(onnx.length / 1024).toFixed(0)} KiB\n`,
);
console.log('| backend | tiles | tiles/run | predict (s) | total incl. preprocess + export (s) |');
console.log('|---|---|---|---|---|');
const row = async (
  name: string,
  predictTiles: Parameters<typeof predictCase>[2],
  tileBatch: number,
) => {
  let tiles = 0;
  const t0 = performance.now();
  const r = await predictCase(image, ctx, predictTiles, {
    tileBatch,
    onProgress: (_d, t) => (tiles = t),
  });
  const total = (performance.now() - t0) / 1000;
  console.log(
    `| ${name} | ${tiles} | ${tileBatch} | ${(r.timingsMs.predict / 1000).toFixed(2)} | ${total.toFixed(2)} |`,
  );
};
await row('tfjs cpu', tfjsTilePredictor(model, patch), tileBatchForBudget(model.arch, patch));
for (const backend of ['ort-node', 'ort-wasm'] as const) {
  for (const numThreads of [1, undefined]) {
    const s = await createOrtSession(onnx, { backend, numThreads });
    await row(`${backend} (${numThreads ?? 'default'} threads)`, ortTilePredictor(s, patch, 1), 2);
    await s.release();
  }
}
model.dispose();
