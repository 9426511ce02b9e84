// onnxruntime sessions for exported U-Nets and a sliding-window tile predictor over them.
//
// Backends:
//   'ort-web'  onnxruntime-web with executionProviders ['webgpu', 'wasm'] (browser; if WebGPU is
//              missing or fails to initialise, retried with ['wasm']);
//   'ort-wasm' onnxruntime-web, wasm EP only (browser, or Node: the package's Node build);
//   'ort-node' onnxruntime-node, CPU EP (Node only; a devDependency).
// Every runtime module is imported lazily, so this file is importable anywhere, and
// onnxruntime-node's import is hidden from bundlers.
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import type { PredictTiles } from './sliding-window.ts';
import { ONNX_INPUT, ONNX_OUTPUT } from './onnx-export.ts';

export type OrtBackend = 'ort-web' | 'ort-wasm' | 'ort-node';

/** The part of the onnxruntime module API used here (common to onnxruntime-web and -node). */
interface OrtModule {
  InferenceSession: {
    create(model: Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession>;
  };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => Tensor;
  env: { wasm: { numThreads?: number; proxy?: boolean }; logLevel?: string };
}

export interface OrtSessionOptions {
  backend?: OrtBackend;
  /** wasm threads (onnxruntime-web) or intra-op threads (onnxruntime-node). Default: runtime's. */
  numThreads?: number;
  /** Override the execution providers (advanced). */
  executionProviders?: string[];
  /** Session log level: 0 verbose … 2 warning (runtime default) … 4 fatal. */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
}

export interface OrtSession {
  readonly backend: OrtBackend;
  /** The providers the session was created with (after any fallback). */
  readonly executionProviders: readonly string[];
  /** Runs one NC(D)HW float32 batch; returns the NK(D)HW logits and their shape. */
  run(
    input: Float32Array,
    shape: readonly number[],
  ): Promise<{ data: Float32Array; shape: number[] }>;
  release(): Promise<void>;
}

const modules = new Map<string, Promise<OrtModule>>();

async function loadModule(backend: OrtBackend): Promise<OrtModule> {
  const name = backend === 'ort-node' ? 'onnxruntime-node' : 'onnxruntime-web';
  let m = modules.get(name);
  if (!m) {
    m = (async () => {
      // onnxruntime-web is a literal import so bundlers (Vite) include it for the page; the variable
      // specifier keeps them from resolving onnxruntime-node (Node only) at all.
      const mod = (
        backend === 'ort-node'
          ? await import(/* @vite-ignore */ name)
          : await import('onnxruntime-web')
      ) as OrtModule & { default?: OrtModule };
      return mod.InferenceSession ? mod : (mod.default as OrtModule);
    })();
    modules.set(name, m);
  }
  return m;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

export async function createOrtSession(
  model: Uint8Array,
  opts: OrtSessionOptions = {},
): Promise<OrtSession> {
  const backend = opts.backend ?? (isNode() ? 'ort-node' : 'ort-web');
  const ort = await loadModule(backend);
  const options: InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
  if (opts.logSeverityLevel !== undefined) options.logSeverityLevel = opts.logSeverityLevel;
  if (backend === 'ort-node') {
    if (opts.numThreads) options.intraOpNumThreads = opts.numThreads;
  } else if (opts.numThreads) {
    ort.env.wasm.numThreads = opts.numThreads;
  }
  let eps =
    opts.executionProviders ??
    (backend === 'ort-node' ? ['cpu'] : backend === 'ort-web' ? ['webgpu', 'wasm'] : ['wasm']);
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(model, { ...options, executionProviders: eps });
  } catch (e) {
    if (!eps.includes('webgpu')) throw e;
    // WebGPU absent or failing (e.g. an op it lacks): the wasm EP runs every op.
    eps = eps.filter((p) => p !== 'webgpu');
    if (eps.length === 0) eps = ['wasm'];
    session = await ort.InferenceSession.create(model, { ...options, executionProviders: eps });
  }
  return {
    backend,
    executionProviders: eps,
    async run(input, shape) {
      const t = new ort.Tensor('float32', input, shape);
      const out = await session.run({ [ONNX_INPUT]: t });
      const y = out[ONNX_OUTPUT];
      if (!y) throw new Error(`ONNX session returned no '${ONNX_OUTPUT}'`);
      const data = (y.type === 'float32' ? await y.getData() : null) as Float32Array | null;
      if (!data) throw new Error(`ONNX output '${ONNX_OUTPUT}' is ${y.type}, expected float32`);
      const dims = [...y.dims];
      t.dispose?.();
      y.dispose?.();
      return { data, shape: dims };
    },
    release: () => session.release(),
  };
}

/**
 * A sliding-window tile predictor over a session: tiles come (n, C, ...patch) in NC(D)HW, which
 * is the exported model's layout, so no conversion is needed. For 2d configurations the patch
 * has two entries. `maxBatch` splits larger batches (memory bound).
 */
export function ortTilePredictor(
  session: OrtSession,
  patch: readonly number[],
  inputChannels: number,
  maxBatch = Infinity,
): PredictTiles {
  const vox = patch.reduce((a, b) => a * b, 1);
  return async (batch, n) => {
    const per = inputChannels * vox;
    if (batch.length < n * per)
      throw new Error(`ortTilePredictor: ${batch.length} values for ${n} tiles of ${per}`);
    const parts: Float32Array[] = [];
    for (let b0 = 0; b0 < n; b0 += Math.min(n, maxBatch)) {
      const m = Math.min(maxBatch, n - b0);
      // A copy: the caller reuses `batch`, and onnxruntime-web may hold the buffer.
      const input = batch.slice(b0 * per, (b0 + m) * per);
      const { data } = await session.run(input, [m, inputChannels, ...patch]);
      parts.push(data);
    }
    if (parts.length === 1) return parts[0];
    const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  };
}
