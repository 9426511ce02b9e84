// "Federation": join a federation through the relay that serves this page, train each round on
// this GPU, and see exactly what leaves this browser (message type, size, round).
import * as Comlink from 'comlink';
import { el, errorText, formatBytes } from '../dom.ts';
import { lineChart, titledChart } from '../chart.ts';
import { metricPoints, progressLine, type RoundSeen } from '../../fed/round-progress.ts';
import { countOf } from '../../util/plural.ts';
import type { DataApi } from '../../../workers/data.worker.ts';
import type { FederateEvent, FederateRequest, TrainApi } from '../../../workers/train.worker.ts';
import { METHOD_NAMES, methodSpec, type Method } from '../../fed/methods.ts';
import type { WorkshopHosting } from '../../fed/workshop-host.ts';
import type { Coordinator } from '../../fed/coordinator.ts';

export function federationView(
  data: Comlink.Remote<DataApi>,
  train: Comlink.Remote<TrainApi>,
  gpu: boolean,
) {
  const params = new URLSearchParams(location.search);
  const defaultRelay = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/fed`;
  const relay = el('input', {
    id: 'fed-relay',
    value: params.get('relay') ?? defaultRelay,
    'aria-label': 'Relay address',
    size: '36',
  });
  const token = el('input', {
    id: 'fed-token',
    value: params.get('join') ?? '',
    'aria-label': 'Join code',
    size: '12',
  });
  const siteName = el('input', {
    id: 'fed-site',
    value: params.get('site') ?? `site-${Math.random().toString(36).slice(2, 6)}`,
    'aria-label': 'Site name',
    size: '14',
  });
  const dataset = el('select', { id: 'fed-dataset', 'aria-label': 'Dataset' });
  const tiny = el('input', { type: 'checkbox', id: 'fed-tiny' });
  (tiny as HTMLInputElement).checked = true;
  const tinyPatch = el('input', {
    type: 'number',
    id: 'fed-tiny-patch',
    value: '16',
    min: '4',
    step: '4',
    'aria-label': 'tiny patch edge',
    style: 'width:4rem',
  });
  const backend = el(
    'select',
    { id: 'fed-backend', 'aria-label': 'Backend' },
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
  const status = el('p', { id: 'fed-status', role: 'status' });
  const log = el('ol', { id: 'fed-log', class: 'log' });
  const chart = lineChart('Loss and pseudo-Dice per round (this site)');
  chart.el.id = 'fed-chart';
  const eta = el('p', { id: 'fed-eta', class: 'muted' });
  // Secure aggregation with DP: the relay's ε spent so far (the privacy budget used).
  const privacy = el('p', { id: 'fed-privacy', class: 'muted' });
  const secure = params.get('secure') === '1';
  // Workshop mode: this tab hosts (coordinates over PeerJS data channels) or joins a hosted one.
  const wsMethod = el(
    'select',
    { id: 'ws-method', 'aria-label': 'Method' },
    ...METHOD_NAMES.map((m) => el('option', { value: m }, methodSpec(m).label)),
  );
  const wsRounds = el('input', {
    type: 'number',
    id: 'ws-rounds',
    value: '3',
    min: '1',
    'aria-label': 'Rounds',
    style: 'width:4rem',
  });
  const wsIters = el('input', {
    type: 'number',
    id: 'ws-iters',
    value: '5',
    min: '1',
    'aria-label': 'Iterations per round',
    style: 'width:4rem',
  });
  const wsHost = el(
    'button',
    { type: 'button', id: 'ws-host', class: 'secondary' },
    'Host a workshop federation',
  );
  const wsStart = el(
    'button',
    { type: 'button', id: 'ws-start', disabled: '' },
    'Start with the sites present',
  );
  const wsInfo = el('p', { id: 'ws-info', class: 'muted' });
  // Secure aggregation on the host: its threshold is fixed at Start, from the sites present then.
  const wsSecure = el('input', { type: 'checkbox', id: 'ws-secure' });
  const wsEpsilon = el('input', {
    id: 'ws-dp-epsilon',
    placeholder: 'off',
    'aria-label': 'DP epsilon',
    size: '5',
  });
  const wsDelta = el('input', {
    id: 'ws-dp-delta',
    value: '1e-5',
    'aria-label': 'DP delta',
    size: '6',
  });
  const wsClip = el('input', {
    id: 'ws-clip',
    placeholder: '100',
    'aria-label': 'Clip norm',
    size: '5',
  });
  const wsPrivacy = el('p', { id: 'ws-privacy', class: 'muted' });
  const wsRoster = el('ul', { id: 'ws-roster' });
  const wsStatus = el('p', { id: 'ws-status', role: 'status' });
  const wsCode = el('input', {
    id: 'ws-code',
    value: params.get('workshop') ?? '',
    'aria-label': 'Workshop code',
    size: '10',
  });
  // The host tab's key fingerprint, from the join link: the host must prove it (fed/workshop-link.ts).
  const wsHostKey = el('input', {
    id: 'ws-host-key',
    value: params.get('hostkey') ?? '',
    'aria-label': 'Host key',
    size: '34',
    placeholder: 'from the join link',
  });
  const wsJoin = el('button', { type: 'button', id: 'ws-join' }, 'Join via workshop code');
  const egress = el('tbody', { id: 'egress-rows' });
  const egressTotal = el('p', { id: 'egress-total', class: 'muted' });

  const root = el(
    'div',
    {},
    el(
      'section',
      { class: 'card' },
      el('h2', {}, 'Join a federation'),
      el(
        'p',
        { class: 'muted' },
        'Your scans stay here. Each round this browser trains on them and sends only the change of the shared network weights to the relay.',
      ),
      el(
        'div',
        { class: 'row' },
        el('label', {}, 'Relay ', relay),
        el('label', {}, 'Join code ', token),
        el('label', {}, 'Site name ', siteName),
      ),
      el(
        'div',
        { class: 'row' },
        dataset,
        backend,
        el('label', {}, tiny, ' small network, patch '),
        tinyPatch,
      ),
      el('div', { class: 'row' }, join, leave),
      status,
      eta,
      privacy,
      titledChart('Loss and pseudo-Dice per round (this site)', chart),
      log,
      el(
        'div',
        { class: 'row' },
        el('label', {}, 'Workshop code ', wsCode),
        el('label', {}, 'host key ', wsHostKey),
        wsJoin,
      ),
    ),
    el(
      'section',
      { class: 'card' },
      el('h2', {}, 'Host a workshop federation'),
      el(
        'p',
        { class: 'muted' },
        'This tab coordinates: participants connect to it directly (WebRTC); the server only introduces them. Keep this tab open until the federation ends.',
      ),
      el(
        'div',
        { class: 'row' },
        wsMethod,
        el('label', {}, 'rounds ', wsRounds),
        el('label', {}, 'iterations per round ', wsIters),
        wsHost,
        wsStart,
      ),
      el(
        'div',
        { class: 'row' },
        el('label', {}, wsSecure, ' Secure aggregation (the host sees only the sum)'),
        el('label', {}, 'DP ε ', wsEpsilon),
        el('label', {}, 'δ ', wsDelta),
        el('label', {}, 'clip ', wsClip),
      ),
      wsInfo,
      wsRoster,
      wsStatus,
      wsPrivacy,
    ),
    el(
      'section',
      { class: 'card' },
      el('h2', {}, 'What leaves this browser'),
      el(
        'p',
        { class: 'muted' },
        "Every message this tab has sent to the relay. Only fingerprints (summary statistics), network declarations and weights — never voxels. Each is signed with this browser's site key (76 bytes more; the first of each connection also carries the public key).",
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
            el('th', {}, 'message'),
            el('th', {}, 'round'),
            el('th', {}, 'tensors'),
            el('th', {}, 'size'),
          ),
        ),
        egress,
      ),
      egressTotal,
    ),
  );

  let total = 0;
  /** The rounds this tab has seen finish (since it joined or rejoined): chart points and ETA. */
  let seen: RoundSeen[] = [];
  const onEvent = (e: FederateEvent) => {
    if (e.type === 'log') log.append(el('li', {}, e.message));
    else if (e.type === 'round') {
      status.textContent = `round ${e.round} of ${e.rounds} trained: loss ${e.metrics.loss?.toFixed(4) ?? '?'}${e.metrics.pseudoDice !== undefined ? `, pseudo-Dice ${e.metrics.pseudoDice.toFixed(3)}` : ''}`;
      status.dataset.round = String(e.round);
      seen = [
        ...seen.filter((r) => r.round !== e.round),
        { round: e.round, at: performance.now(), trainSeconds: e.seconds, metrics: e.metrics },
      ];
      eta.textContent = progressLine(seen, e.rounds);
      chart.draw([
        { name: 'loss', color: '#1f5fbf', points: metricPoints(seen, 'loss') },
        { name: 'pseudo-Dice', color: '#0a7d3c', points: metricPoints(seen, 'pseudoDice') },
      ]);
      chart.el.dataset.rounds = String(seen.length);
    } else if (e.type === 'privacy') {
      privacy.textContent = `Differential privacy: ε = ${e.epsilon.toFixed(2)} spent after round ${e.round} (δ = ${e.delta}).`;
      privacy.dataset.epsilon = String(e.epsilon);
      privacy.dataset.round = String(e.round);
    } else if (e.type === 'sent') {
      total += e.bytes;
      egress.append(
        el(
          'tr',
          { 'data-type': e.message },
          el('td', {}, e.message),
          el('td', {}, e.round === undefined ? '' : String(e.round)),
          el('td', {}, e.tensors === undefined ? '' : String(e.tensors)),
          el('td', {}, formatBytes(e.bytes)),
        ),
      );
      egressTotal.textContent = `${countOf(egress.children.length, 'message')}, ${formatBytes(total)} in total`;
    } else {
      status.textContent = `Federation finished after ${e.rounds} rounds: ${e.shared} shared tensors${e.local ? `, ${e.local} kept local (personalised model)` : ''}. The model is on the Predict tab.`;
      status.dataset.done = 'true';
      status.dataset.digest = e.globalDigest;
    }
  };

  let running = false;
  async function run(req: FederateRequest, link?: unknown): Promise<void> {
    if (running) return;
    running = true;
    join.disabled = true;
    wsJoin.disabled = true;
    leave.disabled = false;
    delete status.dataset.done;
    seen = [];
    eta.textContent = '';
    chart.draw([]);
    try {
      await train.federate(req, Comlink.proxy(onEvent), link as never);
    } catch (e) {
      status.textContent = `Federation stopped: ${errorText(e)}`;
    } finally {
      running = false;
      join.disabled = false;
      wsJoin.disabled = false;
      leave.disabled = true;
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
        'Choose a labelled dataset (import one on the Data tab, or use demo data).';
      return;
    }
    const code = via === 'relay' ? token.value.trim() : (wsCode as HTMLInputElement).value.trim();
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
        hostKey = await pinHostKey((wsHostKey as HTMLInputElement).value);
      } catch (e) {
        status.textContent = errorText(e);
        status.dataset.refused = 'host-key';
        return;
      }
    }
    status.textContent = 'Connecting…';
    const link = via === 'workshop' ? await workshopLink(code) : undefined;
    await run(
      {
        hostKey,
        relayUrl: via === 'relay' ? relay.value.trim() : `workshop:${code}`,
        token: code,
        datasetId: dataset.value,
        siteName: siteName.value.trim() || 'site',
        tiny: (tiny as HTMLInputElement).checked
          ? { patch: Number((tinyPatch as HTMLInputElement).value) }
          : false,
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
            secure: (wsSecure as HTMLInputElement).checked,
            epsilon: (wsEpsilon as HTMLInputElement).value,
            delta: (wsDelta as HTMLInputElement).value,
            clip: (wsClip as HTMLInputElement).value,
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
        wsRoster.replaceChildren(
          ...v.roster.map((x) =>
            el(
              'li',
              {
                'data-site': x.siteName,
                'data-connected': String(x.connected),
                'data-key': x.fingerprint,
              },
              x.text,
            ),
          ),
        );
        wsStart.disabled = !v.canStart;
        wsStatus.textContent = v.text;
        wsStatus.dataset.phase = v.phase;
        wsStatus.dataset.round = String(v.round);
        wsStatus.dataset.securePhase = v.securePhase;
        wsPrivacy.textContent = v.privacy;
        wsPrivacy.dataset.epsilon = v.epsilon;
      };
      hosted = await workshop.hostWorkshop({
        code,
        settings: {
          method: wsMethod.value as Method,
          rounds: Number((wsRounds as HTMLInputElement).value),
          itersPerRound: Number((wsIters as HTMLInputElement).value),
        },
        privacyAtStart,
        saving,
        identity,
        onChange: show,
        onWait: (attempt, ms) =>
          (wsStatus.textContent = `Workshop code ${code} is still in use (by the previous host tab, if this one was reloaded); the signalling server frees it once that tab's connection closes (up to 90 s after a crash). Retrying in ${Math.round(ms / 1000)} s (try ${attempt + 1})…`),
      });
      // The privacy settings are the host's now: editing the fields after this would change nothing.
      for (const x of [wsSecure, wsEpsilon, wsDelta, wsClip])
        (x as HTMLInputElement).disabled = true;
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
      show(hosted.host.coordinator);
    } catch (e) {
      wsStatus.textContent = `Could not host: ${errorText(e)}`;
      wsHost.disabled = false;
      void offerResume();
    }
  };
  wsHost.addEventListener('click', () => void hostWorkshop());
  const hostedStore = () => import('./workshop-resume.ts');
  // After a reload: offer to resume an unfinished federation this browser hosted.
  const offerResume = () =>
    hostedStore().then((m) =>
      m.showHostedOffers(
        wsInfo,
        (c) => void hostWorkshop(c),
        () => !wsHost.disabled,
      ),
    );
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
    const open = await train.unfinishedFederations();
    const m = open.find((x) => x.relayUrl === relay.value.trim()) ?? open[0];
    if (!m || running) return;
    status.textContent = `Rejoining the federation as ${m.siteName} (it was in round ${m.round + 1})…`;
    status.dataset.rejoined = 'true';
    // The field shows the name this site rejoined as, not the fresh random one of the reload.
    (siteName as HTMLInputElement).value = m.siteName;
    log.append(el('li', {}, `rejoining ${m.relayUrl} as ${m.siteName}`));
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
    const all = (await data.datasets()).filter(
      (d) => Object.keys(d.labels).length > 1 && d.cases.every((c) => c.hasLabel),
    );
    const keep = dataset.value;
    dataset.replaceChildren(
      ...all.map((d) => el('option', { value: d.id }, `${d.name} (${d.numCases} cases)`)),
    );
    if (keep && all.some((d) => d.id === keep)) dataset.value = keep;
  }

  return { root, refresh, resumeIfUnfinished };
}
