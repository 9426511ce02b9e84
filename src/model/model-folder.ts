// The model folder: the one format a trained network travels in. `fednnunet train -o`,
// `fednnunet simulate -o` and the browser (training, federation, the Predict tab's .zip export)
// write it; `fednnunet predict`, `export-onnx`, `evaluate --model` and the Predict tab's import read
// it; the browser stores its files as they are (src/store/models.ts).
//
//   MODEL_DIR/
//     model.json    {"format": "fednnunet-model", "version": 1,
//                    "configuration": "3d_fullres", "num_input_channels": 1, "num_segmentation_heads": 3,
//                    "architecture": {"network_class_name": "...PlainConvUNet", "arch_kwargs": {...}},
//                    "inference_allowed_mirroring_axes": [0, 1, 2],      (optional; default §7.6)
//                    "provenance": {"trained_by", "method", "sites", "rounds", "epochs",
//                                   "iterations", "validation_dice", ...},  (optional)
//                    ...further keys are kept as they are}
//     plans.json    nnU-Net plans (the whole nnUNetPlans.json the model was trained with)
//     dataset.json  nnU-Net dataset.json (labels, channel_names, regions_class_order, ...)
//     weights.json  {"dtype": "float32", "byte_order": "little", "layout": "pytorch",
//                    "total_bytes": B, "tensors": [{"name", "shape", "offset"}, ...]}
//     weights.bin   the tensors' float32 little-endian values, row-major in PyTorch layout (conv
//                   [out, in, ...k], ConvTranspose [in, out, ...k]); tensor i occupies
//                   [offset, offset + 4·∏shape) bytes; names are nnU-Net state_dict names
//     model.onnx    optional: the exported network (src/infer/onnx-export.ts)
//
// `architecture` is nnU-Net v2's own block (plans' configuration.architecture: class name and
// kwargs), so a model imported from nnU-Net (e.g. a ResidualEncoderUNet) fits this format as is:
// only the code that builds the network from it grows. Folders written before `architecture` and
// `provenance` existed (stored in browsers' IndexedDB) take the architecture from plans.json.
// Other files in the folder (train's checkpoints and logs) are ignored. An unknown format name or
// version is refused with a message saying so.
//
// Pure: bytes in, bytes out (a file map, a FileSource, or a .zip); src/node/model-folder-fs.ts reads
// and writes folders on disk.
import { zipSync } from 'fflate';
import type { FileSource } from '../io/file-source.ts';
import type { ReadAt } from '../io/zip-archive.ts';
import { zipBytesSource, zipSource } from '../io/zip-source.ts';
import { resolveConfiguration, type PreprocessPlans } from '../preprocess/preprocess.ts';
import { archFromPlan, networkKind, type PlanConfigurationLike, type UNetArch } from './arch.ts';
import { labelInfo, numInputChannels, type LabelsDatasetJson } from './labels.ts';
import { type NamedWeights } from './named-weights.ts';
import { prod } from '../util/numeric.ts';
import { PlainConvUNet } from './unet.ts';
import { errorMessage } from '../util/errors.ts';

export const MODEL_FORMAT = 'fednnunet-model';
export const MODEL_FORMAT_VERSION = 1;
export const MODEL_FILES = {
  model: 'model.json',
  plans: 'plans.json',
  dataset: 'dataset.json',
  index: 'weights.json',
  weights: 'weights.bin',
  onnx: 'model.onnx',
} as const;
const REQUIRED = [
  MODEL_FILES.model,
  MODEL_FILES.plans,
  MODEL_FILES.dataset,
  MODEL_FILES.index,
  MODEL_FILES.weights,
];

/** nnU-Net v2's architecture block: the network class and its constructor kwargs. */
export interface ModelArchitecture {
  network_class_name: string;
  arch_kwargs: Record<string, unknown>;
  [k: string]: unknown;
}

