// App shell: a tab per step. Views are thin; every computation lives in src/ or a worker.
import * as Comlink from 'comlink';
import './style.css';
import { probeWebGPU } from '../gpu/probe.ts';
import { el } from './dom.ts';
import { selfTestCard, siteKeyCard, statusCard } from './views/system.ts';
import { dataView } from './views/data.ts';
import type { DataApi } from '../../workers/data.worker.ts';
import type { TrainApi } from '../../workers/train.worker.ts';
import { trainView } from './views/train.ts';
import { federationView } from './views/federation.ts';
import { predictView } from './views/predict.ts';
import type { InferApi } from '../../workers/infer.worker.ts';
import { isLabelled, joinSteps, type FlowFacts } from './join-steps.ts';

const app = document.getElementById('app')!;

interface Tab {
  id: string;
  label: string;
  panel: HTMLElement;
  onShow?: () => void;
}

function tabs(list: Tab[]): HTMLElement {
  const bar = el('nav', { class: 'tabs', role: 'tablist', 'aria-label': 'Steps' });
  const panels = el('div', {});
  const buttons = list.map((t) => {
    const b = el(
      'button',
      { type: 'button', role: 'tab', id: `tab-${t.id}`, 'aria-controls': `panel-${t.id}` },
      t.label,
    );
    t.panel.id = `panel-${t.id}`;
    t.panel.setAttribute('role', 'tabpanel');
    t.panel.setAttribute('aria-labelledby', `tab-${t.id}`);
    b.addEventListener('click', () => (location.hash = t.id));
    bar.append(b);
    panels.append(t.panel);
    return b;
  });
  const show = () => {
    const id = location.hash.slice(1) || list[0].id;
    const current = list.find((t) => t.id === id) ?? list[0];
    list.forEach((t, i) => {
      const on = t === current;
      t.panel.hidden = !on;
      buttons[i].setAttribute('aria-selected', String(on));
      buttons[i].tabIndex = on ? 0 : -1;
    });
    current.onShow?.();
  };
  // Arrow keys move between tabs (WAI-ARIA tabs pattern).
  bar.addEventListener('keydown', (e) => {
    const i = buttons.indexOf(document.activeElement as HTMLButtonElement);
    if (i < 0 || (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft')) return;
    const next = buttons[(i + (e.key === 'ArrowRight' ? 1 : buttons.length - 1)) % buttons.length];
    next.focus();
    next.click();
  });
  window.addEventListener('hashchange', show);
  show();
  return el('div', {}, bar, panels);
}

/**
 * The stepper a join link opens (1 Data → 2 Join → 3 Train → 4 Predict): where the participant
 * is and what is still missing, each step a link to its tab. join-steps.ts decides; this renders.
 */
function stepper(): { el: HTMLElement; render(f: FlowFacts): void } {
  const list = el('ol', {});
  const nav = el(
    'nav',
    { class: 'stepper', id: 'stepper', 'aria-label': 'Steps to take part' },
    list,
  );
  let last: FlowFacts = { datasets: 0, step: 'idle', progress: 0 };
  const render = (f: FlowFacts) => {
    last = f;
    const open = location.hash.slice(1);
    list.replaceChildren(
      ...joinSteps(f).map((s) => {
        const a = el(
          'a',
          {
            href: `#${s.tab}`,
            id: `step-${s.id}`,
            'data-state': s.state,
            ...(s.state === 'current' ? { 'aria-current': 'step' } : {}),
          },
          el('span', { class: 'n', 'aria-hidden': 'true' }, s.state === 'done' ? '✓' : String(s.n)),
          el('span', { class: 'title' }, `${s.n}. ${s.title}`),
          el('span', { class: 'hint' }, s.hint),
        );
        return el('li', { class: `${s.state}${open === s.tab ? ' open' : ''}` }, a);
      }),
    );
    nav.dataset.current = joinSteps(f).find((s) => s.state === 'current')?.id ?? '';
  };
  window.addEventListener('hashchange', () => render(last));
  render(last);
  return { el: nav, render };
}

/** The hooks main() puts on window for tests and `fednnunet doctor`. */
export interface PageHooks {
  status: Awaited<ReturnType<typeof probeWebGPU>>;
  selfTest: ReturnType<typeof selfTestCard>['run'];
  data: Comlink.Remote<DataApi>;
  train: Comlink.Remote<TrainApi>;
  infer: Comlink.Remote<InferApi>;
  predict: ReturnType<typeof predictView>;
  proxy: typeof Comlink.proxy;
}
export type HookedWindow = Window & { __fednnunet: PageHooks };

async function main(): Promise<void> {
  const status = await probeWebGPU();
  const dataWorker = new Worker(new URL('../../workers/data.worker.ts', import.meta.url), {
    type: 'module',
  });
  const dataApi = Comlink.wrap<DataApi>(dataWorker);
  const data = dataView(dataApi);
  const trainWorker = new Worker(new URL('../../workers/train.worker.ts', import.meta.url), {
    type: 'module',
  });
  const trainApi = Comlink.wrap<TrainApi>(trainWorker);
  const train = trainView(dataApi, trainApi, status.available, status.limits);
  const federation = federationView(dataApi, trainApi, status.available);
  const inferWorker = new Worker(new URL('../../workers/infer.worker.ts', import.meta.url), {
    type: 'module',
    name: 'fednnunet-infer',
  });
  const inferApi = Comlink.wrap<InferApi>(inferWorker);
  const predict = predictView(inferApi, dataApi);
  const selfTest = selfTestCard(status.available);
  const siteKey = siteKeyCard(() => trainApi.siteKey());
  // Storage and threads are measured here, like the adapter, for the "This browser" page.
  const storage = await navigator.storage?.estimate?.().catch(() => undefined);
  const system = el(
    'div',
    {},
    statusCard({ webgpu: status, storage, threads: navigator.hardwareConcurrency }),
    siteKey.card,
    selfTest.card,
  );
  if (!status.available) {
    // Say it up front, on every tab: the plain-words reason and what still works.
    app.append(
      el(
        'p',
        { class: 'banner bad', id: 'webgpu-banner' },
        'This browser has no WebGPU: you can import and check data here, but not train. See “This browser”.',
      ),
    );
  }
  // A join link (…?join=CODE or ?workshop=CODE) opens the stepper, on the first step still
  // missing: Data when this browser has no labelled dataset yet, else Join.
  const q = new URLSearchParams(location.search);
  const joinLink = q.has('join') || q.has('workshop');
  if (joinLink && !location.hash) {
    const labelled = (await dataApi.datasets().catch(() => [])).filter(isLabelled);
    location.hash = labelled.length ? 'federation' : 'data';
  }
  if (joinLink) {
    const steps = stepper();
    app.append(steps.el);
    // Models a federation left here: after a reload the finished steps stay done.
    let federatedModels = 0;
    const countModels = () =>
      inferApi
        .models()
        .then((ms) => {
          federatedModels = ms.filter(
            (m) => m.source === 'federation-global' || m.source === 'personalised',
          ).length;
          steps.render({ ...federation.state(), federatedModels });
        })
        .catch(() => undefined);
    federation.onChange((s) => {
      steps.render({ ...s, federatedModels });
      if (s.step === 'done') void countModels();
    });
    void countModels();
  }
  // An import or a deletion on the Data tab changes what Join can use: refresh the Federation
  // view (and so the stepper) once the Data tab's list settles.
  let settle: ReturnType<typeof setTimeout> | undefined;
  new MutationObserver(() => {
    clearTimeout(settle);
    settle = setTimeout(() => void federation.refresh(), 400);
  }).observe(data.root, { childList: true, subtree: true });
  app.append(
    tabs([
      { id: 'data', label: 'Data', panel: data.root },
      {
        id: 'federation',
        label: 'Federation',
        panel: federation.root,
        onShow: () => void federation.refresh(),
      },
      { id: 'train', label: 'Train', panel: train.root, onShow: () => void train.refresh() },
      {
        id: 'predict',
        label: 'Predict',
        panel: predict.root,
        onShow: () => void predict.refresh(),
      },
      { id: 'system', label: 'This browser', panel: system, onShow: () => void siteKey.refresh() },
    ]),
  );
  await data.refresh();
  await federation.refresh();
  void federation.resumeIfUnfinished();
  await predict.refresh();
  // Hooks for tests and `fednnunet doctor`.
  const hooks: PageHooks = {
    status,
    selfTest: selfTest.run,
    data: dataApi,
    train: trainApi,
    infer: inferApi,
    predict,
    proxy: Comlink.proxy,
  };
  Object.assign(window, { __fednnunet: hooks });
  document.body.dataset.ready = 'true';
}

void main();
