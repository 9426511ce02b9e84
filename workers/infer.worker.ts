// Inference worker: model packages in IndexedDB (import from files, export as zip, export ONNX,
// delete) and segmentation of one scan (a stored case, NIfTI files or a DICOM folder) with
// onnxruntime-web (WebGPU, WebAssembly fallback) or tfjs on WebGPU. Exposed with comlink.
import * as Comlink from 'comlink';
// The wasm binary onnxruntime-web's bundle loads (its WebGPU+wasm build). Importing it with ?url
// makes Vite emit it into dist/assets; the path is given to ort.env.wasm.wasmPaths below.
import ortWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm?url';
import { archFromFolder, MODEL_FILES, modelFromFolder, unpackModelFolder, zipModelFolder, type DecodedModelFolder } from '../src/model/model-folder.ts';
import { labelInfo } from '../src/model/labels.ts';
import { buildOnnxModel, inspectOnnx } from '../src/infer/onnx-export.ts';
import { createOrtSession, ortTilePredictor, type OrtSession } from '../src/infer/ort.ts';
import { configurationInfo, predictCase, tfjsTilePredictor, tileBatchForBudget } from '../src/infer/predictor.ts';
import type { PredictTiles } from '../src/infer/sliding-window.ts';
import { readDicomFiles } from '../src/io/dicom.ts';
import { readNifti } from '../src/io/nifti.ts';
import { writeNifti } from '../src/io/nifti-write.ts';
import type { Volume } from '../src/io/volume.ts';
import type { UNetArch } from '../src/model/arch.ts';
import type { PlainConvUNet } from '../src/model/unet.ts';
import { openStore, type StoreDB } from '../src/store/db.ts';
import { loadCaseVolumes } from '../src/store/datasets.ts';
import { deleteModel, listModels, loadModel, loadModelFiles, putModelFile, renameModel, saveModel, type ModelRecord, type ModelSource } from '../src/store/models.ts';

export type InferBackend = 'auto' | 'onnx-webgpu' | 'onnx-wasm' | 'tfjs' | 'tfjs-stock';
export const INFER_BACKENDS: readonly InferBackend[] = ['auto', 'onnx-webgpu', 'onnx-wasm', 'tfjs', 'tfjs-stock'];

export type ScanInput = { datasetId: string; caseId: string } | { files: Array<{ path: string; file: Blob }> };

export interface PredictRequest {
  tta?: boolean;
  backend?: InferBackend;
  /** Memory budget for one batch of tiles (default 512 MB). */
  budgetMB?: number;
  /** onnxruntime-web wasm threads (default: the runtime's; fixed by the first wasm session). */
  numThreads?: number;
}

export interface InferEvent {
  phase: 'loading-model' | 'reading-scan' | 'preprocessing' | 'predicting' | 'exporting';
  done?: number;
  total?: number;
  /** What runs the network, once known, e.g. 'onnxruntime-web webgpu'. */
  engine?: string;
}

export interface LabelVolume {
  value: number;
  name: string;
  voxels: number;
  ml: number;
}

export interface PredictSummary {
  scanName: string;
  /** Label map in the input's voxel order (x fastest). */
  labels: Uint8Array | Uint16Array;
  dims: [number, number, number];
  spacing: [number, number, number];
  affine: number[];
  /** Per label (background excluded): voxels and millilitres (voxels × voxel volume). */
  volumes: LabelVolume[];
  /** The label map as .nii.gz with the input's geometry (for download). */
  segmentationNifti: Uint8Array;
  /** The scan's first channel as .nii (for the viewer). */
  scanNifti: Uint8Array;
  /** Label value → name (dataset.json), background included. */
  labelNames: Record<number, string>;
  engine: string;
  backend: InferBackend;
  tta: boolean;
  tiles: number;
  tileBatch: number;
  timingsMs: { load: number; preprocess: number; predict: number; export: number; total: number };
}

export interface ImportModelInput {
  /** A model folder's files (any depth; the folder holding model.json is used) or one .zip. */
  files: Array<{ path: string; file: Blob }>;
  name?: string;
  source?: ModelSource;
}

let dbPromise: Promise<StoreDB> | undefined;
const db = () => (dbPromise ??= openStore());
let current: AbortController | undefined;

// One cached network (the last model/backend used): a second prediction skips session creation.
let cached: { key: string; predictTiles: PredictTiles; engine: string; tileBatch: number; release: () => Promise<void> } | undefined;

