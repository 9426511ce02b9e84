// "Predict": segment a scan with a model stored in this browser. Models are imported from a
// model folder or .zip (as `fednnunet train` writes them), exported again as .zip, .onnx or as
// nnU-Net v2's export zip (src/model/nnunet-export.ts). The
// scan is a stored case or files picked/dropped here (NIfTI, NRRD, MetaImage or a DICOM folder). Everything runs
// in workers/infer.worker.ts; nothing is uploaded.
import * as Comlink from 'comlink';
import { el, errorText, formatBytes } from '../dom.ts';
import { wireDropZone } from '../drop-zone.ts';
import { FILE_ACCEPT, isVolumePath } from '../../io/formats.ts';
import { labelColour, sliceViewer } from '../viewer.ts';
import type {
  InferApi,
  InferBackend,
  InferEvent,
  PredictSummary,
  ScanInput,
} from '../../../workers/infer.worker.ts';
import type { DataApi } from '../../../workers/data.worker.ts';
import type { ModelRecord } from '../../store/models.ts';
import { isAbort } from '../../util/errors.ts';
import { splitDetails } from '../../io/import-summary.ts';
import {
  CASE_ROLE_TEXT,
  caseRole,
  describeProvenance,
  type CaseRole,
} from '../../infer/model-provenance.ts';
import type { ModelProvenance } from '../../model/model-folder.ts';

const provenanceOf = (m: ModelRecord | undefined) => m?.provenance as ModelProvenance | undefined;

/** How the model was trained, in words, with a caution for demo models (beside every result). */
function provenanceBox(m: ModelRecord | undefined, id: string): HTMLElement {
  const d = describeProvenance(provenanceOf(m));
  return el(
    'div',
    { id, class: 'provenance' },
    el('p', { class: 'muted' }, d.text),
    ...(d.caution ? [el('p', { class: 'warn' }, d.caution)] : []),
  );
}
import { nnunetImportError, nnunetImportPanel } from './nnunet-import-panel.ts';

const SOURCE_NAMES: Record<string, string> = {
  imported: 'imported',
  'federation-global': 'federation (global)',
  personalised: 'personalised',
  local: 'trained here',
};

