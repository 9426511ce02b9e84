// "This browser": WebGPU status and the GPU self-test (tfjs conv3d on WebGPU vs CPU, in a worker).
import * as Comlink from 'comlink';
import { adapterName, type WebGPUStatus } from '../../gpu/probe.ts';
import { capabilityRows, type BrowserFacts } from '../capabilities.ts';
import { el, formatBytes } from '../dom.ts';
import type { SelfTestApi, SelfTestResult } from '../../../workers/selftest.worker.ts';
import { errorMessage } from '../../util/errors.ts';

export function statusCard(facts: BrowserFacts): HTMLElement {
  const s: WebGPUStatus = facts.webgpu;
  const card = el('section', {
    class: 'card',
    id: 'webgpu-status',
    'data-available': String(s.available),
  });
  card.append(el('h2', {}, 'This browser'));
  if (s.available) {
    card.append(el('p', { class: 'ok' }, `WebGPU is available: ${adapterName(s)}.`));
    const dl = el('dl');
    const keys = [
      'maxBufferSize',
      'maxStorageBufferBindingSize',
      'maxComputeWorkgroupStorageSize',
      'maxComputeInvocationsPerWorkgroup',
    ];
    for (const k of keys)
      if (s.limits && k in s.limits) dl.append(el('dt', {}, k), el('dd', {}, String(s.limits[k])));
    dl.append(
      el('dt', {}, 'shader-f16'),
      el('dd', {}, s.features?.includes('shader-f16') ? 'yes' : 'no'),
    );
    card.append(dl);
  } else {
    card.append(
      el(
        'p',
        { class: 'bad', id: 'no-webgpu' },
        'WebGPU is not available in this browser, so it cannot train or take part in federated training.',
      ),
      el('p', {}, `Reason: ${s.reason ?? 'unknown'}`),
      el(
        'p',
        {},
        'Use a current Chrome or Edge (version 113 or later) on a machine with a GPU, or enable WebGPU in your browser settings.',
      ),
    );
  }
  // Measured here whatever the GPU: what threaded WebAssembly and storing scans depend on.
  const quota = facts.storage?.quota;
  card.append(
    el(
      'dl',
      { id: 'browser-facts' },
      el('dt', {}, 'cross-origin isolated'),
      el(
        'dd',
        { 'data-k': 'isolated' },
        s.crossOriginIsolated ? 'yes (SharedArrayBuffer available)' : 'no',
      ),
      el('dt', {}, 'CPU threads'),
      el('dd', { 'data-k': 'threads' }, facts.threads ? String(facts.threads) : 'not reported'),
      el('dt', {}, 'storage'),
      el(
        'dd',
        { 'data-k': 'storage' },
        quota
          ? `${formatBytes(facts.storage?.usage ?? 0)} used of ${formatBytes(quota)} this browser allows this app`
          : 'quota not reported',
      ),
    ),
  );
  const caps = el('ul', { class: 'caps', id: 'capabilities' });
  for (const c of capabilityRows(facts)) {
    caps.append(
      el(
        'li',
        { 'data-usable': String(c.usable), 'data-id': c.id },
        `${c.usable ? '✓' : '✗'} ${c.name}`,
        el('span', { class: 'muted' }, ` (${c.detail})`),
      ),
    );
  }
  card.append(
    el('h3', {}, s.available ? 'What this browser can do' : 'What still works here'),
    caps,
  );
  return card;
}

export function selfTestCard(enabled: boolean): {
  card: HTMLElement;
  run: () => Promise<SelfTestResult>;
} {
  const out = el('div', { id: 'selftest-result' });
  const button = el('button', { id: 'selftest-run', type: 'button' }, 'Run GPU self-test');
  button.disabled = !enabled;
  const card = el(
    'section',
    { class: 'card' },
    el('h2', {}, 'GPU self-test'),
    el(
      'p',
      {},
      'Runs a 3D convolution and its gradients on WebGPU in a worker and compares them with the CPU.',
    ),
    button,
    out,
  );
  const run = async (): Promise<SelfTestResult> => {
    button.disabled = true;
    out.textContent = 'Running…';
    const worker = new Worker(new URL('../../../workers/selftest.worker.ts', import.meta.url), {
      type: 'module',
    });
    try {
      const api = Comlink.wrap<SelfTestApi>(worker);
      const r = await api.conv3d();
      const worst = Math.max(r.relL2.y, r.relL2.dx, r.relL2.dw);
      out.replaceChildren(
        el(
          'p',
          { class: worst < 1e-4 ? 'ok' : 'bad' },
          worst < 1e-4 ? 'WebGPU matches the CPU.' : 'WebGPU disagrees with the CPU!',
        ),
        el(
          'dl',
          {},
          el('dt', {}, 'rel. L2 (y, dx, dw)'),
          el(
            'dd',
            {},
            `${r.relL2.y.toExponential(2)}, ${r.relL2.dx.toExponential(2)}, ${r.relL2.dw.toExponential(2)}`,
          ),
          el('dt', {}, 'time webgpu / cpu'),
          el('dd', {}, `${r.ms.webgpu.toFixed(0)} ms / ${r.ms.cpu.toFixed(0)} ms`),
        ),
      );
      return r;
    } catch (e) {
      out.replaceChildren(el('p', { class: 'bad' }, `Self-test failed: ${errorMessage(e)}`));
      throw e;
    } finally {
      worker.terminate();
      button.disabled = !enabled;
    }
  };
  button.addEventListener('click', () => void run().catch(() => undefined));
  return { card, run };
}

/**
 * This profile's site key: the fingerprint a relay operator registers (relay --registry) or
 * compares with the relay's log. Loaded (and made, the first time) when the tab is shown.
 */
export function siteKeyCard(
  load: () => Promise<{ fingerprint: string; createdAt: number; publicKey: string }>,
): { card: HTMLElement; refresh: () => Promise<void> } {
  const body = el('div', { id: 'site-key' }, el('p', { class: 'muted' }, 'Loading…'));
  const card = el(
    'section',
    { class: 'card' },
    el('h2', {}, 'Site key'),
    el(
      'p',
      {},
      "This browser signs every federation message with its own key, kept in this browser's storage; the private half cannot be exported, even by this app. A relay knows this site by the key: give the fingerprint to the relay operator to be registered, or compare it with the one the host shows.",
    ),
    body,
  );
  const refresh = async () => {
    try {
      const k = await load();
      body.replaceChildren(
        el(
          'dl',
          {},
          el('dt', {}, 'fingerprint (SHA-256)'),
          el('dd', {}, el('code', { id: 'site-key-fingerprint' }, k.fingerprint)),
          el('dt', {}, 'made'),
          el('dd', {}, new Date(k.createdAt).toLocaleString()),
          el('dt', {}, 'public key (SPKI, base64)'),
          el('dd', {}, el('code', { id: 'site-key-spki', class: 'wrap' }, k.publicKey)),
        ),
        el(
          'p',
          { class: 'muted' },
          "Clearing this site's data in the browser deletes the key; this browser is then a new site to every relay.",
        ),
      );
    } catch (e) {
      body.replaceChildren(el('p', { class: 'bad' }, `No site key: ${errorMessage(e)}`));
    }
  };
  return { card, refresh };
}
