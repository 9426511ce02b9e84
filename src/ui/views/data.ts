// "Data": import scans into this browser (IndexedDB) and manage the datasets stored here.
// Parsing, validation and storing run in workers/data.worker.ts; this view only shows progress.
import * as Comlink from 'comlink';
import { el, errorText, formatBytes } from '../dom.ts';
import { wireDropZone } from '../drop-zone.ts';
import { FILE_ACCEPT } from '../../io/formats.ts';
import type {
  DataApi,
  ImportEvent,
  ImportInput,
  ImportSummary,
  PrepareEvent,
  PrepareSummary,
} from '../../../workers/data.worker.ts';
import { isAbort } from '../../util/errors.ts';
import { splitDetails } from '../../io/import-summary.ts';
import { importAdvice, sizeText, storageLine } from '../../store/storage-manage.ts';

/** A folded list of details under a plain sentence (readers' messages, per-case reasons). */
function folded(details: string[], id?: string): HTMLElement[] {
  if (!details.length) return [];
  return [
    el(
      'details',
      { class: 'import-details', ...(id ? { id } : {}) },
      el('summary', {}, `Details (${details.length})`),
      el('ul', {}, ...details.map((d) => el('li', {}, d))),
    ),
  ];
}

type DatasetView = Awaited<ReturnType<DataApi['datasets']>>[number];