/** Where the weights came from; every field but trained_by is written when known. */
export interface ModelProvenance {
  /** e.g. 'fednnunet train', 'fednnunet simulate', 'browser training', 'browser federation'. */
  trained_by: string;
  /** 'local' (one site) or the federation method ('ffe', 'asym', 'fedavg'). */
  method?: string;
  /** Sites that trained it (1 for local training). */
  sites?: number;
  /** The site whose copy this is, when sites keep site-specific layers (AsymFedAvg). */
  site?: string;
  rounds?: number;
  epochs?: number;
  /** Optimizer steps per site in all. */
  iterations?: number;
  /** Mean foreground Dice on the validation cases at the end, when measured. */
  validation_dice?: number;
  /** How validation_dice was measured, e.g. "nnU-Net pseudo-Dice (EMA)" or "sliding window, whole cases". */
  validation?: string;
  [k: string]: unknown;
}

export interface ModelMeta {
  format: typeof MODEL_FORMAT;
  version: number;
  configuration: string;
  num_input_channels: number;
  num_segmentation_heads: number;
  architecture?: ModelArchitecture;
  inference_allowed_mirroring_axes?: number[];
  provenance?: ModelProvenance;
  [k: string]: unknown;
}

/** plans.json fields this module reads (a full nnU-Net plans.json satisfies it). */
export type ModelPlans = PreprocessPlans & { transpose_backward: number[] };

export interface ModelFolder<P extends object = ModelPlans> {
  plans: P;
  datasetJson: LabelsDatasetJson & Record<string, unknown>;
  configuration: string;
  /** PyTorch names, shapes and layout (PlainConvUNet.namedWeights()). */
  weights: NamedWeights;
  /** Written to model.json; default: the plans configuration's architecture block. */
  architecture?: ModelArchitecture;
  provenance?: ModelProvenance;
  /** Further model.json keys (e.g. inference_allowed_mirroring_axes). */
  meta?: Record<string, unknown>;
  onnx?: Uint8Array;
}

export type DecodedModelFolder = ModelFolder & { meta: ModelMeta; architecture: ModelArchitecture };

export interface WeightsIndex {
  dtype: 'float32';
  byte_order: 'little';
  layout: 'pytorch';
  total_bytes: number;
  tensors: Array<{ name: string; shape: number[]; offset: number }>;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
// Python's json writes NaN/Infinity, which JSON.parse refuses: write them as null.
const json = (x: unknown, indent: number): Uint8Array =>
  text(
    `${JSON.stringify(x, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), indent)}\n`,
  );

/** The plans configuration's architecture block (inherits_from resolved). */
function planArchitecture(plans: object, configuration: string): ModelArchitecture {
  const config = resolveConfiguration(plans as PreprocessPlans, configuration) as {
    architecture?: ModelArchitecture;
  };
  const a = config.architecture;
  if (!a || typeof a !== 'object' || !a.arch_kwargs)
    throw new Error(`configuration '${configuration}' has no architecture`);
  return {
    ...a,
    network_class_name:
      a.network_class_name ?? 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
  };
}

/** A trainer's last validation pseudo-Dice (nnU-Net's EMA) as provenance, when it is a number. */
export function pseudoDiceProvenance(log: {
  ema_fg_dice: readonly number[];
}): Pick<ModelProvenance, 'validation_dice' | 'validation'> {
  const d = log.ema_fg_dice.at(-1);
  return d !== undefined && Number.isFinite(d)
    ? {
        validation_dice: d,
        validation: 'nnU-Net pseudo-Dice (EMA over epochs, validation patches)',
      }
    : {};
}

/** model.json's content for a model (checked: it can be read back). */
export function modelMeta(m: Omit<ModelFolder<object>, 'weights' | 'onnx'>): ModelMeta {
  const architecture = m.architecture ?? planArchitecture(m.plans, m.configuration);
  const meta: ModelMeta = {
    ...(m.meta ?? {}),
    format: MODEL_FORMAT,
    version: MODEL_FORMAT_VERSION,
    configuration: m.configuration,
    num_input_channels: numInputChannels(m.datasetJson),
    num_segmentation_heads: labelInfo(m.datasetJson).numSegmentationHeads,
    architecture,
    ...(m.provenance ? { provenance: m.provenance } : {}),
  };
  // Refuse to write what could not be read back.
  archFromMeta(meta, m.datasetJson);
  return meta;
}

/** The folder's files as bytes. */
export function encodeModelFolder(m: ModelFolder<object>): Record<string, Uint8Array> {
  if (!LITTLE_ENDIAN) throw new Error('writing weights.bin needs a little-endian platform');
  const meta = modelMeta(m);
  const tensors: WeightsIndex['tensors'] = [];
  let offset = 0;
  for (const [name, t] of m.weights) {
    if (t.data.length !== prod(t.shape))
      throw new Error(`weight '${name}': ${t.data.length} values for shape ${t.shape}`);
    tensors.push({ name, shape: [...t.shape], offset });
    offset += 4 * t.data.length;
  }
  const bin = new Uint8Array(offset);
  for (const [i, [, t]] of [...m.weights].entries()) {
    bin.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), tensors[i].offset);
  }
  const index: WeightsIndex = {
    dtype: 'float32',
    byte_order: 'little',
    layout: 'pytorch',
    total_bytes: offset,
    tensors,
  };
  const files: Record<string, Uint8Array> = {
    [MODEL_FILES.model]: json(meta, 2),
    [MODEL_FILES.plans]: json(m.plans, 4),
    [MODEL_FILES.dataset]: json(m.datasetJson, 4),
    [MODEL_FILES.index]: json(index, 1),
    [MODEL_FILES.weights]: bin,
  };
  if (m.onnx) files[MODEL_FILES.onnx] = m.onnx;
  return files;
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (e) {
    throw new Error(`${what}: invalid JSON (${errorMessage(e)})`);
  }
}

