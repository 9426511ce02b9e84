// The exported ONNX U-Net on onnxruntime-web's WebGPU EP in Chromium (SwiftShader without a GPU):
// outputs match the tfjs cpu forward in Node, and every float op runs on WebGPU (only the int64
// shape arithmetic of the depth-to-space, which ORT keeps on the CPU anyway, falls back).
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOnnxModel } from '../../src/infer/onnx-export.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { launchChromium, type LaunchedBrowser } from '../../src/node/chromium.ts';
import { serveStatic, type RunningServer } from '../../src/node/static-server.ts';
import {
  randomArray,
  randomizeWeights,
  relL2,
  tfForwardNC,
  tinyConfig,
} from '../unit/infer-helpers.ts';

const ORT_FILES = [
  'ort.webgpu.bundle.min.mjs',
  'ort-wasm-simd-threaded.asyncify.mjs',
  'ort-wasm-simd-threaded.asyncify.wasm',
  'ort-wasm-simd-threaded.jsep.mjs',
  'ort-wasm-simd-threaded.jsep.wasm',
  'ort-wasm-simd-threaded.mjs',
  'ort-wasm-simd-threaded.wasm',
];
const CASES = [
  {
    name: '3d, anisotropic [1,2,2] stride',
    dims: 3 as const,
    strides: [
      [1, 1, 1],
      [2, 2, 2],
      [1, 2, 2],
    ],
    shape: [2, 1, 8, 16, 12],
  },
  {
    name: '2d, [2,1] stride',
    dims: 2 as const,
    strides: [
      [1, 1],
      [2, 2],
      [2, 1],
    ],
    shape: [3, 1, 16, 12],
  },
];

describe('exported ONNX model on onnxruntime-web WebGPU', () => {
  const root = mkdtempSync(join(tmpdir(), 'fednnunet-onnx-webgpu-'));
  const expected: Float32Array[] = [];
  let server: RunningServer;
  let browser: LaunchedBrowser;
  beforeAll(async () => {
    await useBackend('cpu');
    for (const f of ORT_FILES)
      copyFileSync(join('node_modules/onnxruntime-web/dist', f), join(root, f));
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>onnx webgpu</title>');
    for (const [i, c] of CASES.entries()) {
      const m = PlainConvUNet.fromPlan(tinyConfig(c.dims, c.strides), 1, 3, { seed: 1 });
      await randomizeWeights(m, 7);
      const x = randomArray(
        c.shape.reduce((a, b) => a * b, 1),
        11,
      );
      expected.push(await tfForwardNC(m, x, c.shape));
      writeFileSync(join(root, `m${i}.onnx`), buildOnnxModel(m.arch, await m.namedWeights()));
      writeFileSync(join(root, `x${i}.bin`), new Uint8Array(x.buffer));
      m.dispose();
    }
    server = await serveStatic(root);
    browser = await launchChromium({ webgpu: true });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  for (const [i, c] of CASES.entries()) {
    it(`${c.name}: matches tfjs cpu (rel. L2 < 1e-4), float ops on WebGPU`, async () => {
      const page = await browser.newPage();
      const logs: string[] = [];
      page.on('console', (m) => logs.push(m.text()));
      await page.goto(`${server.url}/index.html`);
      const out = await page.evaluate(
        async ({ i, shape }) => {
          const adapter = await navigator.gpu?.requestAdapter();
          // Through Function: vitest rewrites a literal import() in this function's source.
          const load = new Function('u', 'return import(u)') as (
            u: string,
          ) => Promise<typeof import('onnxruntime-web')>;
          const ort = await load('/ort.webgpu.bundle.min.mjs');
          ort.env.wasm.numThreads = 1;
          const model = new Uint8Array(await (await fetch(`/m${i}.onnx`)).arrayBuffer());
          const x = new Float32Array(await (await fetch(`/x${i}.bin`)).arrayBuffer());
          // Info-level logs name every node the WebGPU EP has no kernel for.
          const s = await ort.InferenceSession.create(model, {
            executionProviders: ['webgpu'],
            logSeverityLevel: 1,
          });
          const r = await s.run({ input: new ort.Tensor('float32', x, shape) });
          const y = Array.from((await r.logits.getData()) as Float32Array);
          await s.release();
          return { y, dims: r.logits.dims as number[], adapter: !!adapter };
        },
        { i, shape: c.shape },
      );
      await page.close();
      expect(out.adapter).toBe(true);
      expect(out.dims).toEqual([c.shape[0], 3, ...c.shape.slice(2)]);
      const err = relL2(out.y, expected[i]);
      console.log(`${c.name}: WebGPU vs tfjs cpu rel. L2 ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-4);
      const fallback = [
        ...new Set(
          logs
            .map((l) =>
              /kernel not found in registries for Op type: (\w+) node name: (\S+)/.exec(l),
            )
            .filter((m) => m !== null)
            .map((m) => `${m[1]} ${m[2]}`),
        ),
      ];
      expect(fallback.length).toBeGreaterThan(0); // the log is really captured
      for (const f of fallback)
        expect(f).toMatch(
          /^(Mul|Concat) decoder\.transpconvs\.\d+\.d2s\.(out_spatial|split_shape|merge_shape)$/,
        );
    });
  }
});