export function dataView(api: Comlink.Remote<DataApi>): {
  root: HTMLElement;
  refresh: () => Promise<void>;
  importInput: (i: ImportInput | { demo: number }) => Promise<ImportSummary | undefined>;
} {
  const drop = el(
    'div',
    {
      class: 'drop',
      id: 'drop-zone',
      tabindex: '0',
      role: 'button',
    },
    el(
      'strong',
      {},
      'Drop an nnU-Net dataset folder, NIfTI/NRRD/MetaImage files or a DICOM folder here',
    ),
    el(
      'span',
      {},
      'Files are read in this browser and stored on this computer only. Nothing is uploaded.',
    ),
  );
  const folderInput = el('input', {
    type: 'file',
    id: 'import-folder',
    webkitdirectory: '',
    hidden: '',
  });
  const filesInput = el('input', {
    type: 'file',
    id: 'import-files',
    multiple: '',
    accept: FILE_ACCEPT,
    hidden: '',
  });
  const pickFolder = el('button', { type: 'button', id: 'pick-folder' }, 'Choose a folder…');
  const pickFiles = el(
    'button',
    { type: 'button', id: 'pick-files', class: 'secondary' },
    'Choose files…',
  );
  const demoSite = el(
    'select',
    { id: 'demo-site', 'aria-label': 'Demo site' },
    el('option', { value: '0' }, 'Demo site A (1×1×1.2 mm)'),
    el('option', { value: '1' }, 'Demo site B (0.8×0.8×2 mm, brighter scanner)'),
    el('option', { value: '2' }, 'Demo site C (1.25 mm isotropic)'),
  );
  const useDemo = el(
    'button',
    { type: 'button', id: 'use-demo', class: 'secondary' },
    'Use demo data',
  );
  const progress = el('progress', { id: 'import-progress', max: '1', value: '0', hidden: '' });
  const status = el('p', { id: 'import-status', role: 'status' });
  const cancel = el(
    'button',
    { type: 'button', id: 'import-cancel', class: 'secondary', hidden: '' },
    'Cancel import',
  );
  const result = el('div', { id: 'import-result' });
  const allow = el('input', { type: 'checkbox', id: 'import-allow-problems' });
  const allowLabel = el(
    'label',
    { for: 'import-allow-problems' },
    allow,
    ' Keep cases with problems (marked in the list) instead of refusing the import',
  );
  const list = el('div', { id: 'dataset-list' });
  const storageText = el('p', { id: 'storage-line' });
  const storageStatus = el('p', { id: 'storage-status', role: 'status' });
  const deleteAll = el(
    'button',
    { type: 'button', class: 'danger', id: 'delete-everything' },
    'Delete everything stored here…',
  );

  const root = el(
    'div',
    {},
    el(
      'section',
      { class: 'card' },
      el('h2', {}, 'Import scans'),
      drop,
      el(
        'div',
        { class: 'row' },
        pickFolder,
        pickFiles,
        el('span', { class: 'muted' }, 'or'),
        demoSite,
        useDemo,
      ),
      allowLabel,
      folderInput,
      filesInput,
      el('div', { class: 'row' }, progress, cancel),
      status,
      result,
    ),
    el('section', { class: 'card' }, el('h2', {}, 'Datasets in this browser'), list),
    el(
      'section',
      { class: 'card', id: 'storage-card' },
      el('h2', {}, 'Storage'),
      storageText,
      el(
        'p',
        { class: 'muted' },
        'Scans, models and training checkpoints live in this browser (IndexedDB) only. Delete a dataset above, a model on the Predict tab, or everything here; this browser keeps its site key.',
      ),
      el('div', { class: 'row' }, deleteAll),
      storageStatus,
    ),
  );

  let busy = false;
  const setBusy = (b: boolean) => {
    busy = b;
    pickFolder.disabled = b;
    useDemo.disabled = b;
    pickFiles.disabled = b;
    progress.hidden = !b;
    cancel.hidden = !b;
    drop.classList.toggle('busy', b);
  };

  const onEvent = (e: ImportEvent) => {
    progress.max = Math.max(1, e.casesTotal);
    progress.value = e.casesDone;
    const what =
      e.phase === 'reading'
        ? `Read ${e.caseId ?? 'case'}`
        : e.phase === 'storing'
          ? 'Stored'
          : e.phase === 'committing'
            ? 'Finishing'
            : e.phase === 'rolling-back'
              ? 'Undoing'
              : 'Done';
    status.textContent = `${what}: ${e.casesDone} of ${e.casesTotal} cases, ${formatBytes(e.bytesWritten)} written`;
    status.dataset.phase = e.phase;
  };

  async function importInput(
    input: ImportInput | { demo: number },
  ): Promise<ImportSummary | undefined> {
    if (busy) return undefined;
    setBusy(true);
    result.replaceChildren();
    status.textContent = 'Starting…';
    const notes: HTMLElement[] = [];
    try {
      // Ask for persistent storage before a large import (not after: a browser under storage
      // pressure could evict a half-used dataset), and say plainly when it will not fit.
      if (!('demo' in input)) {
        const bytes = input.files ? input.files.reduce((n, f) => n + f.file.size, 0) : undefined;
        const est = await navigator.storage?.estimate?.().catch(() => undefined);
        const persisted = await navigator.storage?.persisted?.().catch(() => undefined);
        const advice = importAdvice(bytes, est, persisted);
        if (advice.askPersistence) {
          const granted = await navigator.storage?.persist?.().catch(() => false);
          if (granted === false)
            notes.push(
              el(
                'p',
                { class: 'muted' },
                'The browser did not grant persistent storage: it may evict this data when the disk is full.',
              ),
            );
        }
        if (advice.warning) notes.push(el('p', { class: 'warn' }, advice.warning));
      }
      const s =
        'demo' in input
          ? await api.importDemo(input.demo, Comlink.proxy(onEvent))
          : await api.importFiles(
              { allowProblems: allow.checked, ...input },
              Comlink.proxy(onEvent),
            );
      const lines = [
        el(
          'p',
          { class: 'ok' },
          `Imported ${s.name}: ${s.numCases} case(s)${s.replaced ? ' (replaced the earlier import of the same name)' : ''}.`,
        ),
      ];
      if (s.casesWithProblems)
        lines.push(
          el(
            'p',
            { class: 'warn' },
            `${s.casesWithProblems} case(s) have problems; see the list below.`,
          ),
        );
      // One plain sentence for the files; the readers' messages folded under it.
      if (s.files) lines.push(el('p', { id: 'import-summary' }, `${s.files.headline}.`));
      const details = s.files
        ? s.files.details
        : [...s.skipped.map((k) => `case ${k.id} left out: ${k.reason}`), ...s.warnings];
      result.replaceChildren(...lines, ...folded(details, 'import-details'), ...notes);
      status.textContent = 'Import finished.';
      return s;
    } catch (e) {
      const aborted = isAbort(e);
      // The first line of the message is for people; the rest (readers' messages) is folded.
      const { headline, details } = splitDetails(errorText(e));
      result.replaceChildren(
        el(
          'p',
          { class: 'bad', id: 'import-error' },
          aborted
            ? 'Import cancelled. Nothing was stored; your other datasets are unchanged.'
            : `Import failed: ${headline.replace(/\.$/, '')}. Nothing was stored; your other datasets are unchanged.`,
        ),
        ...(aborted ? [] : folded(details, 'import-details')),
        ...notes,
      );
      status.textContent = '';
      return undefined;
    } finally {
      setBusy(false);
      await refresh();
    }
  }

  cancel.addEventListener('click', () => void api.cancelImport());
  useDemo.addEventListener('click', () => void importInput({ demo: Number(demoSite.value) }));
  pickFiles.addEventListener('click', () => filesInput.click());
  pickFolder.addEventListener('click', async () => {
    const picker = (
      window as unknown as { showDirectoryPicker?: () => Promise<FileSystemDirectoryHandle> }
    ).showDirectoryPicker;
    if (!picker) return folderInput.click();
    try {
      const dir = await picker();
      await importInput({ dir });
    } catch (e) {
      if (!isAbort(e)) result.replaceChildren(el('p', { class: 'bad' }, errorText(e)));
    }
  });
  const fromInput = (input: HTMLInputElement) => {
    const files = [...(input.files ?? [])].map((f) => ({
      path: f.webkitRelativePath || f.name,
      file: f,
    }));
    input.value = '';
    if (files.length) void importInput({ files });
  };
  folderInput.addEventListener('change', () => fromInput(folderInput));
  filesInput.addEventListener('change', () => fromInput(filesInput));
  wireDropZone(
    drop,
    () => pickFolder.click(),
    (files) => void importInput({ files }),
  );

  function datasetRow(d: DatasetView): HTMLElement {
    const del = el(
      'button',
      { type: 'button', class: 'danger', 'data-delete': d.id, 'aria-label': `Delete ${d.name}` },
      'Delete',
    );
    del.addEventListener('click', async () => {
      if (!confirm(`Delete ${d.name} (${d.numCases} cases) from this browser?`)) return;
      await api.remove(d.id);
      await refresh();
    });
    const cases = el('ul', { class: 'cases' });
    for (const c of d.cases) {
      const ok = c.problems.filter((p) => !p.startsWith('warning:')).length === 0;
      cases.append(
        el(
          'li',
          { 'data-case': c.caseId, 'data-ok': String(ok) },
          `${ok ? '✓' : '✗'} ${c.caseId}`,
          el(
            'span',
            { class: 'muted' },
            ` ${c.dims?.join('×') ?? ''} @ ${c.spacing?.map((s) => s.toFixed(2)).join('×') ?? ''} mm${c.hasLabel ? ', labelled' : ''}`,
          ),
          ...(c.problems.length
            ? [
                el(
                  'ul',
                  {},
                  ...c.problems.map((p) =>
                    el('li', { class: p.startsWith('warning:') ? 'muted' : 'bad' }, p),
                  ),
                ),
              ]
            : []),
        ),
      );
    }
    const trainable = Object.keys(d.labels).length > 1 && d.cases.every((c) => c.hasLabel);
    // The delete button sits beside the <details>, not in its <summary>: a button inside the
    // summary (itself a control) is a nested control that keyboards and screen readers mishandle.
    const details = el(
      'details',
      { class: 'dataset', style: 'flex: 1', 'data-dataset': d.name, 'data-id': d.id },
      el(
        'summary',
        {},
        el('strong', {}, d.name),
        ` — ${d.numCases} case(s), ${d.channelNames.join(' + ')}, ${formatBytes(d.bytes)}`,
        d.casesWithProblems
          ? el('span', { class: 'bad' }, ` · ${d.casesWithProblems} with problems`)
          : el('span', { class: 'ok' }, ' · all cases valid'),
      ),
      cases,
      trainable
        ? prepareBox(d)
        : el(
            'p',
            { class: 'muted' },
            'Unlabelled scans: ready to be segmented (Predict), not to train on.',
          ),
    );
    return el(
      'div',
      {
        class: 'dataset-row',
        style: 'display: flex; gap: 0.5rem; align-items: flex-start',
      },
      details,
      el('div', { style: 'padding-top: 0.5rem' }, del),
    );
  }

  /** Fingerprint → plan → preprocess, with progress, cancel and the planned network shown. */
  function prepareBox(d: DatasetView): HTMLElement {
    const config = el(
      'select',
      { 'aria-label': 'Configuration', 'data-prepare-config': d.id },
      el('option', { value: '3d_fullres' }, '3d_fullres'),
      el('option', { value: '2d' }, '2d'),
    );
    const go = el(
      'button',
      { type: 'button', 'data-prepare': d.id },
      'Fingerprint, plan and preprocess',
    );
    const stop = el('button', { type: 'button', class: 'secondary', hidden: '' }, 'Cancel');
    const bar = el('progress', { max: '1', value: '0', hidden: '' });
    const line = el('p', { class: 'muted', 'data-prepare-status': d.id });
    const out = el('div', { 'data-prepare-result': d.id });
    stop.addEventListener('click', () => void api.cancelImport());
    go.addEventListener('click', async () => {
      if (busy) return;
      busy = true;
      go.disabled = true;
      stop.hidden = false;
      bar.hidden = false;
      out.replaceChildren();
      try {
        const s: PrepareSummary = await api.prepare(
          d.id,
          { configuration: config.value as '3d_fullres' | '2d' },
          Comlink.proxy((e: PrepareEvent) => {
            bar.max = Math.max(1, e.total);
            bar.value = e.done;
            line.textContent = `${e.stage === 'fingerprint' ? 'Fingerprinting' : e.stage === 'plan' ? 'Planning' : 'Preprocessing'}: ${e.done} of ${e.total}${e.caseId ? ` (${e.caseId})` : ''}`;
          }),
        );
        line.textContent = `Done in ${((s.ms.fingerprint + s.ms.plan + s.ms.preprocess) / 1000).toFixed(1)} s (fingerprint ${(s.ms.fingerprint / 1000).toFixed(1)} s, preprocessing ${(s.ms.preprocess / 1000).toFixed(1)} s).`;
        out.replaceChildren(
          el(
            'dl',
            {},
            el('dt', {}, 'configuration'),
            el('dd', {}, `${s.configuration} (${s.plansName})`),
            el('dt', {}, 'target spacing'),
            el('dd', { 'data-k': 'spacing' }, s.spacing.map((x) => x.toFixed(3)).join(' × ')),
            el('dt', {}, 'patch size'),
            el('dd', { 'data-k': 'patch' }, s.patchSize.join(' × ')),
            el('dt', {}, 'batch size'),
            el('dd', { 'data-k': 'batch' }, String(s.batchSize)),
            el('dt', {}, 'network'),
            el('dd', {}, `${s.stages} stages, features ${s.features.join('/')}`),
            el('dt', {}, 'normalisation'),
            el(
              'dd',
              {},
              s.normalization
                .map((n, i) => `${n}${s.useMaskForNorm[i] ? ' (masked)' : ''}`)
                .join(', '),
            ),
            el('dt', {}, 'preprocessed'),
            el('dd', { 'data-k': 'cases' }, `${s.casesPreprocessed} cases stored`),
          ),
        );
      } catch (e) {
        line.textContent = '';
        out.replaceChildren(
          el(
            'p',
            { class: 'bad' },
            isAbort(e)
              ? 'Cancelled. Cases already preprocessed stay stored.'
              : `Failed: ${errorText(e)}`,
          ),
        );
      } finally {
        busy = false;
        go.disabled = false;
        stop.hidden = true;
        bar.hidden = true;
      }
    });
    return el(
      'div',
      { class: 'prepare' },
      el('div', { class: 'row' }, config, go, stop, bar),
      line,
      out,
    );
  }

  async function refresh(): Promise<void> {
    const all = await api.datasets();
    list.replaceChildren(
      ...(all.length
        ? all.map(datasetRow)
        : [el('p', { class: 'muted', id: 'no-datasets' }, 'No dataset yet. Import one above.')]),
    );
    await refreshStorage();
  }

  async function refreshStorage(): Promise<void> {
    const [t, est, persisted] = await Promise.all([
      api.storedTotals(),
      navigator.storage?.estimate?.().catch(() => undefined),
      navigator.storage?.persisted?.().catch(() => undefined),
    ]);
    storageText.textContent = `${storageLine(est, persisted)} Stored: ${t.datasets} dataset(s) (${sizeText(t.datasetBytes)} of voxels), ${t.models} model(s) (${sizeText(t.modelBytes)}).`;
    deleteAll.disabled = t.datasets === 0 && t.models === 0;
  }

  deleteAll.addEventListener('click', async () => {
    const t = await api.storedTotals();
    if (
      !confirm(
        `Delete everything this app stored in this browser: ${t.datasets} dataset(s), ${t.models} model(s), training checkpoints and saved federations? This cannot be undone. The site key stays.`,
      )
    )
      return;
    const gone = await api.deleteEverything();
    storageStatus.textContent = `Deleted ${gone.datasets} dataset(s) and ${gone.models} model(s).`;
    await refresh();
  });

  return { root, refresh, importInput };
}