/** Reads and checks a model folder from any FileSource (only its top-level files are read). */
export async function decodeModelFolder(src: FileSource): Promise<DecodedModelFolder> {
  const files = new Set(await src.list());
  for (const f of REQUIRED)
    if (!files.has(f)) throw new Error(`${src.name}: not a model folder (no ${f})`);
  const where = (f: string) => `${src.name}/${f}`;
  const meta = parseJson<ModelMeta>(await src.read(MODEL_FILES.model), where(MODEL_FILES.model));
  if (!meta || typeof meta !== 'object')
    throw new Error(`${where(MODEL_FILES.model)}: not a JSON object`);
  if (meta.format !== MODEL_FORMAT)
    throw new Error(
      `${where(MODEL_FILES.model)}: format '${String(meta.format)}', expected '${MODEL_FORMAT}'`,
    );
  if (meta.version !== MODEL_FORMAT_VERSION) {
    throw new Error(
      `${where(MODEL_FILES.model)}: ${MODEL_FORMAT} version ${String(meta.version)} is not supported (this build reads version ${MODEL_FORMAT_VERSION}; a newer fednnunet may read it)`,
    );
  }
  const plans = parseJson<ModelPlans>(await src.read(MODEL_FILES.plans), where(MODEL_FILES.plans));
  const datasetJson = parseJson<ModelFolder['datasetJson']>(
    await src.read(MODEL_FILES.dataset),
    where(MODEL_FILES.dataset),
  );
  if (!plans?.configurations?.[meta.configuration])
    throw new Error(`${src.name}: plans.json has no configuration '${meta.configuration}'`);
  if (!datasetJson?.labels) throw new Error(`${where(MODEL_FILES.dataset)}: no labels`);
  const nIn = numInputChannels(datasetJson);
  const heads = labelInfo(datasetJson).numSegmentationHeads;
  if (meta.num_input_channels !== nIn || meta.num_segmentation_heads !== heads) {
    throw new Error(
      `${where(MODEL_FILES.model)}: ${meta.num_input_channels} input channels / ${meta.num_segmentation_heads} outputs, but dataset.json gives ${nIn} / ${heads}`,
    );
  }
  const architecture = meta.architecture ?? planArchitecture(plans, meta.configuration);
  try {
    archFromMeta({ ...meta, architecture }, datasetJson);
  } catch (e) {
    throw new Error(`${src.name}: ${errorMessage(e)}`);
  }
  const index = parseJson<WeightsIndex>(
    await src.read(MODEL_FILES.index),
    where(MODEL_FILES.index),
  );
  if (
    index.dtype !== 'float32' ||
    index.byte_order !== 'little' ||
    index.layout !== 'pytorch' ||
    !Array.isArray(index.tensors)
  ) {
    throw new Error(
      `${where(MODEL_FILES.index)}: unsupported dtype/byte order/layout ${index.dtype}/${index.byte_order}/${index.layout}`,
    );
  }
  const bin = await src.read(MODEL_FILES.weights);
  if (bin.byteLength !== index.total_bytes)
    throw new Error(
      `${where(MODEL_FILES.weights)}: ${bin.byteLength} bytes, weights.json says ${index.total_bytes}`,
    );
  if (!LITTLE_ENDIAN) throw new Error('reading weights.bin needs a little-endian platform');
  const weights: NamedWeights = new Map();
  for (const t of index.tensors) {
    const bytes =
      Array.isArray(t.shape) && t.shape.every((d) => Number.isInteger(d) && d >= 0)
        ? 4 * prod(t.shape)
        : NaN;
    if (!(t.offset >= 0) || t.offset % 4 !== 0 || !(t.offset + bytes <= bin.byteLength)) {
      throw new Error(
        `${where(MODEL_FILES.index)}: tensor '${t.name}' [${t.shape}] at ${t.offset} lies outside weights.bin`,
      );
    }
    if (weights.has(t.name))
      throw new Error(`${where(MODEL_FILES.index)}: tensor '${t.name}' listed twice`);
    const data = new Float32Array(bytes / 4);
    new Uint8Array(data.buffer).set(bin.subarray(t.offset, t.offset + bytes));
    weights.set(t.name, { shape: [...t.shape], data });
  }
  const onnx = files.has(MODEL_FILES.onnx) ? await src.read(MODEL_FILES.onnx) : undefined;
  return {
    plans,
    datasetJson,
    configuration: meta.configuration,
    weights,
    architecture,
    provenance: meta.provenance,
    meta,
    onnx,
  };
}

