// Registers the service worker (src/pwa/sw.ts) in the built app, and when the relay serves a new
// build, offers to reload into it. Without a service worker (the dev server, an untrusted
// certificate, a browser without them) the app works the same, online only: nothing is logged as
// an error, because nothing is wrong with the page.
import { el } from './dom.ts';

function offerUpdate(waiting: ServiceWorker): void {
  if (document.getElementById('update-banner')) return;
  const button = el('button', { type: 'button', id: 'update-reload' }, 'Reload to update');
  const later = el('button', { type: 'button', class: 'secondary' }, 'Later');
  const banner = el(
    'div',
    { class: 'banner', id: 'update-banner', role: 'status' },
    'A new version of this app is ready. Reloading stops what is running in this tab (a training round resumes after the reload). ',
    button,
    ' ',
    later,
  );
  button.addEventListener('click', () => {
    navigator.serviceWorker.addEventListener('controllerchange', () => location.reload(), {
      once: true,
    });
    waiting.postMessage({ type: 'skip-waiting' });
  });
  later.addEventListener('click', () => banner.remove());
  document.body.prepend(banner);
}

async function register(): Promise<void> {
  const reg = await navigator.serviceWorker.register(new URL('sw.js', document.baseURI), {
    scope: './',
  });
  const watch = (w: ServiceWorker | null) => {
    if (!w) return;
    const check = () => {
      // Installed while another version controls this tab: a new build is waiting.
      if (w.state === 'installed' && navigator.serviceWorker.controller) offerUpdate(w);
    };
    w.addEventListener('statechange', check);
    check();
  };
  watch(reg.waiting);
  reg.addEventListener('updatefound', () => watch(reg.installing));
}

if (import.meta.env.PROD && 'serviceWorker' in navigator && window.isSecureContext) {
  // After the page has loaded: precaching (~40 MB, mostly onnxruntime's .wasm) must not compete
  // with the app's own first load.
  const start = () =>
    void register().catch((e: unknown) => {
      console.info('Offline use is not available here:', e instanceof Error ? e.message : e);
    });
  if (document.readyState === 'complete') start();
  else window.addEventListener('load', start, { once: true });
}
