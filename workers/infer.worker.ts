// Inference worker: model packages in IndexedDB (import from files, export as zip, export ONNX,
// delete) and segmentation of one scan (a stored case, NIfTI files or a DICOM folder) with
// onnxruntime-web (WebGPU, WebAssembly fallback) or tfjs on WebGPU. Exposed with comlink. Thin:
// the engine choice, scan reading, package unpacking and label statistics live in src/infer/.
import * as Comlink from 'comlink';
import { archFromFolder, MODEL_FILES, zipModelFolder } from '../src/model/model-folder.ts';
import { buildOnnxModel } from '../src/infer/onnx-export.ts';
import { exportNnUNetModel, nnunetExportZip } from '../src/model/nnunet-export.ts';
import { predictCase } from '../src/infer/predictor.ts';
import {
  createEngine,
  INFER_BACKENDS,
  type Engine,
  type InferBackend,
} from '../src/infer/engine-choice.ts';
import { readScanFiles, type DroppedFile } from '../src/infer/scan-files.ts';
import { filesOfPackage, safeName } from '../src/infer/model-package.ts';
import { labelNamesOf, labelVolumes, type LabelVolume } from '../src/infer/label-stats.ts';
import { writeNifti } from '../src/io/nifti-write.ts';
import type { Volume } from '../src/io/volume.ts';
import { engineEnv } from './engine-env.ts';
import { openStore, type StoreDB } from '../src/store/db.ts';
import { loadCaseVolumes } from '../src/store/datasets.ts';
import {
  deleteModel,
  listModels,
  loadModelFiles,
  renameModel,
  type ModelRecord,
  type ModelSource,
} from '../src/store/models.ts';
import {
  loadModel,
  putModelFile,
  saveModel,
  saveNnUNetModel,
  type StoredModel,
} from '../src/infer/stored-models.ts';
import { findNnUNetModels, type FoundNnUNetModel } from '../src/infer/nnunet-folds.ts';
import { givenFilesSource } from '../src/io/zip-source.ts';
import {
  foldEngines,
  nnunetPredictionModel,
  type FoldEngines,
  type NnUNetImportProgress,
} from '../src/infer/nnunet-import.ts';
import { predictNnUNetCase } from '../src/infer/nnunet-model.ts';

export type { InferBackend, LabelVolume, FoundNnUNetModel, NnUNetImportProgress };

/** What a dropped folder or zip holds: this app's model folder, or nnU-Net results folder(s). */
export type ModelFilesKind =
  { kind: 'model-folder' } | { kind: 'nnunet'; name: string; models: FoundNnUNetModel[] };

export interface NnUNetImportRequest {
  /** The results folder inside what was given (FoundNnUNetModel.dir). */
  dir: string;
  folds?: number[];
  checkpoint?: string;
  name?: string;
}

export type ScanInput = { datasetId: string; caseId: string } | { files: DroppedFile[] };

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
  /** Why that engine (e.g. Automatic on a software adapter → WebAssembly). */
  engineReason: string;
  backend: InferBackend;
  tta: boolean;
  tiles: number;
  tileBatch: number;
  timingsMs: { load: number; preprocess: number; predict: number; export: number; total: number };
}

export interface ImportModelInput {
  /** A model folder's files (any depth; the folder holding model.json is used) or one .zip. */
  files: DroppedFile[];
  name?: string;
  source?: ModelSource;
}

let dbPromise: Promise<StoreDB> | undefined;
const db = () => (dbPromise ??= openStore());
let current: AbortController | undefined;

// One cached network (the last model/backend used): a second prediction skips session creation.
let cached: (FoldEngines & { key: string }) | undefined;

async function dropCache(): Promise<void> {
  const c = cached;
  cached = undefined;
  await c?.release().catch(() => undefined);
}

async function engineFor(
  modelId: string,
  md: StoredModel,
  backend: InferBackend,
  budgetMB: number,
  numThreads?: number,
): Promise<NonNullable<typeof cached>> {
  const key = `${modelId}|${backend}|${budgetMB}|${numThreads ?? ''}`;
  if (cached?.key === key) return cached;
  await dropCache();
  // An nnU-Net fold ensemble: one engine per fold (predictNnUNetCase averages their logits).
  const members: Engine[] = [];
  try {
    for (const m of [md, ...md.ensemble])
      members.push(await createEngine(m, backend, budgetMB, engineEnv, numThreads));
  } catch (e) {
    await Promise.all(members.map((m) => m.release().catch(() => undefined)));
    throw e;
  }
  cached = { key, ...foldEngines(members) };
  return cached;
}

/** Reads a scan: a stored case, or volume files (NIfTI, NRRD, MetaImage) / one DICOM series (src/infer/scan-files.ts, through io/formats.ts). */
async function readScan(scan: ScanInput): Promise<{ name: string; images: Volume[] }> {
  if ('datasetId' in scan) {
    const v = await loadCaseVolumes(await db(), scan.datasetId, scan.caseId);
    if (!v) throw new Error(`case ${scan.caseId} is no longer stored in this browser (deleted?)`);
    return { name: scan.caseId, images: v.images };
  }
  return readScanFiles(scan.files);
}

