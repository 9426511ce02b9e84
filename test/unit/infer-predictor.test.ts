// The predictor glue (§8): preprocess → sliding window (tfjs or onnxruntime tiles, TTA) → export
// into the input's geometry. A single window over the padded volume must reproduce a direct
// full-volume forward pass; onnxruntime and tfjs tile predictors must agree on a multi-tile case.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logitsToSegmentation } from '../../src/infer/export.ts';
import { exportOnnx } from '../../src/infer/onnx-export.ts';
import { createOrtSession, ortTilePredictor } from '../../src/infer/ort.ts';
import {
  configurationInfo,
  nnunetResampleLogits,
  predictCase,
  tfjsTilePredictor,
  tileBatchForBudget,
  type PredictionContext,
} from '../../src/infer/predictor.ts';
import { padArray, paddingFor, unpadArray } from '../../src/infer/tiles.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { labelInfo } from '../../src/model/labels.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import type { Volume } from '../../src/io/volume.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { runCase } from '../../src/preprocess/preprocess.ts';
import { mulberry32 } from '../../src/util/rng.ts';
import { DATASET_JSON, randomizeWeights, relL2, tfForwardNC, tinyPlans } from './infer-helpers.ts';
import { twoStagePlans } from './helpers/tiny-model.ts';

const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-predictor-'));
const models: PlainConvUNet[] = [];
beforeAll(async () => {
  await useBackend('cpu');
});
afterAll(() => {
  models.forEach((m) => m.dispose());
  rmSync(tmp, { recursive: true, force: true });
});

/** A float image, nonzero only inside a box (so cropping happens), on an oblique affine, via a real NIfTI round trip. */
function phantom(
  dims: [number, number, number],
  spacing: [number, number, number],
  seed: number,
): Volume {
  const [nx, ny, nz] = dims;
  const rnd = mulberry32(seed);
  const data = new Float32Array(nx * ny * nz);
  for (let z = 0; z < nz; z++)
    for (let y = 0; y < ny; y++)
      for (let x = 0; x < nx; x++) {
        const inside = x >= 2 && x < nx - 1 && y >= 1 && y < ny - 2 && z >= 1 && z < nz;
        const blob =
          Math.hypot((x - nx / 2) / nx, (y - ny / 2) / ny, (z - nz / 2) / nz) < 0.3 ? 1.5 : 0;
        data[x + nx * (y + ny * z)] = inside ? 0.2 + blob + 0.3 * rnd() : 0;
      }
  const c = Math.cos(0.3),
    s = Math.sin(0.3);
  const affine = [
    c * spacing[0],
    -s * spacing[1],
    0,
    -12.5,
    s * spacing[0],
    c * spacing[1],
    0,
    40,
    0,
    0,
    -spacing[2],
    7.25,
    0,
    0,
    0,
    1,
  ];
  const v: Volume = { data, dims, channels: 1, spacing, affine, datatype: 'float32' };
  return readNifti(writeNifti(v), 'phantom.nii');
}

async function tinyModel(ctx: PredictionContext, seed: number): Promise<PlainConvUNet> {
  const cfg = ctx.plans.configurations[ctx.configuration] as Parameters<
    typeof PlainConvUNet.fromPlan
  >[0];
  const m = PlainConvUNet.fromPlan(cfg, 1, labelInfo(ctx.datasetJson).numSegmentationHeads, {
    seed,
  });
  models.push(m);
  await randomizeWeights(m, seed + 100);
  return m;
}

