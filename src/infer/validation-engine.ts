// The engine that evaluates a network while it trains (a federation site's per-round validation
// Dice, `fednnunet compare`'s held-out Dice): the network's current weights are exported to ONNX
// once per evaluation and run by onnxruntime (onnxruntime-node in Node, ~two orders of magnitude
// faster than tfjs-cpu on the same network; onnxruntime-web in the browser, WebGPU or WebAssembly
// by the same rule as the Predict tab's "Automatic", engine-choice.ts), or by tfjs when no
// onnxruntime is there. Platform-free: runtimes load lazily.
import type { UNetArch } from '../model/arch.ts';
import type { NamedWeights } from '../model/named-weights.ts';
import type { AdapterFacts } from '../gpu/probe.ts';
import { chooseEngine } from './engine-choice.ts';
import { buildOnnxModel } from './onnx-export.ts';
import { createOrtSession, ortTilePredictor, type OrtSessionOptions } from './ort.ts';
import { tileBatchForBudget } from './predictor.ts';
import type { PredictTiles } from './sliding-window.ts';

/** What an engine needs of a network: its architecture, weights and (for tfjs) its forward. */
export interface EvaluatedNetwork {
  arch: UNetArch;
  namedWeights(): Promise<NamedWeights>;
  /** The tfjs forward (PlainConvUNet.predictLogits), channels-first tiles. */
  predictLogits(data: Float32Array, n: number, spatial: readonly number[]): Promise<Float32Array>;
}

/** A tile predictor over the network's weights as they are when it was opened. */
export interface OpenedEngine {
  predictTiles: PredictTiles;
  tileBatch: number;
  release(): Promise<void>;
}

export interface ValidationEngine {
  /** e.g. 'onnxruntime-node (cpu)', 'tfjs (cpu)'. */
  readonly name: string;
  /** Why this engine (e.g. why not onnxruntime), for the run's log. */
  readonly note?: string;
  open(net: EvaluatedNetwork, patch: readonly number[]): Promise<OpenedEngine>;
}

/** tfjs on the current backend: the trainer's own forward; reads the live weights. */
export function tfjsValidationEngine(note?: string, backendName = 'tfjs'): ValidationEngine {
  return {
    name: backendName,
    note,
    async open(net, patch) {
      return {
        predictTiles: (b, n) => net.predictLogits(b, n, patch),
        tileBatch: Math.min(2, tileBatchForBudget(net.arch, patch)),
        release: async () => {},
      };
    },
  };
}

/** onnxruntime with `session` options: the weights are exported to ONNX at every open(). */
export function ortValidationEngine(
  session: Pick<OrtSessionOptions, 'backend' | 'executionProviders' | 'numThreads'>,
  name: string,
  note?: string,
): ValidationEngine {
  return {
    name,
    note,
    async open(net, patch) {
      const bytes = buildOnnxModel(net.arch, await net.namedWeights());
      const s = await createOrtSession(bytes, { ...session, logSeverityLevel: 3 });
      // onnxruntime frees intermediates as it goes: a few tiles per run keep the batch small.
      const tileBatch = Math.min(4, tileBatchForBudget(net.arch, patch));
      return {
        predictTiles: ortTilePredictor(s, patch, net.arch.inputChannels, tileBatch),
        tileBatch,
        release: () => s.release(),
      };
    },
  };
}

/** Whether onnxruntime-node loads here (a devDependency: absent from a production install). */
export async function ortNodeAvailable(): Promise<boolean> {
  const name = 'onnxruntime-node';
  try {
    // The variable specifier keeps bundlers from resolving a Node-only package.
    const m = (await import(/* @vite-ignore */ name)) as {
      InferenceSession?: unknown;
      default?: { InferenceSession?: unknown };
    };
    return !!(m.InferenceSession ?? m.default?.InferenceSession);
  } catch {
    return false;
  }
}

/**
 * Node: onnxruntime-node when it loads, else tfjs with a note saying why it is slower. `prefer`
 * forces one ('tfjs' for a cross-check; 'ort-node' fails when it is absent).
 */
export async function nodeValidationEngine(
  prefer: 'auto' | 'ort-node' | 'tfjs' = 'auto',
  numThreads?: number,
): Promise<ValidationEngine> {
  if (prefer === 'tfjs') return tfjsValidationEngine(undefined, 'tfjs (cpu)');
  if (await ortNodeAvailable())
    return ortValidationEngine({ backend: 'ort-node', numThreads }, 'onnxruntime-node (cpu)');
  if (prefer === 'ort-node')
    throw new Error('onnxruntime-node is not installed here (npm install onnxruntime-node)');
  return tfjsValidationEngine(
    'onnxruntime-node is not installed, so validation runs on tfjs-cpu (much slower; npm install onnxruntime-node)',
    'tfjs (cpu)',
  );
}

/**
 * Browser: the Predict tab's "Automatic" choice for this adapter (null: no WebGPU), i.e.
 * onnxruntime-web on WebGPU for a hardware adapter, WebAssembly otherwise. The caller configures
 * onnxruntime-web (wasm paths) first, as for the Predict tab.
 */
export function browserValidationEngine(adapter: AdapterFacts | null): ValidationEngine {
  const choice = chooseEngine('auto', adapter);
  if (choice.kind !== 'ort') return tfjsValidationEngine(choice.reason, 'tfjs (webgpu)');
  const eps = choice.session.executionProviders ?? ['wasm'];
  return ortValidationEngine(
    choice.session,
    `onnxruntime-web ${eps.includes('webgpu') ? 'webgpu' : 'wasm'}`,
    choice.reason,
  );
}