function archFromMeta(
  meta: Pick<ModelMeta, 'architecture' | 'num_input_channels' | 'num_segmentation_heads'>,
  dj: LabelsDatasetJson,
): UNetArch {
  const a = meta.architecture!;
  if (!networkKind(a.network_class_name))
    throw new Error(
      `network '${a.network_class_name}' is not supported by this build (PlainConvUNet and ResidualEncoderUNet only)`,
    );
  return archFromPlan(
    { architecture: a } as unknown as PlanConfigurationLike,
    numInputChannels(dj),
    labelInfo(dj).numSegmentationHeads,
  );
}

/** The network topology of a model folder (no tfjs variables created). */
export function archFromFolder(m: ModelFolder<object>): UNetArch {
  const architecture = m.architecture ?? planArchitecture(m.plans, m.configuration);
  return archFromMeta(
    {
      architecture,
      num_input_channels: numInputChannels(m.datasetJson),
      num_segmentation_heads: labelInfo(m.datasetJson).numSegmentationHeads,
    },
    m.datasetJson,
  );
}

/** The network of a model folder with its weights loaded strictly (deep supervision off). */
export function modelFromFolder(m: ModelFolder<object>): PlainConvUNet {
  const model = new PlainConvUNet(archFromFolder(m), { deepSupervision: false });
  try {
    model.loadNamedWeights(m.weights, { strict: true });
  } catch (e) {
    model.dispose();
    throw new Error(`weights do not fit the '${m.configuration}' network: ${errorMessage(e)}`);
  }
  return model;
}

