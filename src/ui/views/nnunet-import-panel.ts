// The Predict tab's import of a model trained by nnU-Net v2 (a results folder, or the zip
// nnUNetv2_export_model_to_zip writes): pick the results folder (when the zip has several), the
// folds (all by default) and the checkpoint, then import with a progress bar by bytes read. The
// reading, the safe .pth parsing and the storing all run in workers/infer.worker.ts.
import * as Comlink from 'comlink';
import { el, errorText, formatBytes } from '../dom.ts';
import type {
  FoundNnUNetModel,
  InferApi,
  NnUNetImportProgress,
} from '../../../workers/infer.worker.ts';
import type { ModelRecord } from '../../store/models.ts';
import type { DroppedFile } from '../../infer/scan-files.ts';

/** Plain words for a refused import, with what to do. */
export function nnunetImportError(e: unknown): string {
  const m = errorText(e);
  if (/network class .* not supported|not supported by this build/.test(m))
    return `${m}. This app builds PlainConvUNet and ResidualEncoderUNet (BasicBlockD) networks only; nothing was stored.`;
  if (/pickle|opcode|global|persistent id/i.test(m))
    return `The checkpoint was refused by the safe reader (${m}). Only checkpoints as nnU-Net's trainer saves them are read; nothing was stored.`;
  return `The nnU-Net model could not be imported: ${m}. Nothing was stored.`;
}

export function nnunetImportPanel(
  api: Comlink.Remote<InferApi>,
  onImported: (rec: ModelRecord) => Promise<void>,
) {
  const dirSelect = el('select', { id: 'nnunet-dir', 'aria-label': 'nnU-Net results folder' });
  const folds = el('span', { id: 'nnunet-folds', class: 'row' });
  const checkpoint = el(
    'select',
    { id: 'nnunet-checkpoint', 'aria-label': 'Checkpoint' },
    el('option', { value: 'checkpoint_final.pth' }, 'final (checkpoint_final.pth)'),
    el('option', { value: 'checkpoint_best.pth' }, 'best (checkpoint_best.pth)'),
  );
  const go = el('button', { type: 'button', id: 'nnunet-import-run' }, 'Import');
  const dismiss = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const progress = el('progress', { id: 'nnunet-import-progress', max: '1', value: '0' });
  const status = el('p', { id: 'nnunet-import-status', role: 'status' });
  const title = el('strong', {});
  const root = el(
    'div',
    { id: 'nnunet-import', class: 'card', hidden: '' },
    title,
    el('div', { class: 'row' }, el('label', { for: 'nnunet-dir' }, 'Results folder '), dirSelect),
    el('div', { class: 'row' }, el('span', {}, 'Folds (averaged as nnU-Net does) '), folds),
    el(
      'div',
      { class: 'row' },
      el('label', { for: 'nnunet-checkpoint' }, 'Checkpoint '),
      checkpoint,
    ),
    el('div', { class: 'row' }, go, dismiss, progress),
    status,
  );
  progress.hidden = true;

  let files: DroppedFile[] = [];
  let models: FoundNnUNetModel[] = [];
  let busy = false;

  const current = () => models.find((m) => m.dir === dirSelect.value) ?? models[0];
  const foldBoxes = () => [...folds.querySelectorAll<HTMLInputElement>('input[data-fold]')];

  function showFolds(): void {
    const m = current();
    const ck = checkpoint.value;
    folds.replaceChildren(
      ...m.folds.map((f) => {
        const c = f.checkpoints.find((x) => x.name === ck);
        const box = el('input', { type: 'checkbox', 'data-fold': String(f.fold) });
        box.checked = !!c;
        box.disabled = !c;
        return el(
          'label',
          {},
          box,
          ` fold ${f.fold}${c ? ` (${formatBytes(c.bytes)})` : ` (no ${ck})`} `,
        );
      }),
    );
    update();
  }

  function update(): void {
    go.disabled = busy || !foldBoxes().some((b) => b.checked);
  }

  function show(given: DroppedFile[], name: string, found: FoundNnUNetModel[]): void {
    files = given;
    models = found;
    title.textContent = `nnU-Net v2 model: ${name}`;
    dirSelect.replaceChildren(...found.map((m) => el('option', { value: m.dir }, m.dir || m.name)));
    dirSelect.disabled = found.length < 2;
    // checkpoint_final is nnU-Net's default; offer best only where some fold has it.
    checkpoint.value = 'checkpoint_final.pth';
    status.textContent = '';
    status.className = '';
    root.hidden = false;
    showFolds();
  }

  async function run(): Promise<ModelRecord | undefined> {
    if (busy) return undefined;
    const chosen = foldBoxes()
      .filter((b) => b.checked)
      .map((b) => Number(b.dataset.fold));
    busy = true;
    update();
    progress.hidden = false;
    progress.value = 0;
    status.className = '';
    status.textContent = 'Reading the checkpoints…';
    const onProgress = (p: NnUNetImportProgress) => {
      progress.max = Math.max(1, p.bytesTotal);
      progress.value = p.bytesDone;
      status.dataset.phase = p.phase;
      status.textContent = `Fold ${p.fold} (${p.index} of ${p.count}): ${
        { reading: 'reading', decoding: 'checking and converting', stored: 'stored' }[p.phase]
      } — ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)} read`;
    };
    try {
      const rec = await api.importNnUNet(
        files,
        {
          dir: current().dir,
          folds: chosen,
          checkpoint: checkpoint.value as 'checkpoint_final.pth' | 'checkpoint_best.pth',
        },
        Comlink.proxy(onProgress),
      );
      status.textContent = `Imported ${rec.name}.`;
      status.className = 'ok';
      status.dataset.phase = 'done';
      await onImported(rec);
      return rec;
    } catch (e) {
      status.textContent = nnunetImportError(e);
      status.className = 'bad';
      delete status.dataset.phase;
      return undefined;
    } finally {
      busy = false;
      progress.hidden = true;
      update();
    }
  }

  dirSelect.addEventListener('change', showFolds);
  checkpoint.addEventListener('change', showFolds);
  folds.addEventListener('change', update);
  go.addEventListener('click', () => void run());
  dismiss.addEventListener('click', () => {
    root.hidden = true;
    files = [];
  });

  return { root, show, run };
}