const api = {
  async models(): Promise<ModelRecord[]> {
    return listModels(await db());
  },

  async importModel(input: ImportModelInput): Promise<ModelRecord> {
    const { files, folder } = await filesOfPackage(input.files);
    return saveModel(await db(), files, {
      name: input.name || folder,
      source: input.source ?? 'imported',
    });
  },

  /** Whether dropped files are a model folder (or its zip) or nnU-Net results folder(s). */
  async inspectModelFiles(files: DroppedFile[]): Promise<ModelFilesKind> {
    const src = await givenFilesSource(files);
    const list = await src.list();
    if (list.some((p) => p.split('/').pop() === MODEL_FILES.model)) return { kind: 'model-folder' };
    return { kind: 'nnunet', name: src.name, models: await findNnUNetModels(src) };
  },

  /** Imports (folds of) an nnU-Net results folder; progress by checkpoint bytes read. */
  async importNnUNet(
    files: DroppedFile[],
    req: NnUNetImportRequest,
    onProgress: (p: NnUNetImportProgress) => void,
  ): Promise<ModelRecord> {
    const src = await givenFilesSource(files);
    const found = (await findNnUNetModels(src)).find((m) => m.dir === req.dir);
    if (!found) throw new Error(`no nnU-Net results folder ${req.dir || '(root)'} in ${src.name}`);
    return saveNnUNetModel(await db(), src, found, {
      folds: req.folds,
      checkpoint: req.checkpoint,
      name: req.name,
      onProgress,
    });
  },

  /** For other parts of the app (training, federation) handing over a model folder's bytes. */
  async saveModelFiles(
    files: Record<string, Uint8Array>,
    opts: { name: string; source: ModelSource; origin?: string },
  ): Promise<ModelRecord> {
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
    const [files, rec] = await Promise.all([
      loadModelFiles(d, id),
      listModels(d).then((l) => l.find((m) => m.id === id)),
    ]);
    if (!files || !rec) throw new Error('this model is no longer stored in this browser');
    const zip = zipModelFolder(files);
    return Comlink.transfer({ fileName: `${safeName(rec.name)}.zip`, bytes: zip }, [zip.buffer]);
  },

  /** The model as nnU-Net v2's export zip (src/model/nnunet-export.ts), as a Blob of its parts. */
  async exportNnUNet(id: string): Promise<{ fileName: string; blob: Blob; datasetName: string }> {
    const md = await loadModel(await db(), id);
    if (!md) throw new Error('this model is no longer stored in this browser');
    const ex = exportNnUNetModel(md);
    const blob = new Blob(nnunetExportZip(ex) as Uint8Array<ArrayBuffer>[], {
      type: 'application/zip',
    });
    return {
      fileName: `${safeName(md.record.name)}_nnunet.zip`,
      blob,
      datasetName: ex.datasetName,
    };
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
    return Comlink.transfer({ fileName: `${safeName(md.record.name)}.onnx`, bytes: out, built }, [
      out.buffer,
    ]);
  },

  cancel(): void {
    current?.abort();
  },

  async predict(
    modelId: string,
    scan: ScanInput,
    req: PredictRequest,
    onEvent: (e: InferEvent) => void,
  ): Promise<PredictSummary> {
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
        throw new Error(
          `the model expects ${nIn} image channel(s) (${Object.values(md.datasetJson.channel_names ?? {}).join(', ')}) but the scan has ${channels}. Give one file per channel, named …_0000, …_0001`,
        );
      }
      const eng = await engineFor(modelId, md, backend, req.budgetMB ?? 512, req.numThreads);
      const tLoad = performance.now() - t0;
      ctrl.signal.throwIfAborted();
      onEvent({ phase: 'preprocessing', engine: eng.engine });
      let tiles = 0;
      const opts = {
        tta: req.tta ?? false,
        tileBatch: eng.tileBatch,
        signal: ctrl.signal,
        onProgress: (done: number, total: number) => {
          tiles = total;
          onEvent({ phase: 'predicting', done, total, engine: eng.engine });
        },
      };
      // An imported nnU-Net model is predicted as the CLI does (nnUNetPredictor's fp16 numerics).
      const nn = nnunetPredictionModel(md, [md, ...md.ensemble]);
      const res = nn
        ? await predictNnUNetCase(images, nn, eng.predictors, opts)
        : await predictCase(
            images,
            { plans: md.plans, configuration: md.configuration, datasetJson: md.datasetJson },
            eng.predictors,
            { ...opts, mirrorAxes: md.meta.inference_allowed_mirroring_axes },
          );
      onEvent({ phase: 'exporting', engine: eng.engine });
      const te = performance.now();
      const seg = res.segmentation;
      const labels = seg.data as Uint8Array | Uint16Array;
      const names = labelNamesOf(md.datasetJson);
      const volumes = labelVolumes(labels, seg.spacing, names);
      const segmentationNifti = writeNifti(seg, { gzip: true });
      const first = images[0];
      const scanNifti = writeNifti(
        first.channels > 1
          ? {
              ...first,
              channels: 1,
              data: first.data.subarray(0, first.dims[0] * first.dims[1] * first.dims[2]),
            }
          : first,
      );
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
        engineReason: eng.reason,
        backend,
        tta: req.tta ?? false,
        tiles,
        tileBatch: eng.tileBatch,
        timingsMs: {
          load: tLoad,
          preprocess: res.timingsMs.preprocess,
          predict: res.timingsMs.predict,
          export: tExport,
          total: performance.now() - t0,
        },
      };
      return Comlink.transfer(out, [
        labels.buffer as ArrayBuffer,
        segmentationNifti.buffer as ArrayBuffer,
        scanNifti.buffer as ArrayBuffer,
      ]);
    } finally {
      current = undefined;
    }
  },
};

export type InferApi = typeof api;
// onnxruntime-web's wasm threads are workers started from the chunk that holds onnxruntime-web
// (named 'em-pthread'); only the worker the page starts exposes the API.
if (!self.name?.startsWith('em-pthread')) Comlink.expose(api);
