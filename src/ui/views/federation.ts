// "Federation": join a federation through the relay that serves this page, train each round on
// this GPU, and see exactly what leaves this browser (message type, size, round).
import * as Comlink from 'comlink';
import { el, errorText, formatBytes } from '../dom.ts';
import type { DataApi } from '../../../workers/data.worker.ts';
import type { FederateEvent, FederateRequest, TrainApi } from '../../../workers/train.worker.ts';

export function federationView(data: Comlink.Remote<DataApi>, train: Comlink.Remote<TrainApi>, gpu: boolean) {
  const params = new URLSearchParams(location.search);
  const defaultRelay = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/fed`;
  const relay = el('input', { id: 'fed-relay', value: params.get('relay') ?? defaultRelay, 'aria-label': 'Relay address', size: '36' });
  const token = el('input', { id: 'fed-token', value: params.get('join') ?? '', 'aria-label': 'Join code', size: '12' });
  const siteName = el('input', { id: 'fed-site', value: params.get('site') ?? `site-${Math.random().toString(36).slice(2, 6)}`, 'aria-label': 'Site name', size: '14' });
  const dataset = el('select', { id: 'fed-dataset', 'aria-label': 'Dataset' });
  const tiny = el('input', { type: 'checkbox', id: 'fed-tiny' });
  (tiny as HTMLInputElement).checked = true;
  const tinyPatch = el('input', { type: 'number', id: 'fed-tiny-patch', value: '16', min: '4', step: '4', 'aria-label': 'tiny patch edge', style: 'width:4rem' });
  const backend = el('select', { id: 'fed-backend', 'aria-label': 'Backend' }, el('option', { value: 'webgpu' }, 'WebGPU'), el('option', { value: 'cpu' }, 'CPU (slow)'));
  if (!gpu) backend.value = 'cpu';
  const join = el('button', { type: 'button', id: 'fed-join' }, 'Join the federation');
  const leave = el('button', { type: 'button', id: 'fed-leave', class: 'secondary', disabled: '' }, 'Leave');
  const status = el('p', { id: 'fed-status', role: 'status' });
  const log = el('ol', { id: 'fed-log', class: 'log' });
  const egress = el('tbody', { id: 'egress-rows' });
  const egressTotal = el('p', { id: 'egress-total', class: 'muted' });

  const root = el('div', {},
    el('section', { class: 'card' }, el('h2', {}, 'Join a federation'),
      el('p', { class: 'muted' }, 'Your scans stay here. Each round this browser trains on them and sends only the change of the shared network weights to the relay.'),
      el('div', { class: 'row' }, el('label', {}, 'Relay ', relay), el('label', {}, 'Join code ', token), el('label', {}, 'Site name ', siteName)),
      el('div', { class: 'row' }, dataset, backend, el('label', {}, tiny, ' small network, patch '), tinyPatch),
      el('div', { class: 'row' }, join, leave), status, log),
    el('section', { class: 'card' }, el('h2', {}, 'What leaves this browser'),
      el('p', { class: 'muted' }, 'Every message this tab has sent to the relay. Only fingerprints (summary statistics), network declarations and weights — never voxels.'),
      el('table', { class: 'egress' }, el('thead', {}, el('tr', {}, el('th', {}, 'message'), el('th', {}, 'round'), el('th', {}, 'tensors'), el('th', {}, 'size'))), egress), egressTotal));

  let total = 0;
  const onEvent = (e: FederateEvent) => {
    if (e.type === 'log') log.append(el('li', {}, e.message));
    else if (e.type === 'round') {
      status.textContent = `round ${e.round} trained: loss ${e.metrics.loss?.toFixed(4) ?? '?'}${e.metrics.pseudoDice !== undefined ? `, pseudo-Dice ${e.metrics.pseudoDice.toFixed(3)}` : ''}`;
      status.dataset.round = String(e.round);
    } else if (e.type === 'sent') {
      total += e.bytes;
      egress.append(el('tr', { 'data-type': e.message }, el('td', {}, e.message), el('td', {}, e.round === undefined ? '' : String(e.round)), el('td', {}, e.tensors === undefined ? '' : String(e.tensors)), el('td', {}, formatBytes(e.bytes))));
      egressTotal.textContent = `${egress.children.length} messages, ${formatBytes(total)} in total`;
    } else {
      status.textContent = `Federation finished after ${e.rounds} rounds: ${e.shared} shared tensors${e.local ? `, ${e.local} kept local (personalised model)` : ''}. The model is on the Predict tab.`;
      status.dataset.done = 'true';
      status.dataset.digest = e.globalDigest;
    }
  };

  let running = false;
  async function run(req: FederateRequest): Promise<void> {
    if (running) return;
    running = true;
    join.disabled = true;
    leave.disabled = false;
    delete status.dataset.done;
    try {
      await train.federate(req, Comlink.proxy(onEvent));
    } catch (e) {
      status.textContent = `Federation stopped: ${errorText(e)}`;
    } finally {
      running = false;
      join.disabled = false;
      leave.disabled = true;
    }
  }

  join.addEventListener('click', () => {
    if (!dataset.value) {
      status.textContent = 'Choose a labelled dataset (import one on the Data tab, or use demo data).';
      return;
    }
    if (!token.value.trim()) {
      status.textContent = 'Enter the join code the federation host gave you.';
      return;
    }
    status.textContent = 'Connecting…';
    void run({
      relayUrl: relay.value.trim(), token: token.value.trim(), datasetId: dataset.value, siteName: siteName.value.trim() || 'site',
      tiny: (tiny as HTMLInputElement).checked ? { patch: Number((tinyPatch as HTMLInputElement).value) } : false,
      backend: backend.value as 'webgpu' | 'cpu',
    });
  });

  /** After a reload: rejoin an unfinished federation of this browser as the same site. */
  async function resumeIfUnfinished(): Promise<void> {
    const open = await train.unfinishedFederations();
    const m = open.find((x) => x.relayUrl === relay.value.trim()) ?? open[0];
    if (!m || running) return;
    status.textContent = `Rejoining the federation as ${m.siteName} (it was in round ${m.round + 1})…`;
    status.dataset.rejoined = 'true';
    log.append(el('li', {}, `rejoining ${m.relayUrl} as ${m.siteName}`));
    await run({ relayUrl: m.relayUrl, token: m.token, datasetId: m.datasetId, siteName: m.siteName, tiny: m.tiny, backend: m.backend });
  }
  leave.addEventListener('click', () => void train.leaveFederation());

  async function refresh(): Promise<void> {
    const all = (await data.datasets()).filter((d) => Object.keys(d.labels).length > 1 && d.cases.every((c) => c.hasLabel));
    const keep = dataset.value;
    dataset.replaceChildren(...all.map((d) => el('option', { value: d.id }, `${d.name} (${d.numCases} cases)`)));
    if (keep && all.some((d) => d.id === keep)) dataset.value = keep;
  }

  return { root, refresh, resumeIfUnfinished };
}
