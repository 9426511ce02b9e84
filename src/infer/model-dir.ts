// The trained-model folder that `fednnunet train` writes and `predict` / `export-onnx` read.
//
//   MODEL_DIR/
//     model.json    {"format": "fednnunet-model", "version": 1, "configuration": "3d_fullres",
//                    "num_input_channels": 1, "num_segmentation_heads": 3,
//                    "inference_allowed_mirroring_axes": [0, 1, 2],   (optional; default §7.6)
//                    ...any further keys (e.g. "training": {...}) are kept as is}
//     plans.json    nnU-Net plans (the whole nnUNetPlans.json the model was trained with)
//     dataset.json  nnU-Net dataset.json (labels, channel_names, regions_class_order, ...)
//     weights.json  {"dtype": "float32", "byte_order": "little", "layout": "pytorch",
//                    "total_bytes": B, "tensors": [{"name", "shape", "offset"}, ...]}
//     weights.bin   the tensors' float32 little-endian values, row-major in PyTorch layout (conv
//                   [out, in, ...k], ConvTranspose [in, out, ...k]); tensor i occupies
//                   [offset, offset + 4·∏shape) bytes; names are nnU-Net state_dict names
//     model.onnx    optional: the exported network (src/infer/onnx-export.ts)
//
// Pure encode/decode over a file map or a FileSource (browser, tests); readModelDir/writeModelDir
// add Node's fs through lazy imports, so this module also loads in the page.
import type { FileSource } from '../io/file-source.ts';
import { archFromPlan, type PlanConfigurationLike, type UNetArch } from '../model/arch.ts';
import { numel, type NamedWeights } from '../model/named-weights.ts';
import { PlainConvUNet } from '../model/unet.ts';
import { configurationInfo, labelInfo, numInputChannels, type PredictorDatasetJson, type PredictorPlans } from './predictor.ts';

export const MODEL_FORMAT = 'fednnunet-model';
export const MODEL_FORMAT_VERSION = 1;
export const MODEL_FILES = { model: 'model.json', plans: 'plans.json', dataset: 'dataset.json', index: 'weights.json', weights: 'weights.bin', onnx: 'model.onnx' } as const;

export interface ModelMeta {
  format: typeof MODEL_FORMAT;
  version: number;
  configuration: string;
  num_input_channels: number;
  num_segmentation_heads: number;
  inference_allowed_mirroring_axes?: number[];
  [k: string]: unknown;
}

export interface ModelDir<P extends object = PredictorPlans> {
  plans: P;
  datasetJson: PredictorDatasetJson & Record<string, unknown>;
  configuration: string;
  /** PyTorch names, shapes and layout (PlainConvUNet.namedWeights()). */
  weights: NamedWeights;
  /** Extra model.json keys (e.g. inference_allowed_mirroring_axes, training info). */
  meta?: Record<string, unknown>;
  onnx?: Uint8Array;
}