async function dropCache(): Promise<void> {
  const c = cached;
  cached = undefined;
  await c?.release().catch(() => undefined);
}

let ortConfigured = false;
async function configureOrt(): Promise<void> {
  if (ortConfigured) return;
  // Same module instance as src/infer/ort.ts's dynamic import (one chunk in the build).
  const ort = await import('onnxruntime-web');
  ort.env.wasm.wasmPaths = { wasm: new URL(ortWasmUrl, self.location.href).href };
  // onnxruntime prints warnings (e.g. "shape ops assigned to CPU", expected for the exported
  // depth-to-space) with console.error; sessions log errors only (logSeverityLevel 3).
  ort.env.logLevel = 'error';
  ortConfigured = true;
}

// navigator.gpu may exist without an adapter (GPU blocklisted, or Chromium without WebGPU
// enabled); onnxruntime-web then drops to its next EP silently, so ask for an adapter first.
let adapterProbe: Promise<boolean> | undefined;
const hasWebGPU = (): Promise<boolean> => (adapterProbe ??= (async () => {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return false;
  try {
    return (await gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
})());

async function engineFor(modelId: string, md: DecodedModelFolder, backend: InferBackend, budgetMB: number, numThreads?: number): Promise<NonNullable<typeof cached>> {
  const key = `${modelId}|${backend}|${budgetMB}|${numThreads ?? ''}`;
  if (cached?.key === key) return cached;
  await dropCache();
  const { patch } = configurationInfo(md.plans, md.configuration);
  const arch: UNetArch = archFromFolder(md);
  const budgetTiles = tileBatchForBudget(arch, patch, budgetMB);
  if (backend === 'tfjs' || backend === 'tfjs-stock') {
    if (!(await hasWebGPU())) throw new Error('this browser has no WebGPU, which the tfjs engine needs here. Choose “Automatic” or “ONNX on WebAssembly”');
    const { useBackend } = await import('../src/model/tf-backend.ts');
    // Our kernels (src/model/kernels) unless the stock ones are asked for (the fallback switch).
    const fastKernels = backend === 'tfjs';
    await useBackend('webgpu', { fastKernels });
    const model: PlainConvUNet = modelFromFolder(md);
    cached = { key, predictTiles: tfjsTilePredictor(model, patch), engine: `tfjs webgpu (${fastKernels ? 'fast' : 'stock'} kernels)`, tileBatch: budgetTiles, release: async () => model.dispose() };
    return cached;
  }
  await configureOrt();
  let bytes = md.onnx;
  if (bytes) {
    const info = inspectOnnx(bytes);
    if (info.arch && JSON.stringify(info.arch) !== JSON.stringify(arch)) throw new Error('the package’s model.onnx does not match its plans.json network; re-export the model');
  } else {
    bytes = buildOnnxModel(arch, md.weights);
  }
  let session: OrtSession;
  if (backend === 'onnx-webgpu') {
    if (!(await hasWebGPU())) throw new Error('this browser has no WebGPU. Choose “Automatic” or “ONNX on WebAssembly”');
    session = await createOrtSession(bytes, { backend: 'ort-web', executionProviders: ['webgpu'], logSeverityLevel: 3, numThreads });
  } else if (backend === 'onnx-wasm') {
    session = await createOrtSession(bytes, { backend: 'ort-wasm', logSeverityLevel: 3, numThreads });
  } else {
    session = await createOrtSession(bytes, { backend: 'ort-web', executionProviders: (await hasWebGPU()) ? ['webgpu', 'wasm'] : ['wasm'], logSeverityLevel: 3, numThreads });
  }
  const eps = session.executionProviders;
  const ort = await import('onnxruntime-web');
  const threads = ort.env.wasm.numThreads;
  const engine = eps.includes('webgpu') ? 'onnxruntime-web webgpu' : `onnxruntime-web wasm${threads && threads > 1 ? ` (${threads} threads)` : ''}`;
  // onnxruntime frees intermediates as it goes; a few tiles per run keep the batch small.
  const tileBatch = Math.min(4, budgetTiles);
  cached = { key, predictTiles: ortTilePredictor(session, patch, arch.inputChannels, tileBatch), engine, tileBatch, release: () => session.release() };
  return cached;
}

const lower = (p: string) => p.toLowerCase();
const isNifti = (p: string) => lower(p).endsWith('.nii') || lower(p).endsWith('.nii.gz');

/** Reads a scan: NIfTI files (one per channel, in name order) or one DICOM series. */
async function readScan(scan: ScanInput): Promise<{ name: string; images: Volume[] }> {
  if ('datasetId' in scan) {
    const v = await loadCaseVolumes(await db(), scan.datasetId, scan.caseId);
    if (!v) throw new Error(`case ${scan.caseId} is no longer stored in this browser (deleted?)`);
    return { name: scan.caseId, images: v.images };
  }
  const files = scan.files.filter((f) => !f.path.split('/').pop()!.startsWith('.'));
  if (files.length === 0) throw new Error('no file was given');
  const nifti = files.filter((f) => isNifti(f.path)).sort((a, b) => (a.path < b.path ? -1 : 1));
  if (nifti.length) {
    const images = await Promise.all(nifti.map(async (f) => readNifti(new Uint8Array(await f.file.arrayBuffer()), f.path)));
    return { name: nifti[0].path.split('/').pop()!.replace(/(_0000)?\.nii(\.gz)?$/i, ''), images };
  }
  const named = await Promise.all(files.map(async (f) => ({ name: f.path, bytes: new Uint8Array(await f.file.arrayBuffer()) })));
  const { series, skipped } = readDicomFiles(named);
  const ok = series.filter((s) => s.volume);
  if (ok.length === 0) {
    const why = series[0]?.error ?? (skipped[0] ? `${skipped[0].name}: ${skipped[0].reason}` : 'no readable image');
    throw new Error(`these files are neither NIfTI (.nii, .nii.gz) nor a readable DICOM series (${why})`);
  }
  // Several series (e.g. a whole study): the one with most slices.
  const s = ok.sort((a, b) => b.files.length - a.files.length)[0];
  const top = files[0].path.includes('/') ? files[0].path.split('/')[0] : 'DICOM';
  return { name: s.seriesDescription ? `${top} (${s.seriesDescription})` : top, images: [s.volume!] };
}

function labelNamesOf(dj: DecodedModelFolder['datasetJson']): Record<number, string> {
  const info = labelInfo(dj);
  const out: Record<number, string> = { 0: 'background' };
  const entries = Object.entries(dj.labels).filter(([k]) => k !== 'ignore' && k !== 'background');
  if (info.hasRegions) {
    entries.forEach(([name], i) => (out[info.regionsClassOrder![i]] = name));
  } else {
    for (const [name, v] of entries) out[v as number] = name;
  }
  return out;
}

const api = {
  async models(): Promise<ModelRecord[]> {
    return listModels(await db());
  },

  async importModel(input: ImportModelInput): Promise<ModelRecord> {
    const { files, folder } = await unpackModelFolder(input.files.map((f) => ({ path: f.path, bytes: async () => new Uint8Array(await f.file.arrayBuffer()) })));
    return saveModel(await db(), files, { name: input.name || folder, source: input.source ?? 'imported' });
  },

  /** For other parts of the app (training, federation) handing over a model folder's bytes. */
  async saveModelFiles(files: Record<string, Uint8Array>, opts: { name: string; source: ModelSource; origin?: string }): Promise<ModelRecord> {
    return saveModel(await db(), files, opts);
  },

  async renameModel(id: string, name: string): Promise<void> {
    await renameModel(await db(), id, name);
  },

  async deleteModel(id: string): Promise<boolean> {
    if (cached?.key.startsWith(`${id}|`)) await dropCache();
    return deleteModel(await db(), id);
  },

  /** The package as a zip (the folder's files at its root). */
  async exportModel(id: string): Promise<{ fileName: string; bytes: Uint8Array }> {
    const d = await db();
    const [files, rec] = await Promise.all([loadModelFiles(d, id), listModels(d).then((l) => l.find((m) => m.id === id))]);
    if (!files || !rec) throw new Error('this model is no longer stored in this browser');
    const zip = zipModelFolder(files);
    return Comlink.transfer({ fileName: `${safeName(rec.name)}.zip`, bytes: zip }, [zip.buffer]);
  },

  /** model.onnx of a package, built from its weights (and stored) when it has none. */
  async exportOnnx(id: string): Promise<{ fileName: string; bytes: Uint8Array; built: boolean }> {
    const d = await db();
    const md = await loadModel(d, id);
    if (!md) throw new Error('this model is no longer stored in this browser');
    let bytes = md.onnx;
    const built = !bytes;
    if (!bytes) {
      bytes = buildOnnxModel(archFromFolder(md), md.weights);
      await putModelFile(d, id, MODEL_FILES.onnx, bytes);
    }
    const out = bytes.slice();
    return Comlink.transfer({ fileName: `${safeName(md.record.name)}.onnx`, bytes: out, built }, [out.buffer]);
  },

  cancel(): void {
    current?.abort();
  },

  async predict(modelId: string, scan: ScanInput, req: PredictRequest, onEvent: (e: InferEvent) => void): Promise<PredictSummary> {
    if (current) throw new Error('a segmentation is already running; cancel it first');
    const ctrl = new AbortController();
    current = ctrl;
    const t0 = performance.now();
    try {
      const backend = req.backend ?? 'auto';
      if (!INFER_BACKENDS.includes(backend)) throw new Error(`unknown engine '${backend}'`);
      onEvent({ phase: 'loading-model' });
      const md = await loadModel(await db(), modelId);
      if (!md) throw new Error('this model is no longer stored in this browser; import it again');
      onEvent({ phase: 'reading-scan' });
      const { name, images } = await readScan(scan);
      const nIn = md.meta.num_input_channels;
      const channels = images.reduce((s, v) => s + v.channels, 0);
      if (channels !== nIn) {
        throw new Error(`the model expects ${nIn} image channel(s) (${Object.values(md.datasetJson.channel_names ?? {}).join(', ')}) but the scan has ${channels}. Give one file per channel, named …_0000, …_0001`);
      }
      const eng = await engineFor(modelId, md, backend, req.budgetMB ?? 512, req.numThreads);
      const tLoad = performance.now() - t0;
      ctrl.signal.throwIfAborted();
      onEvent({ phase: 'preprocessing', engine: eng.engine });
      let tiles = 0;
      const res = await predictCase(images, { plans: md.plans, configuration: md.configuration, datasetJson: md.datasetJson }, eng.predictTiles, {
        tta: req.tta ?? false,
        mirrorAxes: md.meta.inference_allowed_mirroring_axes,
        tileBatch: eng.tileBatch,
        signal: ctrl.signal,
        onProgress: (done, total) => {
          tiles = total;
          onEvent({ phase: 'predicting', done, total, engine: eng.engine });
        },
      });
      onEvent({ phase: 'exporting', engine: eng.engine });
      const te = performance.now();
      const seg = res.segmentation;
      const labels = seg.data as Uint8Array | Uint16Array;
      const names = labelNamesOf(md.datasetJson);
      const counts = new Map<number, number>();
      for (let i = 0; i < labels.length; i++) counts.set(labels[i], (counts.get(labels[i]) ?? 0) + 1);
      const voxelMl = (seg.spacing[0] * seg.spacing[1] * seg.spacing[2]) / 1000;
      const values = [...new Set([...Object.keys(names).map(Number), ...counts.keys()])].filter((v) => v !== 0).sort((a, b) => a - b);
      const volumes = values.map((value) => ({ value, name: names[value] ?? `label ${value}`, voxels: counts.get(value) ?? 0, ml: (counts.get(value) ?? 0) * voxelMl }));
      const segmentationNifti = writeNifti(seg, { gzip: true });
      const first = images[0];
      const scanNifti = writeNifti(first.channels > 1 ? { ...first, channels: 1, data: first.data.subarray(0, first.dims[0] * first.dims[1] * first.dims[2]) } : first);
      const tExport = res.timingsMs.export + (performance.now() - te);
      const out: PredictSummary = {
        scanName: name,
        labels,
        dims: [...seg.dims],
        spacing: [...seg.spacing],
        affine: [...seg.affine],
        volumes,
        segmentationNifti,
        scanNifti,
        labelNames: names,
        engine: eng.engine,
        backend,
        tta: req.tta ?? false,
        tiles,
        tileBatch: eng.tileBatch,
        timingsMs: { load: tLoad, preprocess: res.timingsMs.preprocess, predict: res.timingsMs.predict, export: tExport, total: performance.now() - t0 },
      };
      return Comlink.transfer(out, [labels.buffer as ArrayBuffer, segmentationNifti.buffer as ArrayBuffer, scanNifti.buffer as ArrayBuffer]);
    } finally {
      current = undefined;
    }
  },
};

function safeName(s: string): string {
  return s.replace(/[^\w.-]+/g, '_').replace(/^_+|_+$/g, '') || 'model';
}

export type InferApi = typeof api;
// onnxruntime-web's wasm threads are workers started from the chunk that holds onnxruntime-web
// (named 'em-pthread'); only the worker the page starts exposes the API.
if (!self.name?.startsWith('em-pthread')) Comlink.expose(api);
