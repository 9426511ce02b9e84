// "Federation": join a federation through the relay that serves this page (or a workshop host
// tab), train each round on this GPU, watch where it is (phase line, progress bar, time left, live
// charts), and see exactly what leaves this browser (message type, size, round; kept in IndexedDB
// so the audit survives reloads). Two modes: a participant sees only what joining needs (advanced
// settings folded); a workshop host also gets the hosting card (QR code, roster, every site's
// chart). Every computation is in src/fed (site-phase.ts, host-roster.ts): this view renders.
import * as Comlink from 'comlink';
import { el, errorText, formatBytes } from '../dom.ts';
import { lineChart, titledChart, type Series } from '../chart.ts';
import { metricPoints, type RoundSeen } from '../../fed/round-progress.ts';
import {
  initialPhase,
  phaseProgress,
  phaseText,
  progressText,
  reducePhase,
  type SitePhase,
  type SiteStep,
} from '../../fed/site-phase.ts';
import { perSiteSeries, rosterRows } from '../../fed/host-roster.ts';
import { showHeldOutTable } from '../held-out-view.ts';
import { countOf } from '../../util/plural.ts';
import { isLabelled } from '../join-steps.ts';
import type { DataApi } from '../../../workers/data.worker.ts';
import type {
  FederateEvent,
  FederateRequest,
  FlowerFederateRequest,
  TrainApi,
} from '../../../workers/train.worker.ts';
import { METHOD_NAMES, methodSpec, type Method } from '../../fed/methods.ts';
import type { WorkshopHosting } from '../../fed/workshop-host.ts';
import type { Coordinator } from '../../fed/coordinator.ts';
import type { EgressRecord } from '../../store/egress-log.ts';

/** The site name of this browser profile, kept across reloads (a reload must not rename the site). */
const SITE_NAME_KEY = 'fednnunet.siteName';
function storedSiteName(): string | null {
  try {
    return localStorage.getItem(SITE_NAME_KEY);
  } catch {
    return null; // storage blocked: a fresh name per load is all we can do
  }
}
function keepSiteName(name: string): void {
  try {
    localStorage.setItem(SITE_NAME_KEY, name);
  } catch {
    /* storage blocked */
  }
}

/** What the app shell's stepper needs to know of this view. */
export interface FederationState {
  /** Labelled datasets this browser could join with. */
  datasets: number;
  step: SiteStep;
  progress: number;
}

/** A labelled field: the visible label above the control, an optional hint below. */
function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id;
  return el(
    'div',
    { class: 'field' },
    el('label', { for: id }, label),
    control,
    ...(hint ? [el('span', { class: 'hint', id: `${id}-hint` }, hint)] : []),
  );
}

const SITE_COLORS = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00', '#000000'];