/** Direct forward on the preprocessed case padded to the patch (the whole volume as one input). */
async function directLogits(model: PlainConvUNet, image: Volume, ctx: PredictionContext) {
  const pre = runCase(image, null, ctx.plans, ctx.configuration, ctx.datasetJson, {
    classLocations: false,
  });
  const { patch } = configurationInfo(ctx.plans, ctx.configuration);
  const pad = paddingFor(pre.shape, patch);
  const x = padArray(pre.data, pre.shape, pad);
  const K = model.arch.numClasses;
  let y: Float32Array;
  let yShape: number[];
  if (patch.length === 3) {
    y = await tfForwardNC(model, x, [1, ...pad.shape]);
    yShape = [K, ...pad.shape.slice(1)];
  } else {
    // 2d: every slice of axis 0 is one batch entry; (Z, K, Y, X) → (K, Z, Y, X).
    const [, Z, Y, X] = pad.shape;
    const out = await tfForwardNC(model, x, [Z, 1, Y, X]);
    y = new Float32Array(out.length);
    for (let z = 0; z < Z; z++)
      for (let k = 0; k < K; k++)
        y.set(out.subarray((z * K + k) * Y * X, (z * K + k + 1) * Y * X), (k * Z + z) * Y * X);
    yShape = [K, Z, Y, X];
  }
  const logits = unpadArray(y, yShape, [[0, K], pad.slicer[1], pad.slicer[2], pad.slicer[3]]);
  return { logits, shape: [K, ...pre.shape.slice(1)], pre };
}

function expectSameGeometry(out: Volume, input: Volume): void {
  expect(out.dims).toEqual(input.dims);
  expect(out.affine).toEqual(input.affine);
  expect(out.spacing).toEqual(input.spacing);
  expect(out.channels).toBe(1);
}

