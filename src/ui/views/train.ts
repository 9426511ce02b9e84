// "Train": nnU-Net's training loop on this browser's GPU (workers/train.worker.ts), with live
// loss and pseudo-Dice, pause/resume/stop, and resume after a reload from the last epoch.
import * as Comlink from 'comlink';
import { el, errorText } from '../dom.ts';
import { lineChart, titledChart } from '../chart.ts';
import type { DataApi } from '../../../workers/data.worker.ts';
import type { TrainApi, TrainEventOut, TrainRequest } from '../../../workers/train.worker.ts';

export function trainView(
  data: Comlink.Remote<DataApi>,
  train: Comlink.Remote<TrainApi>,
  gpu: boolean,
  /** The adapter's limits (probeWebGPU), for the full-or-reduced offer. */
  limits?: Record<string, number>,
) {
  const dataset = el('select', { id: 'train-dataset', 'aria-label': 'Dataset' });
  const configuration = el(
    'select',
    { id: 'train-config', 'aria-label': 'Configuration' },
    el('option', { value: '3d_fullres' }, '3d_fullres'),
    el('option', { value: '2d' }, '2d'),
  );
  const num = (id: string, value: number, label: string) => {
    const input = el('input', {
      id,
      type: 'number',
      min: '1',
      value: String(value),
      'aria-label': label,
      style: 'width:5rem',
    });
    return { input, wrap: el('label', {}, `${label} `, input) };
  };
  const epochs = num('train-epochs', 10, 'epochs');
  const iters = num('train-iters', 25, 'iterations per epoch');
  const valIters = num('train-val-iters', 5, 'validation iterations');
  const tiny = el('input', { type: 'checkbox', id: 'train-tiny' });
  (tiny as HTMLInputElement).checked = true;
  const tinyPatch = num('train-tiny-patch', 16, 'tiny patch edge');
  const backend = el(
    'select',
    { id: 'train-backend', 'aria-label': 'Backend' },
    el('option', { value: 'webgpu' }, 'WebGPU'),
    el('option', { value: 'webgpu-stock' }, 'WebGPU, stock tfjs kernels (slower; fallback)'),
    el('option', { value: 'cpu' }, 'CPU (slow; for checks)'),
  );
  if (!gpu) backend.value = 'cpu';
  const start = el('button', { type: 'button', id: 'train-start' }, 'Start / resume training');
  const restart = el('input', { type: 'checkbox', id: 'train-restart' });
  const pause = el(
    'button',
    { type: 'button', id: 'train-pause', class: 'secondary', disabled: '' },
    'Pause',
  );
  const stop = el(
    'button',
    { type: 'button', id: 'train-stop', class: 'secondary', disabled: '' },
    'Stop',
  );
  const check = el(
    'button',
    { type: 'button', id: 'train-gpu-check', class: 'secondary' },
    'Check training on this GPU',
  );
  if (!gpu) check.disabled = true;
  const status = el('p', { id: 'train-status', role: 'status' });
  // nnU-Net's full configuration where it fits this adapter, else the reduced plan, and why.
  const fitLine = el('p', { id: 'train-fit', class: 'muted' });
  let fit: Awaited<ReturnType<DataApi['trainFit']>> | undefined;
  async function updateFit(): Promise<void> {
    fit = undefined;
    fitLine.textContent = '';
    delete fitLine.dataset.offer;
    const lim = limits;
    if (!gpu || !lim?.maxStorageBufferBindingSize || !lim.maxBufferSize || !dataset.value) return;
    try {
      fit = await data.trainFit(dataset.value, configuration.value as '3d_fullres' | '2d', {
        maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
        maxBufferSize: lim.maxBufferSize,
      });
      fitLine.dataset.offer = fit.offer;
      const what =
        fit.offer === 'full'
          ? 'Network: the full nnU-Net configuration.'
          : fit.offer === 'reduced'
            ? `Network: reduced for this GPU (${fit.budgetMB} MB budget), unless the small network is ticked.`
            : 'Network: neither the full nor a reduced configuration fits this GPU.';
      fitLine.textContent = `${what} ${fit.reason}.`;
    } catch (e) {
      fitLine.textContent = `Could not check the configuration against this GPU: ${errorText(e)}`;
    }
  }
  dataset.addEventListener('change', () => void updateFit());
  configuration.addEventListener('change', () => void updateFit());
  const progress = el('p', { id: 'train-progress', class: 'muted' });
  const epochLine = el('p', { id: 'train-epoch' });
  const lossChart = lineChart(
    'Training loss per iteration',
    460,
    160,
    'No iterations yet: press Start and the loss appears here.',
  );
  lossChart.el.id = 'train-loss-chart';
  const diceChart = lineChart(
    'Pseudo-Dice per epoch',
    460,
    160,
    'No epoch finished yet: a point per epoch appears here.',
  );
  diceChart.el.id = 'train-dice-chart';
  const checkOut = el('div', { id: 'train-check-result' });

  const root = el(
    'div',
    {},
    el(
      'section',
      { class: 'card' },
      el('h2', {}, 'Train on this computer'),
      el(
        'p',
        { class: 'muted' },
        "Trains nnU-Net's 3D U-Net on the preprocessed cases of a dataset (prepare it on the Data tab first). The data never leaves this browser. A checkpoint is stored after every epoch; reopening the page resumes from it.",
      ),
      el(
        'p',
        { class: 'muted' },
        'Training as a site of a federation is shown live on the Federation tab (phase, progress, loss and pseudo-Dice).',
      ),
      el('div', { class: 'row' }, dataset, configuration, backend),
      fitLine,
      el('div', { class: 'row' }, epochs.wrap, iters.wrap, valIters.wrap),
      el(
        'div',
        { class: 'row' },
        el('label', {}, tiny, ' small network (tiny preset: 3 stages, 8/16/32 features)'),
        tinyPatch.wrap,
      ),
      el('div', { class: 'row' }, start, pause, stop, el('label', {}, restart, ' start over')),
      status,
      progress,
      epochLine,
      el(
        'div',
        { class: 'charts' },
        titledChart('Training loss per iteration', lossChart),
        titledChart('Pseudo-Dice per epoch (and its moving average)', diceChart),
      ),
    ),
    el(
      'section',
      { class: 'card' },
      el('h2', {}, 'GPU check'),
      el(
        'p',
        { class: 'muted' },
        'One training step (forward, deep-supervision loss, all gradients) on WebGPU and on the CPU with the same weights and batch; they must agree.',
      ),
      check,
      checkOut,
    ),
  );

  const losses: Array<[number, number]> = [];
  const dice: Array<[number, number]> = [];
  const ema: Array<[number, number]> = [];
  let running = false;
  const seen: number[] = [];

  const onEvent = (e: TrainEventOut) => {
    if (e.type === 'status') {
      status.textContent = e.message;
      status.dataset.resumed = String(e.resumedFromEpoch ?? '');
    } else if (e.type === 'iteration') {
      losses.push([e.globalIteration, e.loss]);
      progress.textContent = `epoch ${e.epoch + 1}, iteration ${e.iteration + 1}: loss ${e.loss.toFixed(4)}, ${(e.msPerIter / 1000).toFixed(2)} s/iteration, lr ${e.lr.toExponential(2)}`;
      lossChart.draw([{ name: 'loss', color: '#1f5fbf', points: losses }]);
    } else {
      dice.push([e.epoch, e.pseudoDice]);
      ema.push([e.epoch, e.ema]);
      seen.push(e.epoch + 1);
      epochLine.textContent = `epoch ${e.epoch + 1} done: pseudo-Dice ${e.pseudoDice.toFixed(3)} (EMA ${e.ema.toFixed(3)}), train loss ${e.trainLoss.toFixed(4)}, ${e.seconds.toFixed(1)} s`;
      // Epochs completed so far, and those this page saw (tests check a resume redid none).
      epochLine.dataset.epoch = String(e.epoch + 1);
      epochLine.dataset.seen = seen.join(',');
      diceChart.draw([
        { name: 'pseudo-Dice', color: '#0a7d3c', points: dice },
        { name: 'EMA', color: '#9a6700', points: ema },
      ]);
    }
  };

  start.addEventListener('click', async () => {
    if (running) return;
    const req: TrainRequest = {
      datasetId: dataset.value,
      configuration: configuration.value as '3d_fullres' | '2d',
      epochs: Number(epochs.input.value),
      itersPerEpoch: Number(iters.input.value),
      valIters: Number(valIters.input.value),
      tiny: (tiny as HTMLInputElement).checked ? { patch: Number(tinyPatch.input.value) } : false,
      backend: backend.value === 'cpu' ? 'cpu' : 'webgpu',
      stockKernels: backend.value === 'webgpu-stock',
      restart: (restart as HTMLInputElement).checked,
    };
    if (fit?.offer === 'reduced' && !req.tiny && req.backend === 'webgpu')
      req.memoryBudgetMB = fit.budgetMB;
    if (!req.datasetId) {
      status.textContent =
        'No prepared dataset: import one and run "Fingerprint, plan and preprocess" on the Data tab.';
      return;
    }
    running = true;
    start.disabled = true;
    pause.disabled = false;
    stop.disabled = false;
    losses.length = dice.length = ema.length = 0;
    status.textContent = 'Starting…';
    try {
      const r = await train.train(req, Comlink.proxy(onEvent));
      status.textContent = r.stopped
        ? `Stopped after epoch ${r.epoch}; the checkpoint is stored — Start resumes.`
        : `Training finished: ${r.epoch} epochs.`;
      if (r.modelId) status.dataset.model = r.modelId;
      status.dataset.finished = String(!r.stopped);
    } catch (e) {
      status.textContent = `Training failed: ${errorText(e)}`;
    } finally {
      running = false;
      start.disabled = false;
      pause.disabled = true;
      stop.disabled = true;
      pause.textContent = 'Pause';
    }
  });
  pause.addEventListener('click', () => {
    const paused = pause.textContent === 'Resume';
    void (paused ? train.resume() : train.pause());
    pause.textContent = paused ? 'Pause' : 'Resume';
  });
  stop.addEventListener('click', () => void train.stop());
  check.addEventListener('click', async () => {
    check.disabled = true;
    checkOut.textContent = 'Running one training step on WebGPU and on the CPU…';
    try {
      const r = await train.gradientCheck({ stockKernels: backend.value === 'webgpu-stock' });
      const ok = r.gradRelL2 < 1e-4;
      checkOut.replaceChildren(
        el(
          'p',
          { class: ok ? 'ok' : 'bad' },
          ok
            ? 'WebGPU training matches the CPU.'
            : 'WebGPU training disagrees with the CPU: do not train on this GPU.',
        ),
        el(
          'p',
          { class: 'muted' },
          `${r.backend}: loss ${r.loss[0].toFixed(6)} vs ${r.loss[1].toFixed(6)}; gradients rel. L2 ${r.gradRelL2.toExponential(2)} over ${r.tensors} tensors (worst ${r.worstTensor.name}: ${r.worstTensor.relL2.toExponential(2)})`,
        ),
      );
    } catch (e) {
      checkOut.replaceChildren(el('p', { class: 'bad' }, `Check failed: ${errorText(e)}`));
    } finally {
      check.disabled = !gpu;
    }
  });

  async function refresh(): Promise<void> {
    const all = await data.datasets();
    const options: HTMLOptionElement[] = [];
    for (const d of all) {
      const prepared = await data.prepared(d.id);
      if (prepared.length)
        options.push(
          el(
            'option',
            { value: d.id },
            `${d.name} (${prepared.map((p) => `${p.configuration}: ${p.cases}`).join(', ')})`,
          ),
        );
    }
    const keep = dataset.value;
    dataset.replaceChildren(...options);
    if (keep && options.some((o) => o.value === keep)) dataset.value = keep;
    await updateFit();
  }

  return { root, refresh };
}