export function federationView(
  data: Comlink.Remote<DataApi>,
  train: Comlink.Remote<TrainApi>,
  gpu: boolean,
) {
  const params = new URLSearchParams(location.search);
  const viaWorkshop = params.has('workshop');
  const defaultRelay = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/fed`;
  const relay = el('input', {
    id: 'fed-relay',
    value: params.get('relay') ?? defaultRelay,
    size: '36',
  });
  const token = el('input', { id: 'fed-token', value: params.get('join') ?? '', size: '12' });
  // A Flower federation: the SuperLink's Fleet API, by default through this page's own relay
  // (`fednnunet relay --flower-superlink`): the SuperLink sends no CORS headers (docs/flower.md).
  const connection = el(
    'select',
    { id: 'fed-connection' },
    el('option', { value: 'relay' }, 'FednnU-Net relay (join code)'),
    el('option', { value: 'flower' }, 'Flower federation (SuperLink)'),
  );
  const flowerParam = params.get('flower');
  const fleet = el('input', {
    id: 'fed-fleet',
    value: flowerParam && flowerParam !== '1' ? flowerParam : location.origin,
    size: '36',
  });
  if (flowerParam) connection.value = 'flower';
  const initialName =
    params.get('site') ?? storedSiteName() ?? `site-${Math.random().toString(36).slice(2, 6)}`;
  keepSiteName(initialName);
  const siteName = el('input', { id: 'fed-site', value: initialName, size: '14' });
  siteName.addEventListener('change', () => keepSiteName(siteName.value.trim()));
  const dataset = el('select', { id: 'fed-dataset' });
  const tiny = el('input', { type: 'checkbox', id: 'fed-tiny' });
  tiny.checked = true;
  const tinyPatch = el('input', {
    type: 'number',
    id: 'fed-tiny-patch',
    value: '16',
    min: '4',
    step: '4',
    style: 'width:4rem',
  });
  const backend = el(
    'select',
    { id: 'fed-backend' },
    el('option', { value: 'webgpu' }, 'WebGPU'),
    el('option', { value: 'cpu' }, 'CPU (slow)'),
  );
  if (!gpu) backend.value = 'cpu';
  const join = el('button', { type: 'button', id: 'fed-join' }, 'Join the federation');
  const leave = el(
    'button',
    { type: 'button', id: 'fed-leave', class: 'secondary', disabled: '' },
    'Leave',
  );
  // What is missing before Join can work (no labelled dataset yet): said before the click.
  const needs = el('div', { id: 'fed-needs', class: 'needs', hidden: '' });
  const status = el('p', { id: 'fed-status', role: 'status' });
  const phaseLine = el('p', { id: 'fed-phase', class: 'phase', 'aria-live': 'polite' });
  const progress = el('progress', {
    id: 'fed-progress',
    max: '1',
    value: '0',
    'aria-labelledby': 'fed-phase',
  });
  const eta = el('span', { id: 'fed-eta', class: 'muted' });
  const log = el('ol', { id: 'fed-log', class: 'log' });
  const lossChart = lineChart(
    'Training loss per iteration (this site)',
    460,
    160,
    'No iterations yet: the loss appears as this site trains.',
  );
  lossChart.el.id = 'fed-loss-chart';
  const chart = lineChart(
    'Loss and pseudo-Dice per round (this site)',
    460,
    160,
    'No round finished yet: a point per round appears here.',
  );
  chart.el.id = 'fed-chart';
  // Secure aggregation with DP: the relay's ε spent so far (the privacy budget used).
  const privacy = el('p', { id: 'fed-privacy', class: 'muted' });
  const secure = params.get('secure') === '1';
  // Workshop mode: this tab hosts (coordinates over PeerJS data channels) or joins a hosted one.
  const wsMethod = el(
    'select',
    { id: 'ws-method' },
    ...METHOD_NAMES.map((m) => el('option', { value: m }, methodSpec(m).label)),
  );
  const wsRounds = el('input', {
    type: 'number',
    id: 'ws-rounds',
    value: '3',
    min: '1',
    style: 'width:4rem',
  });
  const wsIters = el('input', {
    type: 'number',
    id: 'ws-iters',
    value: '5',
    min: '1',
    style: 'width:4rem',
  });
  const wsHost = el('button', { type: 'button', id: 'ws-host' }, 'Host a workshop federation');
  const wsStart = el(
    'button',
    { type: 'button', id: 'ws-start', disabled: '' },
    'Start with the sites present',
  );
  const wsSelf = el(
    'button',
    { type: 'button', id: 'ws-self-join', class: 'secondary', hidden: '' },
    'Also take part as a site from this browser',
  );
  const wsInfo = el('p', { id: 'ws-info', class: 'muted' });
  const wsQr = el('figure', { id: 'ws-qr', class: 'qr', hidden: '' });
  // Secure aggregation on the host: its threshold is fixed at Start, from the sites present then.
  const wsSecure = el('input', { type: 'checkbox', id: 'ws-secure' });
  const wsEpsilon = el('input', { id: 'ws-dp-epsilon', placeholder: 'off', size: '5' });
  const wsDelta = el('input', { id: 'ws-dp-delta', value: '1e-5', size: '6' });
  const wsClip = el('input', { id: 'ws-clip', placeholder: '100', size: '5' });
  const wsPrivacy = el('p', { id: 'ws-privacy', class: 'muted' });
  const wsRoster = el('ul', { id: 'ws-roster', class: 'roster', 'aria-label': 'Sites' });
  const wsStatus = el('p', { id: 'ws-status', role: 'status' });
  const wsChart = lineChart(
    'Loss per round, every site',
    460,
    160,
    'No round closed yet: a line per site appears here.',
  );
  wsChart.el.id = 'ws-chart';
  const wsDiceChart = lineChart(
    'Pseudo-Dice per round, every site',
    460,
    160,
    'No round closed yet: a line per site appears here.',
  );
  wsDiceChart.el.id = 'ws-dice-chart';
  // Filled once sites report their held-out Dice after the final model (fed/held-out-table.ts).
  const wsCompare = el('section', { id: 'ws-compare', hidden: '' });
  const wsCode = el('input', { id: 'ws-code', value: params.get('workshop') ?? '', size: '10' });
  // The host tab's key fingerprint, from the join link: the host must prove it (fed/workshop-link.ts).
  const wsHostKey = el('input', {
    id: 'ws-host-key',
    value: params.get('hostkey') ?? '',
    size: '34',
    placeholder: 'from the join link',
  });
  const wsJoin = el(
    'button',
    { type: 'button', id: 'ws-join', ...(viaWorkshop ? {} : { class: 'secondary' }) },
    viaWorkshop ? 'Join the workshop federation' : 'Join via workshop code',
  );
  const egress = el('tbody', { id: 'egress-rows' });
  const egressTotal = el('p', { id: 'egress-total', class: 'muted' });

  // Participant mode by default; host mode for a host (its link, a saved hosting, or the switch).
  const modeParticipant = el('input', {
    type: 'radio',
    name: 'fed-mode',
    id: 'mode-participant',
    value: 'participant',
  });
  const modeHost = el('input', { type: 'radio', name: 'fed-mode', id: 'mode-host', value: 'host' });
  const modeSwitch = el(
    'fieldset',
    { class: 'mode' },
    el('legend', {}, 'I am'),
    el('label', {}, modeParticipant, ' taking part as a site'),
    el('label', {}, modeHost, ' hosting a workshop federation (this tab coordinates)'),
  );

  // The join code field a link filled stays in front; the other way of joining is advanced.
  const codeField = viaWorkshop
    ? field('Workshop code', wsCode, 'from the link the host shared')
    : field('Join code', token, 'from the link or the host');
  const fleetField = field(
    'Flower Fleet API address',
    fleet,
    "the SuperLink's REST Fleet API; this page's own address when its relay forwards it",
  );
  const showConnection = () => {
    const flower = connection.value === 'flower';
    fleetField.hidden = !flower;
    codeField.hidden = flower && !viaWorkshop;
  };
  connection.addEventListener('change', showConnection);
  showConnection();
  const advanced = el(
    'details',
    { id: 'fed-advanced' },
    el('summary', {}, 'Advanced settings'),
    el(
      'div',
      { class: 'fields' },
      field('Relay address', relay, 'where this page came from, unless the host said otherwise'),
      field('Training engine', backend),
      el(
        'div',
        { class: 'field' },
        el('label', { for: 'fed-tiny' }, tiny, ' Small network (recommended in a browser)'),
      ),
      field('Patch edge of the small network (voxels)', tinyPatch),
      ...(viaWorkshop
        ? [field('Join code (relay)', token)]
        : [field('Workshop code', wsCode, 'to join a host tab instead of the relay')]),
      field('Host key', wsHostKey, 'in the workshop link; the host must prove it'),
    ),
    el('div', { class: 'row' }, viaWorkshop ? join : wsJoin),
  );
  if (viaWorkshop) join.classList.add('secondary');

  const participantCard = el(
    'section',
    { class: 'card', id: 'fed-participant' },
    el('h2', {}, 'Join a federation'),
    el(
      'p',
      { class: 'muted' },
      'Your scans stay here. Each round this browser trains on them and sends only the change of the shared network weights.',
    ),
    needs,
    el(
      'div',
      { class: 'fields' },
      ...(viaWorkshop ? [] : [field('Connection', connection)]),
      codeField,
      fleetField,
      field('Site name', siteName, 'how the other sites and the host see this browser'),
      field('Dataset', dataset, 'a labelled dataset of this browser (Data step)'),
    ),
    el('div', { class: 'row' }, viaWorkshop ? wsJoin : join, leave),
    advanced,
    el(
      'div',
      { class: 'live', id: 'fed-live' },
      phaseLine,
      el('div', { class: 'row' }, progress, eta),
      status,
      privacy,
      el(
        'div',
        { class: 'charts' },
        titledChart('Training loss per iteration (this site)', lossChart),
        titledChart('Loss and pseudo-Dice per round (this site, after local training)', chart),
      ),
    ),
    el('details', {}, el('summary', {}, 'Log'), log),
  );

  const hostCard = el(
    'section',
    { class: 'card', id: 'fed-host-card' },
    el('h2', {}, 'Host a workshop federation'),
    el(
      'p',
      { class: 'muted' },
      'This tab coordinates: participants connect to it directly (WebRTC); the server only introduces them. Keep this tab open until the federation ends.',
    ),
    el(
      'div',
      { class: 'fields' },
      field('Method', wsMethod),
      field('Rounds', wsRounds),
      field('Iterations per round', wsIters),
    ),
    el(
      'details',
      { id: 'ws-advanced' },
      el('summary', {}, 'Privacy settings'),
      el(
        'div',
        { class: 'fields' },
        el(
          'div',
          { class: 'field' },
          el(
            'label',
            { for: 'ws-secure' },
            wsSecure,
            ' Secure aggregation (the host sees only the sum)',
          ),
        ),
        field('Differential privacy ε', wsEpsilon, 'empty: off'),
        field('DP δ', wsDelta),
        field('Clip norm', wsClip),
      ),
    ),
    el('div', { class: 'row' }, wsHost, wsStart, wsSelf),
    wsInfo,
    wsQr,
    wsStatus,
    wsRoster,
    wsPrivacy,
    el(
      'div',
      { class: 'charts' },
      titledChart('Loss per round, every site', wsChart),
      titledChart('Pseudo-Dice per round, every site', wsDiceChart),
    ),
    wsCompare,
  );

  const auditCard = el(
    'section',
    { class: 'card' },
    el('h2', {}, 'What leaves this browser'),
    el(
      'p',
      { class: 'muted' },
      "Every message this browser has sent to a relay or host, kept here across reloads. Only fingerprints (summary statistics), network declarations and weights — never voxels. Each is signed with this browser's site key (76 bytes more; the first of each connection also carries the public key).",
    ),
    el(
      'table',
      { class: 'egress' },
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          el('th', { scope: 'col' }, 'when'),
          el('th', { scope: 'col' }, 'message'),
          el('th', { scope: 'col' }, 'round'),
          el('th', { scope: 'col' }, 'tensors'),
          el('th', { scope: 'col' }, 'size'),
        ),
      ),
      egress,
    ),
    egressTotal,
  );

  const root = el('div', {}, modeSwitch, hostCard, participantCard, auditCard);

  const setMode = (m: 'participant' | 'host') => {
    modeParticipant.checked = m === 'participant';
    modeHost.checked = m === 'host';
    hostCard.hidden = m !== 'host';
    root.dataset.mode = m;
  };
  modeParticipant.addEventListener('change', () => setMode('participant'));
  modeHost.addEventListener('change', () => setMode('host'));
  setMode(params.has('host-code') || params.get('mode') === 'host' ? 'host' : 'participant');

  // The privacy audit: what is stored first, then each message as it is sent.
  let total = 0;
  const addEgressRow = (r: Omit<EgressRecord, 'federationId' | 'siteName'>) => {
    total += r.bytes;
    egress.append(
      el(
        'tr',
        { 'data-type': r.message },
        el('td', {}, new Date(r.at).toLocaleTimeString()),
        el('td', {}, r.message),
        el('td', {}, r.round === undefined ? '' : String(r.round)),
        el('td', {}, r.tensors === undefined ? '' : String(r.tensors)),
        el('td', {}, formatBytes(r.bytes)),
      ),
    );
    egressTotal.textContent = `${countOf(egress.children.length, 'message')}, ${formatBytes(total)} in total`;
  };
  egressTotal.textContent = 'Nothing has left this browser yet.';
  const egressLoaded = train
    .egressLog()
    .then((rows) => rows.forEach(addEgressRow))
    .catch(
      (e) => (egressTotal.textContent = `The stored audit could not be read: ${errorText(e)}`),
    );

  // Listeners of this view's state (the app shell's stepper).
  const listeners: Array<(s: FederationState) => void> = [];
  let datasetsCount = 0;
  let phase: SitePhase = initialPhase();
  const stepsSeen: SiteStep[] = [];
  const state = (): FederationState => ({
    datasets: datasetsCount,
    step: phase.step,
    progress: phaseProgress(phase),
  });
  const changed = () => listeners.forEach((f) => f(state()));

  const renderPhase = () => {
    phaseLine.textContent = phaseText(phase);
    phaseLine.dataset.step = phase.step;
    phaseLine.dataset.seen = stepsSeen.join(' ');
    // Where training is, for tests that act in the middle of a round (e.g. reload the tab).
    if (phase.step === 'training') {
      phaseLine.dataset.round = String(phase.round);
      phaseLine.dataset.iteration = String(phase.iteration);
    } else {
      delete phaseLine.dataset.round;
      delete phaseLine.dataset.iteration;
    }
    progress.value = phaseProgress(phase);
    eta.textContent = phase.step === 'idle' ? '' : progressText(phase, performance.now());
  };
  renderPhase();
  // The time left counts down between events (an iteration on a slow GPU takes seconds).
  let ticker: ReturnType<typeof setInterval> | undefined;

  /** The rounds this tab has seen finish (since it joined or rejoined): the per-round chart. */
  let seen: RoundSeen[] = [];
  const losses: Array<[number, number]> = [];
  const onEvent = (e: FederateEvent) => {
    if (e.type === 'log') log.append(el('li', {}, e.message));
    else if (e.type === 'phase') {
      const before = phase.step;
      phase = reducePhase(phase, e.event, performance.now());
      if (phase.step !== before && stepsSeen.at(-1) !== phase.step) stepsSeen.push(phase.step);
      renderPhase();
      if (phase.step !== before) changed();
    } else if (e.type === 'iteration') {
      const iters = phase.iters || 1;
      losses.push([(e.round - 1) * iters + e.iteration, e.loss]);
      lossChart.draw([{ name: 'loss', color: '#0072b2', points: losses }]);
    } else if (e.type === 'round') {
      status.textContent = `round ${e.round} of ${e.rounds} trained: loss ${e.metrics.loss?.toFixed(4) ?? '?'}${e.metrics.pseudoDice !== undefined ? `, pseudo-Dice ${e.metrics.pseudoDice.toFixed(3)}` : ''}`;
      status.dataset.round = String(e.round);
      seen = [
        ...seen.filter((r) => r.round !== e.round),
        { round: e.round, at: performance.now(), trainSeconds: e.seconds, metrics: e.metrics },
      ];
      chart.draw([
        { name: 'loss', color: '#0072b2', points: metricPoints(seen, 'loss') },
        { name: 'pseudo-Dice', color: '#009e73', points: metricPoints(seen, 'pseudoDice') },
      ]);
      chart.el.dataset.rounds = String(seen.length);
    } else if (e.type === 'privacy') {
      privacy.textContent = `Differential privacy: ε = ${e.epsilon.toFixed(2)} spent after round ${e.round} (δ = ${e.delta}).`;
      privacy.dataset.epsilon = String(e.epsilon);
      privacy.dataset.round = String(e.round);
    } else if (e.type === 'sent') {
      addEgressRow({
        message: e.message,
        bytes: e.bytes,
        at: Date.now(),
        ...(e.round === undefined ? {} : { round: e.round }),
        ...(e.tensors === undefined ? {} : { tensors: e.tensors }),
      });
    } else {
      status.textContent = `Federation finished after ${e.rounds} rounds: ${e.shared} shared tensors${e.local ? `, ${e.local} kept local (personalised model)` : ''}. The model is on the Predict step.`;
      status.dataset.done = 'true';
      status.dataset.digest = e.globalDigest;
    }
  };

  let running = false;
  async function run(req: FederateRequest, link?: unknown): Promise<void> {
    return runWith(() => train.federate(req, Comlink.proxy(onEvent), link as never), req.siteName);
  }
  /** A Flower federation, through the Fleet API at `req.fleetUrl` (the worker's federateFlower). */
  async function runFlower(req: FlowerFederateRequest): Promise<void> {
    return runWith(() => train.federateFlower(req, Comlink.proxy(onEvent)), req.siteName);
  }
  async function runWith(start: () => Promise<void>, name: string): Promise<void> {
    if (running) return;
    running = true;
    join.disabled = true;
    wsJoin.disabled = true;
    wsSelf.disabled = true;
    leave.disabled = false;
    delete status.dataset.done;
    seen = [];
    losses.length = 0;
    stepsSeen.length = 0;
    chart.draw([]);
    lossChart.draw([]);
    keepSiteName(name);
    ticker = setInterval(renderPhase, 1000);
    try {
      await start();
    } catch (e) {
      status.textContent = `Federation stopped: ${errorText(e)}`;
      // A refusal before the worker started (no phase event) still ends the phase line.
      if (phase.step !== 'failed' && phase.step !== 'done') {
        phase = reducePhase(phase, { type: 'failed', reason: errorText(e) }, performance.now());
        renderPhase();
      }
    } finally {
      clearInterval(ticker);
      renderPhase();
      running = false;
      join.disabled = false;
      wsJoin.disabled = false;
      wsSelf.disabled = false;
      leave.disabled = true;
      changed();
    }
  }

  /** Workshop mode: the page holds the WebRTC link (workers cannot) and lends it to the worker. */
  const workshopLink = (code: string) =>
    import('../../fed/peer-transport.ts').then((m) =>
      Comlink.proxy(m.pageBridge(m.peerConnect(code))),
    );
  /** The host key a workshop join pins; a link without one is refused (fed/workshop-link.ts says why). */
  const pinHostKey = (hostKey: string | undefined) =>
    import('../../fed/workshop-link.ts').then((m) => m.pinnedHostKey(hostKey));

  async function joinVia(via: 'relay' | 'workshop'): Promise<void> {
    if (!dataset.value) {
      status.textContent =
        'Choose a labelled dataset (import one on the Data step, or use demo data).';
      return;
    }
    if (via === 'relay' && connection.value === 'flower') {
      const url = fleet.value.trim();
      if (!/^https?:\/\//.test(url)) {
        status.textContent = 'Enter the Flower Fleet API address (http:// or https://).';
        return;
      }
      status.textContent = '';
      return runFlower({
        fleetUrl: url.replace(/\/+$/, ''),
        datasetId: dataset.value,
        siteName: siteName.value.trim() || 'site',
        tiny: tiny.checked ? { patch: Number(tinyPatch.value) } : false,
        backend: backend.value as 'webgpu' | 'cpu',
      });
    }
    const code = via === 'relay' ? token.value.trim() : wsCode.value.trim();
    if (!code) {
      status.textContent =
        via === 'relay'
          ? 'Enter the join code the federation host gave you.'
          : 'Enter the workshop code the host gave you.';
      return;
    }
    let hostKey: string | undefined;
    if (via === 'workshop') {
      try {
        hostKey = await pinHostKey(wsHostKey.value);
      } catch (e) {
        status.textContent = errorText(e);
        status.dataset.refused = 'host-key';
        return;
      }
    }
    status.textContent = '';
    const link = via === 'workshop' ? await workshopLink(code) : undefined;
    await run(
      {
        hostKey,
        relayUrl: via === 'relay' ? relay.value.trim() : `workshop:${code}`,
        token: code,
        datasetId: dataset.value,
        siteName: siteName.value.trim() || 'site',
        tiny: tiny.checked ? { patch: Number(tinyPatch.value) } : false,
        backend: backend.value as 'webgpu' | 'cpu',
        hideCaseCount: secure,
      },
      link,
    );
  }
  join.addEventListener('click', () => void joinVia('relay'));
  wsJoin.addEventListener('click', () => void joinVia('workshop'));

  let hosted: WorkshopHosting | undefined;
  /** Hosts a new workshop federation, or resumes the one with code `resume` that this browser saved (src/fed/workshop-host.ts). */
  const hostWorkshop = async (resume?: string) => {
    setMode('host');
    wsHost.disabled = true;
    wsInfo.replaceChildren();
    wsStatus.textContent = resume
      ? `Resuming workshop ${resume}: registering with the signalling server…`
      : 'Registering with the signalling server…';
    try {
      const [workshop, { privacyOptionsFromFields }] = await Promise.all([
        import('../../fed/workshop-host.ts'),
        import('../../fed/secagg/config.ts'),
      ]);
      const code = resume ?? params.get('host-code') ?? Math.random().toString(36).slice(2, 8);
      // A resumed federation keeps the privacy settings in its saved state, whatever the form says.
      const privacyAtStart = resume
        ? undefined
        : privacyOptionsFromFields({
            secure: wsSecure.checked,
            epsilon: wsEpsilon.value,
            delta: wsDelta.value,
            clip: wsClip.value,
          });
      // Saved after every phase and round (IndexedDB), so a reload of this tab can resume it.
      const resumeStore = await hostedStore();
      // This profile's key: participants' links pin it, so a resumed federation needs the same profile.
      const identity = await resumeStore.hostIdentity();
      const saving = await resumeStore.hostingOptions(
        code,
        code,
        resume !== undefined,
        identity.fingerprint,
      );
      const show = (c: Coordinator) => {
        const v = workshop.workshopStatus(c);
        const rows = rosterRows(c.snapshot, c.roster(), c.openRoundView);
        wsRoster.replaceChildren(
          ...v.roster.map((x, i) => {
            const row = rows[i];
            const bar = el('progress', {
              max: '1',
              value: String(row?.progress ?? 0),
              'aria-label': `${x.siteName}: progress`,
            });
            return el(
              'li',
              {
                'data-site': x.siteName,
                'data-connected': String(x.connected),
                'data-key': x.fingerprint,
                'data-phase': row?.phase ?? '',
                'data-progress': String(row?.progress ?? 0),
              },
              el('span', {}, x.text),
              el('span', { class: 'site-phase' }, ` — ${row?.phase ?? ''} `),
              bar,
            );
          }),
        );
        wsStart.disabled = !v.canStart;
        wsStatus.textContent = v.text;
        wsStatus.dataset.phase = v.phase;
        wsStatus.dataset.round = String(v.round);
        wsStatus.dataset.securePhase = v.securePhase;
        wsPrivacy.textContent = v.privacy;
        wsPrivacy.dataset.epsilon = v.epsilon;
        const series = (metric: string): Series[] =>
          perSiteSeries(c.snapshot, metric).map((s, i) => ({
            name: s.siteName,
            color: SITE_COLORS[i % SITE_COLORS.length],
            points: s.points,
          }));
        wsChart.draw(series('loss'));
        wsDiceChart.draw(series('pseudoDice'));
        showHeldOutTable(wsCompare, v.heldOut);
      };
      hosted = await workshop.hostWorkshop({
        code,
        settings: {
          method: wsMethod.value as Method,
          rounds: Number(wsRounds.value),
          itersPerRound: Number(wsIters.value),
        },
        privacyAtStart,
        saving,
        identity,
        onChange: show,
        onWait: (attempt, ms) =>
          (wsStatus.textContent = `Workshop code ${code} is still in use (by the previous host tab, if this one was reloaded); the signalling server frees it once that tab's connection closes (up to 90 s after a crash). Retrying in ${Math.round(ms / 1000)} s (try ${attempt + 1})…`),
      });
      // The privacy settings are the host's now: editing the fields after this would change nothing.
      for (const x of [wsSecure, wsEpsilon, wsDelta, wsClip]) x.disabled = true;
      const { workshopJoinLink } = await import('../../fed/workshop-link.ts');
      const link = workshopJoinLink(
        `${location.origin}${location.pathname}`,
        code,
        hosted.hostKey,
        hosted.secure,
      );
      wsInfo.replaceChildren(
        'Workshop code ',
        el('strong', { id: 'ws-host-code' }, code),
        ', host key ',
        el('code', { id: 'ws-host-key-shown' }, hosted.hostKey),
        ' — participants open ',
        el('a', { href: link, id: 'ws-link' }, link),
      );
      const { qrSvg } = await import('../qr-code.ts');
      wsQr.replaceChildren(
        qrSvg(link, `QR code of the join link ${link}`),
        el('figcaption', {}, 'Participants scan this to open the join link.'),
      );
      wsQr.hidden = false;
      // The host's own browser can be a site too (its own data, this tab's train worker).
      wsCode.value = code;
      wsHostKey.value = hosted.hostKey;
      wsSelf.hidden = false;
      show(hosted.host.coordinator);
    } catch (e) {
      wsStatus.textContent = `Could not host: ${errorText(e)}`;
      wsHost.disabled = false;
      void offerResume();
    }
  };
  wsHost.addEventListener('click', () => void hostWorkshop());
  wsSelf.addEventListener('click', () => void joinVia('workshop'));
  const hostedStore = () => import('./workshop-resume.ts');
  // After a reload: offer to resume an unfinished federation this browser hosted (in host mode).
  const offerResume = () =>
    hostedStore()
      .then((m) =>
        m.showHostedOffers(
          wsInfo,
          (c) => void hostWorkshop(c),
          () => !wsHost.disabled,
        ),
      )
      .then(() => {
        if (wsInfo.querySelector('.ws-resume')) setMode('host');
      });
  void offerResume();
  wsStart.addEventListener('click', () => {
    try {
      hosted?.host.start();
    } catch (e) {
      wsStatus.textContent = errorText(e);
    }
  });

  /** After a reload: rejoin an unfinished federation of this browser as the same site. */
  async function resumeIfUnfinished(): Promise<void> {
    await egressLoaded;
    const open = await train.unfinishedFederations();
    const m = open.find((x) => x.relayUrl === relay.value.trim()) ?? open[0];
    if (!m || running) return;
    status.textContent = `Rejoining the federation as ${m.siteName} (it was in round ${m.round + 1})…`;
    status.dataset.rejoined = 'true';
    // The field shows the name this site rejoined as, not the fresh random one of the reload.
    siteName.value = m.siteName;
    log.append(el('li', {}, `rejoining ${m.relayUrl} as ${m.siteName}`));
    if (m.flower && m.relayUrl.startsWith('flower:')) {
      connection.value = 'flower';
      fleet.value = m.relayUrl.slice('flower:'.length);
      showConnection();
      return runFlower({
        fleetUrl: fleet.value,
        datasetId: m.datasetId,
        siteName: m.siteName,
        tiny: m.tiny,
        backend: m.backend,
      });
    }
    let hostKey: string | undefined;
    if (m.relayUrl.startsWith('workshop:')) {
      try {
        hostKey = await pinHostKey(m.hostKey);
      } catch (e) {
        status.textContent = `Cannot rejoin workshop ${m.token}: ${errorText(e)}`;
        return;
      }
    }
    const link = hostKey ? await workshopLink(m.token) : undefined;
    await run(
      {
        hostKey,
        relayUrl: m.relayUrl,
        token: m.token,
        datasetId: m.datasetId,
        siteName: m.siteName,
        tiny: m.tiny,
        backend: m.backend,
        hideCaseCount: secure,
      },
      link,
    );
  }
  leave.addEventListener('click', () => void train.leaveFederation());

  async function refresh(): Promise<void> {
    const all = (await data.datasets()).filter(isLabelled);
    const keep = dataset.value;
    dataset.replaceChildren(
      ...all.map((d) => el('option', { value: d.id }, `${d.name} (${d.numCases} cases)`)),
    );
    if (keep && all.some((d) => d.id === keep)) dataset.value = keep;
    datasetsCount = all.length;
    needs.hidden = all.length > 0;
    if (!all.length) {
      const go = el('a', { href: '#data', id: 'fed-needs-data' }, 'Go to the Data step');
      needs.replaceChildren(
        el(
          'p',
          {},
          el('strong', {}, 'First, data: '),
          'this browser has no labelled dataset yet. Import one, or press “Use demo data”, on the Data step; then come back here to join. ',
          go,
        ),
      );
    }
    join.disabled = running || !all.length;
    wsJoin.disabled = running || !all.length;
    changed();
  }

  return {
    root,
    refresh,
    resumeIfUnfinished,
    state,
    onChange: (f: (s: FederationState) => void) => listeners.push(f),
  };
}