function download(
  bytes: Uint8Array | Blob,
  fileName: string,
  type = 'application/octet-stream',
): void {
  const blob =
    bytes instanceof Blob ? bytes : new Blob([bytes as Uint8Array<ArrayBuffer>], { type });
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: fileName, hidden: '' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Plain-words text for a failed prediction, with what to do next (details: see the catch). */
function predictError(e: unknown): string {
  const m = splitDetails(errorText(e)).headline;
  if (isAbort(e)) return 'Cancelled. Nothing was changed.';
  if (/out of memory|OOM|allocat|memory access out of bounds|RangeError: Array buffer/i.test(m))
    return `The browser ran out of memory (${m}). Close other tabs, or choose “ONNX on WebAssembly”, and try again.`;
  if (/webgpu/i.test(m) && !/no WebGPU/.test(m))
    return `The GPU engine failed (${m}). Choose “ONNX on WebAssembly” and try again.`;
  if (/NIfTI|NRRD|MetaImage|DICOM|vox_offset|datatype|read limit/i.test(m))
    return `The scan could not be read: ${m}. Check that it is a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr with its data file) or MetaImage (.mha, .mhd with its data file) file, or a folder with one DICOM series.`;
  return `Segmentation failed: ${m}.`;
}

export function predictView(api: Comlink.Remote<InferApi>, dataApi: Comlink.Remote<DataApi>) {
  // ---- models ----
  const modelSelect = el('select', { id: 'predict-model', 'aria-label': 'Model' });
  const modelList = el('ul', { id: 'model-list', class: 'models' });
  const modelFolder = el('input', {
    type: 'file',
    id: 'model-import-folder',
    webkitdirectory: '',
    hidden: '',
  });
  const modelZip = el('input', {
    type: 'file',
    id: 'model-import-zip',
    accept: '.zip,application/zip',
    hidden: '',
  });
  const pickModelFolder = el(
    'button',
    { type: 'button', id: 'pick-model-folder' },
    'Import a model folder…',
  );
  const pickModelZip = el(
    'button',
    { type: 'button', id: 'pick-model-zip', class: 'secondary' },
    'Import a .zip…',
  );
  const modelStatus = el('p', { id: 'model-status', role: 'status' });
  const modelInfo = el('div', { id: 'model-provenance' });
  const modelDrop = el(
    'div',
    {
      class: 'drop',
      id: 'model-drop',
      tabindex: '0',
      role: 'button',
    },
    el('strong', {}, 'Drop a model folder or .zip here'),
    el(
      'span',
      {},
      'This app’s model folders, or a model trained by nnU-Net v2 (its results folder, or the zip nnUNetv2_export_model_to_zip writes).',
    ),
  );

  // ---- scan ----
  const caseSelect = el('select', { id: 'predict-case', 'aria-label': 'Stored scan' });
  const scanFiles = el('input', {
    type: 'file',
    id: 'scan-files',
    multiple: '',
    accept: FILE_ACCEPT,
    hidden: '',
  });
  const scanFolder = el('input', {
    type: 'file',
    id: 'scan-folder',
    webkitdirectory: '',
    hidden: '',
  });
  const pickScanFiles = el(
    'button',
    { type: 'button', id: 'pick-scan-files', class: 'secondary' },
    'Choose NIfTI file(s)…',
  );
  const pickScanFolder = el(
    'button',
    { type: 'button', id: 'pick-scan-folder', class: 'secondary' },
    'Choose a DICOM folder…',
  );
  const scanDrop = el(
    'div',
    {
      class: 'drop',
      id: 'scan-drop',
      tabindex: '0',
      role: 'button',
    },
    el('strong', {}, 'Drop a NIfTI, NRRD or MetaImage file or a DICOM folder here'),
    el('span', {}, 'It is read in this browser only. Nothing is uploaded.'),
  );
  const scanChosen = el('p', { id: 'scan-chosen', class: 'muted' }, 'No scan chosen yet.');

  // ---- options and run ----
  const tta = el('input', { type: 'checkbox', id: 'predict-tta' });
  const backend = el(
    'select',
    { id: 'predict-backend', 'aria-label': 'Engine' },
    el('option', { value: 'auto' }, 'Automatic (ONNX on WebGPU, else WebAssembly)'),
    el('option', { value: 'onnx-webgpu' }, 'ONNX on WebGPU'),
    el('option', { value: 'onnx-wasm' }, 'ONNX on WebAssembly (CPU)'),
    el('option', { value: 'tfjs' }, 'TensorFlow.js on WebGPU'),
    el(
      'option',
      { value: 'tfjs-stock' },
      'TensorFlow.js on WebGPU, stock kernels (slower; fallback)',
    ),
  );
  const run = el('button', { type: 'button', id: 'predict-run' }, 'Segment');
  const cancel = el(
    'button',
    { type: 'button', id: 'predict-cancel', class: 'secondary', hidden: '' },
    'Cancel',
  );
  const progress = el('progress', { id: 'predict-progress', max: '1', value: '0', hidden: '' });
  const status = el('p', { id: 'predict-status', role: 'status' });
  const errorBox = el('div', { id: 'predict-error', role: 'alert' });

  // ---- result ----
  const viewer = sliceViewer();
  const volumeTable = el('table', { id: 'volume-table', hidden: '' });
  const downloadSeg = el(
    'button',
    { type: 'button', id: 'download-seg', hidden: '' },
    'Download segmentation (.nii.gz)',
  );
  const resultInfo = el('p', { id: 'predict-result', class: 'muted' });
  const resultModel = el('div', { id: 'predict-result-model' });

  const nnunet = nnunetImportPanel(api, async (rec) => {
    modelStatus.textContent = `Imported model ${rec.name}.`;
    modelStatus.className = 'ok';
    await refreshModels(rec.id);
  });

  const root = el(
    'div',
    {},
    el(
      'section',
      { class: 'card' },
      el('h2', {}, 'Models in this browser'),
      el('div', { class: 'row' }, pickModelFolder, pickModelZip),
      modelDrop,
      modelFolder,
      modelZip,
      modelStatus,
      nnunet.root,
      modelList,
    ),
    el(
      'section',
      { class: 'card' },
      el('h2', {}, 'Segment a scan'),
      el('div', { class: 'row' }, el('label', { for: 'predict-model' }, 'Model '), modelSelect),
      modelInfo,
      el(
        'div',
        { class: 'row' },
        el('label', { for: 'predict-case' }, 'Scan '),
        caseSelect,
        el('span', { class: 'muted' }, 'or'),
        pickScanFiles,
        pickScanFolder,
      ),
      scanDrop,
      scanFiles,
      scanFolder,
      scanChosen,
      el(
        'div',
        { class: 'row' },
        el(
          'label',
          { for: 'predict-tta' },
          tta,
          ' Mirroring test-time augmentation (slower, a little more accurate)',
        ),
        el('label', { for: 'predict-backend' }, 'Engine '),
        backend,
      ),
      el('div', { class: 'row' }, run, cancel, progress),
      status,
      errorBox,
    ),
    el(
      'section',
      { class: 'card', id: 'predict-output' },
      el('h2', {}, 'Result'),
      resultModel,
      resultInfo,
      viewer.root,
      volumeTable,
      downloadSeg,
    ),
  );

  let models: ModelRecord[] = [];
  let datasets: Awaited<ReturnType<DataApi['datasets']>> = [];
  let scan: ScanInput | undefined;
  let busy = false;
  let last: PredictSummary | undefined;

  function modelRow(m: ModelRecord): HTMLElement {
    const exp = el(
      'button',
      { type: 'button', class: 'secondary', 'data-export-model': m.id },
      'Export (.zip)',
    );
    const onnx = el(
      'button',
      { type: 'button', class: 'secondary', 'data-export-onnx': m.id },
      'Export ONNX',
    );
    const nnunet = el(
      'button',
      { type: 'button', class: 'secondary', 'data-export-nnunet': m.id },
      'Export for nnU-Net (.zip)',
    );
    const del = el(
      'button',
      {
        type: 'button',
        class: 'danger',
        'data-delete-model': m.id,
        'aria-label': `Delete model ${m.name}`,
      },
      'Delete',
    );
    exp.addEventListener('click', async () => {
      try {
        const r = await api.exportModel(m.id);
        download(r.bytes, r.fileName, 'application/zip');
      } catch (e) {
        modelStatus.textContent = `Export failed: ${errorText(e)}`;
      }
    });
    onnx.addEventListener('click', async () => {
      onnx.disabled = true;
      modelStatus.textContent = m.hasOnnx
        ? 'Preparing the ONNX file…'
        : 'Building the ONNX file from the weights…';
      try {
        const r = await api.exportOnnx(m.id);
        download(r.bytes, r.fileName);
        modelStatus.textContent = `Exported ${r.fileName} (${formatBytes(r.bytes.byteLength)})${r.built ? '; it is now kept with the model' : ''}.`;
        await refreshModels();
      } catch (e) {
        modelStatus.textContent = `ONNX export failed: ${errorText(e)}`;
      } finally {
        onnx.disabled = false;
      }
    });
    nnunet.addEventListener('click', async () => {
      nnunet.disabled = true;
      modelStatus.textContent = 'Writing the nnU-Net checkpoint…';
      try {
        const r = await api.exportNnUNet(m.id);
        download(r.blob, r.fileName);
        modelStatus.textContent = `Exported ${r.fileName} (${formatBytes(r.blob.size)}): nnUNetv2_install_pretrained_model_from_zip ${r.fileName}, then nnUNetv2_predict -d ${r.datasetName} -c ${m.configuration} -f 0.`;
      } catch (e) {
        modelStatus.textContent = `nnU-Net export failed: ${errorText(e)}`;
      } finally {
        nnunet.disabled = false;
      }
    });
    del.addEventListener('click', async () => {
      if (!confirm(`Delete the model ${m.name} from this browser?`)) return;
      await api.deleteModel(m.id);
      await refreshModels();
    });
    const labels = Object.keys(m.labels).filter((k) => k !== 'background' && k !== 'ignore');
    return el(
      'li',
      { 'data-model': m.name, 'data-id': m.id },
      el('strong', {}, m.name),
      el(
        'span',
        { class: 'muted' },
        ` — ${SOURCE_NAMES[m.source] ?? m.source}, ${m.configuration}, patch ${m.patchSize.join('×')} at ${m.spacing.map((s) => s.toFixed(2)).join('×')} mm, labels: ${labels.join(', ')}, ${formatBytes(m.bytes)}${m.hasOnnx ? ', with ONNX' : ''} `,
      ),
      exp,
      ' ',
      onnx,
      ' ',
      nnunet,
      ' ',
      del,
    );
  }

  async function refreshModels(select?: string): Promise<void> {
    models = await api.models();
    const keep = select ?? modelSelect.value;
    modelSelect.replaceChildren(
      ...(models.length
        ? models.map((m) =>
            el('option', { value: m.id }, `${m.name} (${SOURCE_NAMES[m.source] ?? m.source})`),
          )
        : [el('option', { value: '' }, 'No model yet: import one above')]),
    );
    if (models.some((m) => m.id === keep)) modelSelect.value = keep;
    showModel();
    modelList.replaceChildren(
      ...(models.length
        ? models.map(modelRow)
        : [
            el(
              'li',
              { class: 'muted', id: 'no-models' },
              'No model in this browser yet. Import a model folder (model.json, plans.json, dataset.json, weights.json, weights.bin) or a .zip of one.',
            ),
          ]),
    );
    updateRun();
  }

  const selectedModel = () => models.find((m) => m.id === modelSelect.value);

  /** The chosen model's provenance under the select, and the cases marked for it. */
  function showModel(): void {
    const m = selectedModel();
    modelInfo.replaceChildren(...(m ? [provenanceBox(m, 'model-provenance-text')] : []));
    renderCases();
  }

  async function refreshCases(): Promise<void> {
    datasets = await dataApi.datasets();
    renderCases();
  }

  /** Stored cases, each marked "trained on", "validation case" or "held out" for the chosen model. */
  function renderCases(): void {
    const keep = caseSelect.value;
    const all = datasets;
    const p = provenanceOf(selectedModel());
    const groups = all.map((d) =>
      el(
        'optgroup',
        { label: d.name },
        ...d.cases.map((c) => {
          const role = caseRole(p, d.name, c.caseId);
          return el(
            'option',
            {
              value: JSON.stringify({ datasetId: d.id, caseId: c.caseId }),
              ...(role ? { 'data-role': role } : {}),
            },
            `${c.caseId} (${c.dims?.join('×') ?? '?'})${role ? ` — ${CASE_ROLE_TEXT[role]}` : ''}`,
          );
        }),
      ),
    );
    caseSelect.replaceChildren(
      el(
        'option',
        { value: '' },
        all.length ? '— a stored scan —' : '— no stored scans (Data tab) —',
      ),
      ...groups,
    );
    if ([...caseSelect.options].some((o) => o.value === keep)) caseSelect.value = keep;
  }

  /** A dropped/picked folder or zip: this app's model folder is imported at once; an nnU-Net one opens its options. */
  async function modelFiles(files: Array<{ path: string; file: Blob }>): Promise<void> {
    if (!files.length) return;
    nnunet.root.hidden = true;
    modelStatus.className = '';
    modelStatus.textContent = 'Looking at the files…';
    try {
      const kind = await api.inspectModelFiles(files);
      if (kind.kind === 'model-folder') {
        await importModel(files);
        return;
      }
      modelStatus.textContent = `An nnU-Net v2 model: choose folds and checkpoint, then Import.`;
      nnunet.show(files, kind.name, kind.models);
    } catch (e) {
      modelStatus.textContent = /not an nnU-Net v2 results folder/.test(errorText(e))
        ? `The model could not be imported: neither this app’s model folder (no model.json) nor an nnU-Net model (${errorText(e)}). Nothing was stored.`
        : nnunetImportError(e);
      modelStatus.className = 'bad';
    }
  }

  async function importModel(
    files: Array<{ path: string; file: Blob }>,
  ): Promise<ModelRecord | undefined> {
    if (!files.length) return undefined;
    modelStatus.textContent = 'Checking and storing the model…';
    modelStatus.className = '';
    try {
      const rec = await api.importModel({ files });
      modelStatus.textContent = `Imported model ${rec.name}.`;
      modelStatus.className = 'ok';
      await refreshModels(rec.id);
      return rec;
    } catch (e) {
      modelStatus.textContent = `The model could not be imported: ${errorText(e)}. Nothing was stored.`;
      modelStatus.className = 'bad';
      return undefined;
    }
  }

  function setScan(s: ScanInput | undefined, label: string): void {
    scan = s;
    scanChosen.textContent = s ? `Scan: ${label}` : 'No scan chosen yet.';
    scanChosen.dataset.chosen = String(!!s);
    updateRun();
  }

  function updateRun(): void {
    run.disabled = busy || !scan || !modelSelect.value;
  }

  const onEvent = (e: InferEvent) => {
    status.dataset.phase = e.phase;
    if (e.phase === 'predicting' && e.total) {
      progress.max = e.total;
      progress.value = e.done ?? 0;
      status.textContent = `Segmenting with ${e.engine}: tile ${e.done} of ${e.total}`;
    } else {
      status.textContent = {
        'loading-model': 'Loading the model…',
        'reading-scan': 'Reading the scan…',
        preprocessing: `Preparing the scan (${e.engine})…`,
        exporting: 'Putting the result back on the scan’s grid…',
        predicting: 'Segmenting…',
      }[e.phase];
    }
  };

  async function predict(): Promise<PredictSummary | undefined> {
    if (busy || !scan || !modelSelect.value) return undefined;
    busy = true;
    updateRun();
    cancel.hidden = false;
    progress.hidden = false;
    progress.removeAttribute('value');
    errorBox.replaceChildren();
    status.textContent = 'Starting…';
    const model = selectedModel();
    const stored = 'datasetId' in scan ? scan : undefined;
    const role = stored
      ? caseRole(
          provenanceOf(model),
          datasets.find((d) => d.id === stored.datasetId)?.name ?? '',
          stored.caseId,
        )
      : undefined;
    try {
      const r = await api.predict(
        modelSelect.value,
        scan,
        { tta: tta.checked, backend: backend.value as InferBackend },
        Comlink.proxy(onEvent),
      );
      last = r;
      status.textContent = `Done in ${(r.timingsMs.total / 1000).toFixed(1)} s.`;
      status.dataset.phase = 'done';
      showResultModel(model, role);
      await showResult(r);
      return r;
    } catch (e) {
      status.textContent = '';
      delete status.dataset.phase;
      // Readers' own messages (after the first line) folded away under the plain sentence.
      const details = splitDetails(errorText(e)).details;
      errorBox.replaceChildren(
        el('p', { class: 'bad' }, predictError(e)),
        ...(details.length
          ? [
              el(
                'details',
                {},
                el('summary', {}, `Details (${details.length})`),
                el('ul', {}, ...details.map((d) => el('li', {}, d))),
              ),
            ]
          : []),
      );
      return undefined;
    } finally {
      busy = false;
      cancel.hidden = true;
      progress.hidden = true;
      updateRun();
    }
  }

  /** Beside every result: which model made it, how it was trained, and what the case was to it. */
  function showResultModel(m: ModelRecord | undefined, role: CaseRole | undefined): void {
    resultModel.replaceChildren(
      el('p', {}, el('strong', {}, `Model: ${m?.name ?? 'unknown'}`)),
      provenanceBox(m, 'result-provenance'),
      ...(role
        ? [
            el(
              'p',
              {
                id: 'result-case-role',
                'data-role': role,
                class: role === 'training' ? 'warn' : '',
              },
              role === 'training'
                ? 'This case was one of the model’s training cases: a good result here says little about new scans.'
                : role === 'validation'
                  ? 'This case was a validation case: the model was not trained on it, but it was used to follow training.'
                  : 'This case was held out: the model never saw it.',
            ),
          ]
        : []),
    );
  }

  async function showResult(r: PredictSummary): Promise<void> {
    const t = r.timingsMs;
    resultInfo.textContent = `${r.scanName}: ${r.dims.join('×')} voxels at ${r.spacing.map((s) => s.toFixed(2)).join('×')} mm; ${r.engine}${r.tta ? ' with mirroring' : ''}, ${r.tiles} tile(s) (${r.tileBatch} at a time); model ${(t.load / 1000).toFixed(1)} s, preparing ${(t.preprocess / 1000).toFixed(1)} s, network ${(t.predict / 1000).toFixed(1)} s, export ${(t.export / 1000).toFixed(1)} s.`;
    resultInfo.dataset.engine = r.engine;
    resultInfo.append(el('br'), `Engine: ${r.engine} (${r.engineReason}).`);
    resultInfo.dataset.engineReason = r.engineReason;
    volumeTable.replaceChildren(
      el('caption', {}, 'Volume per label'),
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          el('th', { scope: 'col' }, 'Label'),
          el('th', { scope: 'col' }, 'Voxels'),
          el('th', { scope: 'col' }, 'Volume (ml)'),
        ),
      ),
      el(
        'tbody',
        {},
        ...r.volumes.map((v) => {
          const [cr, cg, cb] = labelColour(v.value);
          return el(
            'tr',
            {
              'data-label': String(v.value),
              'data-ml': String(v.ml),
              'data-voxels': String(v.voxels),
            },
            el(
              'th',
              { scope: 'row' },
              el('span', { class: 'swatch', style: `background: rgb(${cr} ${cg} ${cb})` }),
              ` ${v.value}: ${v.name}`,
            ),
            el('td', {}, v.voxels.toLocaleString('en')),
            el('td', {}, v.ml.toFixed(2)),
          );
        }),
      ),
    );
    volumeTable.hidden = false;
    downloadSeg.hidden = false;
    try {
      await viewer.show(r.scanNifti, r.segmentationNifti, r.labelNames);
    } catch (e) {
      // The result is still there (table, download); only the picture is missing.
      errorBox.replaceChildren(
        el(
          'p',
          { class: 'warn' },
          `The slice viewer could not show the result (${errorText(e)}); WebGL2 may be off in this browser. The table and the download still work.`,
        ),
      );
    }
  }

  // ---- wiring ----
  pickModelFolder.addEventListener('click', () => modelFolder.click());
  pickModelZip.addEventListener('click', () => modelZip.click());
  const filesOf = (input: HTMLInputElement) => {
    const files = [...(input.files ?? [])].map((f) => ({
      path: f.webkitRelativePath || f.name,
      file: f as Blob,
    }));
    input.value = '';
    return files;
  };
  modelFolder.addEventListener('change', () => void modelFiles(filesOf(modelFolder)));
  modelZip.addEventListener('change', () => void modelFiles(filesOf(modelZip)));
  wireDropZone(
    modelDrop,
    () => modelFolder.click(),
    (f) => void modelFiles(f),
  );
  modelSelect.addEventListener('change', () => {
    showModel();
    updateRun();
  });
  caseSelect.addEventListener('change', () => {
    setScan(
      caseSelect.value ? JSON.parse(caseSelect.value) : undefined,
      caseSelect.selectedOptions[0]?.textContent ?? '',
    );
  });
  const fromFiles = (files: Array<{ path: string; file: Blob }>) => {
    if (!files.length) return;
    caseSelect.value = '';
    const volumes = files.filter((f) => isVolumePath(f.path));
    setScan(
      { files },
      volumes.length
        ? volumes.map((f) => f.path.split('/').pop()).join(', ')
        : `${files[0].path.split('/')[0]} (${files.length} files, read as DICOM)`,
    );
  };
  pickScanFiles.addEventListener('click', () => scanFiles.click());
  pickScanFolder.addEventListener('click', () => scanFolder.click());
  scanFiles.addEventListener('change', () => fromFiles(filesOf(scanFiles)));
  scanFolder.addEventListener('change', () => fromFiles(filesOf(scanFolder)));
  wireDropZone(scanDrop, () => scanFiles.click(), fromFiles);
  run.addEventListener('click', () => void predict());
  cancel.addEventListener('click', () => void api.cancel());
  downloadSeg.addEventListener('click', () => {
    if (last)
      download(
        last.segmentationNifti,
        `${last.scanName.replace(/[^\w.-]+/g, '_')}_seg.nii.gz`,
        'application/gzip',
      );
  });

  async function refresh(): Promise<void> {
    await Promise.all([refreshModels(), refreshCases()]);
  }

  return { root, refresh, predict, importModel, nnunet, viewer, last: () => last };
}