/** The folder's files as one .zip (files at its root), as the Predict tab exports it. */
export function zipModelFolder(files: Record<string, Uint8Array>): Uint8Array {
  const keep: Record<string, Uint8Array> = {};
  for (const f of Object.values(MODEL_FILES)) if (files[f]) keep[f] = files[f];
  return zipSync(keep, { level: 6 });
}

/** A file of a picked folder or zip: its path (any depth) and a way to read it. */
export interface PackageEntry {
  path: string;
  bytes: () => Promise<Uint8Array>;
  /**
   * For a .zip: its size and a reader by range, so that only its directory and the model files
   * are read (not checkpoints packed beside them); without it the whole zip is read.
   */
  zip?: { size: number; readAt: ReadAt };
}

/** Largest total of the model files unpacked from one .zip (a zip bomb stops here, not at memory's end). */
export const MAX_UNZIPPED_BYTES = 4 * 2 ** 30;

/**
 * The model files of a picked folder (any depth: the shallowest folder holding model.json) or of
 * one .zip of it; `folder` names it (the zip's or the folder's name). Only model-folder files are
 * read, so a folder with checkpoints next to the model costs nothing extra.
 */
export async function unpackModelFolder(
  list: PackageEntry[],
): Promise<{ files: Record<string, Uint8Array>; folder: string }> {
  list = list.filter((f) => !f.path.split('/').pop()!.startsWith('.'));
  const names = new Set<string>(Object.values(MODEL_FILES));
  let entries: PackageEntry[];
  let folder: string;
  if (list.length === 1 && list[0].path.toLowerCase().endsWith('.zip')) {
    const z = list[0];
    const bad = (e: unknown) => new Error(`${z.path}: not a readable .zip (${errorMessage(e)})`);
    let zip: FileSource;
    try {
      zip = z.zip
        ? await zipSource(z.path, z.zip.size, z.zip.readAt)
        : zipBytesSource(z.path, await z.bytes());
    } catch (e) {
      throw bad(e);
    }
    const wanted = (await zip.list()).filter((p) => names.has(p.split('/').pop()!));
    // Declared sizes, before anything is inflated: a zip bomb stops here, not at memory's end.
    const total = wanted.reduce((n, p) => n + (zip.size?.(p) ?? 0), 0);
    if (total > MAX_UNZIPPED_BYTES)
      throw bad(`its model files unpack to more than ${MAX_UNZIPPED_BYTES / 2 ** 30} GiB`);
    entries = wanted.map((path) => ({
      path,
      bytes: async () => {
        try {
          return await zip.read(path);
        } catch (err) {
          throw bad(err);
        }
      },
    }));
    folder = z.path
      .split('/')
      .pop()!
      .replace(/\.zip$/i, '');
  } else {
    entries = list.map((f) => ({ path: f.path.replace(/^\/+/, ''), bytes: f.bytes }));
    folder = entries[0]?.path.split('/')[0] ?? 'model';
  }
  const depth = (p: string) => p.split('/').length;
  const marks = entries
    .filter((e) => e.path.split('/').pop() === MODEL_FILES.model)
    .sort((a, b) => depth(a.path) - depth(b.path));
  if (marks.length === 0) {
    throw new Error(
      `no ${MODEL_FILES.model} among the ${entries.length} file(s): choose a model folder (model.json, plans.json, dataset.json, weights.json, weights.bin) as \`fednnunet train -o\` writes it, or a .zip of it`,
    );
  }
  const dir = marks[0].path.slice(0, -MODEL_FILES.model.length);
  if (dir) folder = dir.replace(/\/$/, '').split('/').pop()!;
  const files: Record<string, Uint8Array> = {};
  for (const e of entries) {
    if (!e.path.startsWith(dir)) continue;
    const rel = e.path.slice(dir.length);
    if (names.has(rel)) files[rel] = await e.bytes();
  }
  return { files, folder };
}