describe('predictCase', () => {
  const cases = [
    {
      name: '3d, resampled, transposed',
      dims: [20, 18, 10] as [number, number, number],
      spacing: [1, 1, 2.5] as [number, number, number],
      patch: [16, 16, 16],
      cfgSpacing: [2, 1.25, 1.25],
      tf: [0, 2, 1],
    },
    {
      name: '3d, separate-z (anisotropic) resampling',
      dims: [15, 13, 6] as [number, number, number],
      spacing: [1, 1, 4] as [number, number, number],
      patch: [8, 16, 16],
      cfgSpacing: [4, 1, 1.25],
      tf: [0, 1, 2],
    },
    {
      name: '2d',
      dims: [18, 14, 5] as [number, number, number],
      spacing: [0.8, 0.8, 3] as [number, number, number],
      patch: [16, 16],
      cfgSpacing: [1, 1],
      tf: [0, 1, 2],
    },
  ];
  for (const c of cases) {
    it(`${c.name}: one window over the padded volume equals a direct full-volume forward pass`, async () => {
      const strides =
        c.patch.length === 3
          ? [
              [1, 1, 1],
              [2, 2, 2],
              [2, 2, 2],
            ]
          : [
              [1, 1],
              [2, 2],
              [2, 2],
            ];
      const { plans, configuration } = tinyPlans({
        patch: c.patch,
        spacing: c.cfgSpacing,
        strides,
        transposeForward: c.tf,
      });
      const ctx: PredictionContext = { plans, configuration, datasetJson: DATASET_JSON };
      const model = await tinyModel(ctx, 5);
      const image = phantom(c.dims, c.spacing, 3);
      const res = await predictCase(image, ctx, tfjsTilePredictor(model, c.patch), {
        returnLogits: true,
      });
      const direct = await directLogits(model, image, ctx);
      expect(res.preprocessedShape).toEqual(direct.pre.shape);
      expect(
        res.preprocessedShape
          .slice(1)
          .every((s, i) => s <= (c.patch.length === 3 ? c.patch[i] : [Infinity, ...c.patch][i])),
      ).toBe(true);
      expect(res.logits!.shape).toEqual(direct.shape);
      const err = relL2(res.logits!.data, direct.logits);
      expect(err).toBeLessThan(1e-6);
      const { config } = configurationInfo(plans, configuration);
      const expected = logitsToSegmentation(direct.logits, direct.shape, direct.pre.properties, {
        configSpacing: config.spacing,
        transposeForward: plans.transpose_forward,
        transposeBackward: plans.transpose_backward,
        resample: nnunetResampleLogits(config.resampling_fn_probabilities_kwargs),
      });
      expect(res.segmentation.data).toEqual(expected.data);
      expectSameGeometry(res.segmentation, image);
      const counts = [0, 0, 0];
      for (const v of res.segmentation.data) counts[v]++;
      console.log(
        `${c.name}: preprocessed ${res.preprocessedShape.join('x')}, logits rel. L2 vs direct ${err.toExponential(2)}, label counts ${counts}`,
      );
      // Outside the nonzero crop box the prediction is background (x < 2 is outside).
      const [nx, ny, nz] = c.dims;
      for (let z = 0; z < nz; z++)
        for (let y = 0; y < ny; y++) expect(res.segmentation.data[nx * (y + ny * z)]).toBe(0);
    });
  }

  it('onnxruntime (node, wasm) and tfjs tile predictors agree on a multi-tile case with TTA', async () => {
    const { plans, configuration } = tinyPlans({
      patch: [8, 8, 8],
      spacing: [2, 1.25, 1.25],
      strides: [
        [1, 1, 1],
        [2, 2, 2],
        [1, 2, 2],
      ],
    });
    const ctx: PredictionContext = { plans, configuration, datasetJson: DATASET_JSON };
    const model = await tinyModel(ctx, 9);
    const image = phantom([20, 18, 10], [1, 1, 2.5], 4);
    let tiles = 0;
    const ref = await predictCase(image, ctx, tfjsTilePredictor(model, [8, 8, 8]), {
      tta: true,
      tileBatch: 3,
      returnLogits: true,
      onProgress: (_d, t) => (tiles = t),
    });
    expect(tiles).toBeGreaterThan(4);
    const bytes = await exportOnnx(model);
    for (const backend of ['ort-node', 'ort-wasm'] as const) {
      const s = await createOrtSession(bytes, { backend, numThreads: 1 });
      const res = await predictCase(image, ctx, ortTilePredictor(s, [8, 8, 8], 1, 2), {
        tta: true,
        tileBatch: 3,
        returnLogits: true,
      });
      await s.release();
      const err = relL2(res.logits!.data, ref.logits!.data);
      let diff = 0;
      for (let i = 0; i < ref.segmentation.data.length; i++)
        if (res.segmentation.data[i] !== ref.segmentation.data[i]) diff++;
      console.log(
        `${backend} vs tfjs, ${tiles} tiles × 8 mirrorings: logits rel. L2 ${err.toExponential(2)}, ${diff} differing labels`,
      );
      expect(err).toBeLessThan(1e-5);
      expect(diff).toBe(0);
    }
    // TTA changes the result (it is actually applied).
    const plain = await predictCase(image, ctx, tfjsTilePredictor(model, [8, 8, 8]), {
      returnLogits: true,
    });
    expect(relL2(plain.logits!.data, ref.logits!.data)).toBeGreaterThan(1e-3);
  });

  it('the written label map has the input header geometry (our reader, and nibabel when present)', async () => {
    const { plans, configuration } = tinyPlans({
      patch: [16, 16, 16],
      spacing: [2, 1.25, 1.25],
      strides: [
        [1, 1, 1],
        [2, 2, 2],
        [2, 2, 2],
      ],
    });
    const ctx: PredictionContext = { plans, configuration, datasetJson: DATASET_JSON };
    const model = await tinyModel(ctx, 11);
    const image = phantom([20, 18, 10], [1, 1, 2.5], 5);
    const res = await predictCase(image, ctx, tfjsTilePredictor(model, [16, 16, 16]));
    const inPath = join(tmp, 'img.nii.gz');
    const outPath = join(tmp, 'seg.nii.gz');
    writeFileSync(inPath, writeNifti(image, { gzip: true }));
    writeFileSync(outPath, writeNifti(res.segmentation, { gzip: true }));
    const back = readNifti(writeNifti(res.segmentation, { gzip: true }), 'seg');
    expectSameGeometry(back, image);
    expect(back.datatype).toBe('uint8');
    expect(back.data).toEqual(res.segmentation.data);
    const py = spawnSync(
      '/usr/bin/python3',
      [
        '-c',
        [
          'import sys, json, nibabel as nib, numpy as np',
          'a = nib.load(sys.argv[1]); b = nib.load(sys.argv[2])',
          'print(json.dumps({"shape": [list(a.shape), list(b.shape)], "affine": bool(np.allclose(a.affine, b.affine, atol=1e-6)), "dtype": str(b.get_data_dtype()), "max": int(np.asarray(b.dataobj).max())}))',
        ].join('\n'),
        inPath,
        outPath,
      ],
      { encoding: 'utf8' },
    );
    if (py.status !== 0) {
      console.log(`nibabel check skipped: ${py.stderr.trim().split('\n').pop()}`);
      return;
    }
    const r = JSON.parse(py.stdout) as {
      shape: number[][];
      affine: boolean;
      dtype: string;
      max: number;
    };
    expect(r.shape[1]).toEqual(r.shape[0]);
    expect(r.affine).toBe(true);
    expect(r.dtype).toBe('uint8');
  });

  it('rejects an image with the wrong number of channels', async () => {
    const { plans, configuration } = twoStagePlans();
    const two = [phantom([8, 8, 8], [1, 1, 1], 1), phantom([8, 8, 8], [1, 1, 1], 2)];
    await expect(
      predictCase(
        two,
        { plans, configuration, datasetJson: DATASET_JSON },
        async () => new Float32Array(0),
      ),
    ).rejects.toThrow(/expects 1 input channel/);
  });
});

