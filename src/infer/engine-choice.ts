// Which engine runs a stored model for the Predict tab: onnxruntime-web (WebGPU, or WebAssembly)
// or tfjs on WebGPU (our kernels, or tfjs' stock ones). The choice is pure (`chooseEngine`); the
// runtimes load lazily in `createEngine`, so this module loads in Node, the page and workers.
import {
  archFromFolder,
  modelFromFolder,
  type DecodedModelFolder,
  type ModelFolder,
} from '../model/model-folder.ts';
import { buildOnnxModel, inspectOnnx } from './onnx-export.ts';
import {
  createOrtSession,
  ortTilePredictor,
  type OrtSession,
  type OrtSessionOptions,
} from './ort.ts';
import { configurationInfo, tfjsTilePredictor, tileBatchForBudget } from './predictor.ts';
import type { PredictTiles } from './sliding-window.ts';
import type { UNetArch } from '../model/arch.ts';
import { isSoftwareAdapter, type AdapterFacts } from '../gpu/probe.ts';
// Static: tfjs is in this bundle already (predictor.ts); tf-backend loads the WebGPU backend lazily.
import { useBackend } from '../model/tf-backend.ts';

export type InferBackend = 'auto' | 'onnx-webgpu' | 'onnx-wasm' | 'tfjs' | 'tfjs-stock';
export const INFER_BACKENDS: readonly InferBackend[] = [
  'auto',
  'onnx-webgpu',
  'onnx-wasm',
  'tfjs',
  'tfjs-stock',
];

export type EngineChoice = (
  | { kind: 'tfjs'; fastKernels: boolean }
  | { kind: 'ort'; session: Pick<OrtSessionOptions, 'backend' | 'executionProviders'> }
) & {
  /** Why this engine, in plain words, for the Predict tab. */
  reason: string;
};

/**
 * The engine for `backend` given this browser's WebGPU adapter (null: none); throws when it cannot
 * run here. "Automatic" takes WebGPU only on a hardware adapter: on a software one (SwiftShader and
 * the like) WebAssembly is one to two orders of magnitude faster.
 */
export function chooseEngine(backend: InferBackend, adapter: AdapterFacts | null): EngineChoice {
  if (!INFER_BACKENDS.includes(backend)) throw new Error(`unknown engine '${backend}'`);
  const webgpu = adapter !== null;
  if (backend === 'tfjs' || backend === 'tfjs-stock') {
    if (!webgpu)
      throw new Error(
        'this browser has no WebGPU, which the tfjs engine needs here. Choose “Automatic” or “ONNX on WebAssembly”',
      );
    // Our kernels (src/model/kernels) unless the stock ones are asked for (the fallback switch).
    return { kind: 'tfjs', fastKernels: backend === 'tfjs', reason: 'chosen in the settings' };
  }
  if (backend === 'onnx-webgpu') {
    if (!webgpu)
      throw new Error('this browser has no WebGPU. Choose “Automatic” or “ONNX on WebAssembly”');
    return {
      kind: 'ort',
      session: { backend: 'ort-web', executionProviders: ['webgpu'] },
      reason: 'chosen in the settings',
    };
  }
  if (backend === 'onnx-wasm')
    return { kind: 'ort', session: { backend: 'ort-wasm' }, reason: 'chosen in the settings' };
  if (!adapter)
    return {
      kind: 'ort',
      session: { backend: 'ort-web', executionProviders: ['wasm'] },
      reason: 'Automatic: this browser has no WebGPU adapter, so WebAssembly',
    };
  const name = adapterLabel(adapter);
  if (isSoftwareAdapter(adapter)) {
    return {
      kind: 'ort',
      session: { backend: 'ort-web', executionProviders: ['wasm'] },
      reason: `Automatic: the WebGPU adapter (${name}) runs in software on the CPU, where WebAssembly is much faster`,
    };
  }
  return {
    kind: 'ort',
    session: { backend: 'ort-web', executionProviders: ['webgpu', 'wasm'] },
    reason: `Automatic: a hardware WebGPU adapter (${name})`,
  };
}

function adapterLabel(a: AdapterFacts): string {
  return [a.vendor, a.architecture, a.description].filter(Boolean).join(' ') || 'unnamed';
}

/** The network as ONNX: the package's model.onnx (checked against its plans) or one built from its weights. */
export function onnxBytesFor(md: ModelFolder, arch: UNetArch): Uint8Array {
  if (!md.onnx) return buildOnnxModel(arch, md.weights);
  const info = inspectOnnx(md.onnx);
  if (info.arch && JSON.stringify(info.arch) !== JSON.stringify(arch))
    throw new Error(
      'the package’s model.onnx does not match its plans.json network; re-export the model',
    );
  return md.onnx;
}

/** What the Predict tab shows as the engine of an onnxruntime session. */
export function ortEngineName(
  executionProviders: readonly string[],
  wasmThreads: number | undefined,
): string {
  return executionProviders.includes('webgpu')
    ? 'onnxruntime-web webgpu'
    : `onnxruntime-web wasm${wasmThreads && wasmThreads > 1 ? ` (${wasmThreads} threads)` : ''}`;
}

export interface Engine {
  predictTiles: PredictTiles;
  engine: string;
  /** Why this engine (EngineChoice.reason). */
  reason: string;
  tileBatch: number;
  release(): Promise<void>;
}

export interface EngineEnv {
  /** This browser's WebGPU adapter, null when none (asked once per worker). */
  webgpuAdapter(): Promise<AdapterFacts | null>;
  /** Sets up onnxruntime-web (wasm paths, log level) before the first session. */
  configureOrt(): Promise<void>;
}

/** Builds the engine for a model: session or tfjs network, and how many tiles one run takes. */
export async function createEngine(
  md: DecodedModelFolder,
  backend: InferBackend,
  budgetMB: number,
  env: EngineEnv,
  numThreads?: number,
): Promise<Engine> {
  // onnx-wasm never needs the adapter: no probe for it.
  const choice = chooseEngine(backend, backend === 'onnx-wasm' ? null : await env.webgpuAdapter());
  const { patch } = configurationInfo(md.plans, md.configuration);
  const arch: UNetArch = archFromFolder(md);
  const budgetTiles = tileBatchForBudget(arch, patch, budgetMB);
  if (choice.kind === 'tfjs') {
    await useBackend('webgpu', { fastKernels: choice.fastKernels });
    const model = modelFromFolder(md);
    return {
      predictTiles: tfjsTilePredictor(model, patch),
      engine: `tfjs webgpu (${choice.fastKernels ? 'fast' : 'stock'} kernels)`,
      reason: choice.reason,
      tileBatch: budgetTiles,
      release: async () => model.dispose(),
    };
  }
  await env.configureOrt();
  const bytes = onnxBytesFor(md, arch);
  const session: OrtSession = await createOrtSession(bytes, {
    ...choice.session,
    logSeverityLevel: 3,
    numThreads,
  });
  const ort = await import('onnxruntime-web');
  const engine = ortEngineName(session.executionProviders, ort.env.wasm.numThreads);
  // onnxruntime frees intermediates as it goes; a few tiles per run keep the batch small.
  const tileBatch = Math.min(4, budgetTiles);
  return {
    predictTiles: ortTilePredictor(session, patch, arch.inputChannels, tileBatch),
    engine,
    reason: choice.reason,
    tileBatch,
    release: () => session.release(),
  };
}
