// The app's service worker: keeps this build's files so the app opens and runs without the network
// (a workshop on flaky Wi-Fi; "install app" in Chrome/Edge). Built by Vite as its own entry and
// given this build's file list and version by src/node/pwa-plugin.ts.
//
// Hand-written, not workbox/vite-plugin-pwa: the policy is small (precache one build, answer only
// its own files, drop old versions), and workbox-build would add babel, rollup and terser to the
// build to generate the same ~50 lines. Update: a new build on the relay is a new sw.js (its version
// is a hash of the files); it installs its cache beside the old one and waits, so an open tab never
// loses files it still needs mid-training; src/ui/pwa.ts offers "reload to update".
import { CACHE_PREFIX, cacheName, precachedUrlFor, type PrecacheManifest } from './precache.ts';

declare const __FEDNNUNET_PRECACHE__: PrecacheManifest;
const manifest: PrecacheManifest = __FEDNNUNET_PRECACHE__;
const sw = self as unknown as ServiceWorkerGlobalScope;
const current = cacheName(manifest.version);
const files = new Set(manifest.files);

sw.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(current);
      const scope = sw.registration.scope;
      // cache: 'reload' skips the HTTP cache, so the cache holds exactly what the server has now.
      await cache.addAll(
        manifest.files.map((f) => new Request(new URL(f, scope), { cache: 'reload' })),
      );
    })(),
  );
});

sw.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const k of await caches.keys())
        if (k.startsWith(CACHE_PREFIX) && k !== current) await caches.delete(k);
      // The first version takes the tab that installed it, so it works offline from the first visit.
      await sw.clients.claim();
    })(),
  );
});

sw.addEventListener('message', (event) => {
  if ((event.data as { type?: string } | null)?.type === 'skip-waiting') void sw.skipWaiting();
});

sw.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const hit = precachedUrlFor(req.url, req.mode, sw.registration.scope, files);
  if (!hit) return; // relay, signalling, other origins: the network, untouched
  event.respondWith((async () => (await (await caches.open(current)).match(hit)) ?? fetch(req))());
});