describe('predictor helpers', () => {
  it('logits are resampled with nearest along a separate z axis (order_z 0) and linearly in-plane', () => {
    // K=1, (Z, Y, X) = (2, 1, 2) at spacing (4, 1, 1) → (8, 1, 4) at (1, 1, 0.5): z nearest, x linear.
    const r = nnunetResampleLogits({ order: 1, order_z: 0, force_separate_z: null });
    const out = r(
      Float32Array.from([0, 1, 10, 11]),
      [1, 2, 1, 2],
      [8, 1, 4],
      [4, 1, 1],
      [1, 1, 0.5],
    );
    const zValues = new Set<number>();
    for (let z = 0; z < 8; z++) zValues.add(out[z * 4]);
    expect([...zValues].sort((a, b) => a - b)).toEqual([0, 10]);
    expect(Array.from(out.subarray(0, 4))).toEqual([0, 0.25, 0.75, 1]);
  });

  it('labelInfo follows LabelManager: heads incl. background, or regions', () => {
    expect(labelInfo(DATASET_JSON)).toMatchObject({
      numSegmentationHeads: 3,
      foreground: [1, 2],
      hasRegions: false,
    });
    const r = labelInfo({
      labels: { background: 0, whole: [1, 2], core: 2, ignore: 3 },
      regions_class_order: [1, 2],
    });
    expect(r).toMatchObject({
      numSegmentationHeads: 2,
      foreground: [[1, 2], [2]],
      regionsClassOrder: [1, 2],
      ignoreLabel: 3,
    });
  });

  it('tileBatchForBudget: at least 1, and grows as the budget does', () => {
    const model = PlainConvUNet.fromPlan(
      tinyPlans({
        patch: [16, 16, 16],
        spacing: [1, 1, 1],
        strides: [
          [1, 1, 1],
          [2, 2, 2],
          [2, 2, 2],
        ],
      }).plans.configurations['3d_fullres'] as Parameters<typeof PlainConvUNet.fromPlan>[0],
      1,
      3,
    );
    models.push(model);
    const small = tileBatchForBudget(model.arch, [16, 16, 16], 1);
    const big = tileBatchForBudget(model.arch, [16, 16, 16], 64);
    expect(small).toBeGreaterThanOrEqual(1);
    expect(big).toBeGreaterThan(small);
    expect(tileBatchForBudget(model.arch, [128, 128, 128], 1)).toBe(1);
  });
});