export interface WeightsIndex {
  dtype: 'float32';
  byte_order: 'little';
  layout: 'pytorch';
  total_bytes: number;
  tensors: Array<{ name: string; shape: number[]; offset: number }>;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** The folder's files as bytes. */
export function encodeModelDir(m: ModelDir<object>): Record<string, Uint8Array> {
  if (!LITTLE_ENDIAN) throw new Error('writing weights.bin needs a little-endian platform');
  const plans = m.plans as PredictorPlans;
  if (!plans.configurations?.[m.configuration]) throw new Error(`plans have no configuration '${m.configuration}'`);
  const meta: ModelMeta = {
    ...(m.meta ?? {}),
    format: MODEL_FORMAT,
    version: MODEL_FORMAT_VERSION,
    configuration: m.configuration,
    num_input_channels: numInputChannels(m.datasetJson),
    num_segmentation_heads: labelInfo(m.datasetJson).numSegmentationHeads,
  };
  const tensors: WeightsIndex['tensors'] = [];
  let offset = 0;
  for (const [name, t] of m.weights) {
    if (t.data.length !== numel(t.shape)) throw new Error(`weight '${name}': ${t.data.length} values for shape ${t.shape}`);
    tensors.push({ name, shape: [...t.shape], offset });
    offset += 4 * t.data.length;
  }
  const bin = new Uint8Array(offset);
  for (const [i, [, t]] of [...m.weights].entries()) {
    bin.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), tensors[i].offset);
  }
  const index: WeightsIndex = { dtype: 'float32', byte_order: 'little', layout: 'pytorch', total_bytes: offset, tensors };
  const files: Record<string, Uint8Array> = {
    [MODEL_FILES.model]: text(`${JSON.stringify(meta, null, 2)}\n`),
    [MODEL_FILES.plans]: text(`${JSON.stringify(m.plans, null, 4)}\n`),
    [MODEL_FILES.dataset]: text(`${JSON.stringify(m.datasetJson, null, 4)}\n`),
    [MODEL_FILES.index]: text(`${JSON.stringify(index, null, 1)}\n`),
    [MODEL_FILES.weights]: bin,
  };
  if (m.onnx) files[MODEL_FILES.onnx] = m.onnx;
  return files;
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    // nnU-Net's json may contain NaN/Infinity (Python's json); plans and dataset.json do not.
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (e) {
    throw new Error(`${what}: invalid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** Reads and checks a model folder from any FileSource. */
export async function decodeModelDir(src: FileSource): Promise<ModelDir & { meta: ModelMeta }> {
  const files = new Set(await src.list());
  for (const f of [MODEL_FILES.model, MODEL_FILES.plans, MODEL_FILES.dataset, MODEL_FILES.index, MODEL_FILES.weights]) {
    if (!files.has(f)) throw new Error(`${src.name}: not a model folder (no ${f})`);
  }
  const meta = parseJson<ModelMeta>(await src.read(MODEL_FILES.model), `${src.name}/${MODEL_FILES.model}`);
  if (meta.format !== MODEL_FORMAT) throw new Error(`${src.name}/${MODEL_FILES.model}: format '${String(meta.format)}', expected '${MODEL_FORMAT}'`);
  if (meta.version !== MODEL_FORMAT_VERSION) throw new Error(`${src.name}/${MODEL_FILES.model}: version ${meta.version} not supported (this build reads ${MODEL_FORMAT_VERSION})`);
  const plans = parseJson<PredictorPlans>(await src.read(MODEL_FILES.plans), `${src.name}/${MODEL_FILES.plans}`);
  const datasetJson = parseJson<ModelDir['datasetJson']>(await src.read(MODEL_FILES.dataset), `${src.name}/${MODEL_FILES.dataset}`);
  if (!plans.configurations?.[meta.configuration]) throw new Error(`${src.name}: plans.json has no configuration '${meta.configuration}'`);
  const index = parseJson<WeightsIndex>(await src.read(MODEL_FILES.index), `${src.name}/${MODEL_FILES.index}`);
  if (index.dtype !== 'float32' || index.byte_order !== 'little' || index.layout !== 'pytorch') {
    throw new Error(`${src.name}/${MODEL_FILES.index}: unsupported dtype/byte order/layout ${index.dtype}/${index.byte_order}/${index.layout}`);
  }
  const bin = await src.read(MODEL_FILES.weights);
  if (bin.byteLength !== index.total_bytes) throw new Error(`${src.name}/${MODEL_FILES.weights}: ${bin.byteLength} bytes, weights.json says ${index.total_bytes}`);
  if (!LITTLE_ENDIAN) throw new Error('reading weights.bin needs a little-endian platform');
  const weights: NamedWeights = new Map();
  for (const t of index.tensors) {
    const bytes = 4 * numel(t.shape);
    if (!(t.offset >= 0) || t.offset % 4 !== 0 || t.offset + bytes > bin.byteLength) {
      throw new Error(`${src.name}/${MODEL_FILES.index}: tensor '${t.name}' [${t.shape}] at ${t.offset} lies outside weights.bin`);
    }
    if (weights.has(t.name)) throw new Error(`${src.name}/${MODEL_FILES.index}: tensor '${t.name}' listed twice`);
    const data = new Float32Array(bytes / 4);
    new Uint8Array(data.buffer).set(bin.subarray(t.offset, t.offset + bytes));
    weights.set(t.name, { shape: [...t.shape], data });
  }
  const onnx = files.has(MODEL_FILES.onnx) ? await src.read(MODEL_FILES.onnx) : undefined;
  return { plans, datasetJson, configuration: meta.configuration, weights, meta, onnx };
}

type NodeFs = typeof import('node:fs/promises');
type NodePath = typeof import('node:path');
async function nodeModules(): Promise<{ fs: NodeFs; path: NodePath }> {
  // Variable specifiers keep bundlers from pulling Node built-ins into the page.
  const fsName = 'node:fs/promises';
  const pathName = 'node:path';
  return { fs: (await import(/* @vite-ignore */ fsName)) as NodeFs, path: (await import(/* @vite-ignore */ pathName)) as NodePath };
}

/** Reads a model folder from a path (Node) or any FileSource. */
export async function readModelDir(dir: string | FileSource): Promise<ModelDir & { meta: ModelMeta }> {
  if (typeof dir !== 'string') return decodeModelDir(dir);
  const { fs, path } = await nodeModules();
  const root = path.resolve(dir);
  const src: FileSource = {
    name: dir,
    list: async () => {
      try {
        return (await fs.readdir(root)).sort();
      } catch (e) {
        throw new Error(`${dir}: cannot read model folder: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
    },
    read: async (p) => new Uint8Array(await fs.readFile(path.join(root, p))),
  };
  return decodeModelDir(src);
}

/** Writes a model folder (Node): creates it if needed, overwrites the model files. */
export async function writeModelDir(dir: string, m: ModelDir<object>): Promise<void> {
  const files = encodeModelDir(m);
  const { fs, path } = await nodeModules();
  await fs.mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) await fs.writeFile(path.join(dir, name), bytes);
}

/**
 * The network of a model folder with its weights loaded strictly (deep supervision off). The
 * architecture comes from the plans' configuration; channels and heads from dataset.json.
 */
export function modelFromDir(m: ModelDir<object>): PlainConvUNet {
  const arch = archFromDir(m);
  const model = new PlainConvUNet(arch, { deepSupervision: false });
  try {
    model.loadNamedWeights(m.weights, { strict: true });
  } catch (e) {
    model.dispose();
    throw new Error(`weights do not fit the '${m.configuration}' network: ${e instanceof Error ? e.message : String(e)}`);
  }
  return model;
}

/** The architecture of a model folder (no tfjs variables created). */
export function archFromDir(m: ModelDir<object>): UNetArch {
  const { config } = configurationInfo(m.plans as PredictorPlans, m.configuration);
  if (!config.architecture) throw new Error(`configuration '${m.configuration}' has no architecture`);
  return archFromPlan(config as unknown as PlanConfigurationLike, numInputChannels(m.datasetJson), labelInfo(m.datasetJson).numSegmentationHeads);
}
