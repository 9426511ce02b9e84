// What the service worker (src/pwa/sw.ts) keeps for offline use, and which requests it answers.
// The build (src/node/pwa-plugin.ts) lists every file it wrote (the app shell, workers, the
// onnxruntime-web .wasm, icons, manifest) with a version: a hash over their contents, so a new
// build served by the relay is a new sw.js, a new cache, and the old cache is dropped once the new
// version takes over. Everything else — the relay's /fed WebSocket, PeerJS signalling, any API,
// other origins — goes to the network untouched: federation traffic is never cached.
// Pure (no DOM, no Node): the SW, the build plugin and the unit tests import it.

export interface PrecacheManifest {
  /** Hash of the build's files (names and contents). */
  version: string;
  /** URLs relative to the SW's scope; './' is the app's page (index.html). */
  files: string[];
}

export const CACHE_PREFIX = 'fednnunet-app-';
export const cacheName = (version: string): string => `${CACHE_PREFIX}${version}`;

/** The SW script itself; never precached (the browser fetches it to look for updates). */
export const SW_FILE = 'sw.js';

/** Paths served by the relay, not by the build: always the network. */
const NETWORK_ONLY = [/^fed(\/|$)/, /^peerjs(\/|$)/, /^api(\/|$)/];

/** The build's output files (relative paths, '/' separators) → the URLs to precache, sorted. */
export function precacheFiles(outputFiles: string[]): string[] {
  const keep = outputFiles
    .map((f) => f.replace(/^\.?\//, ''))
    .filter(
      (f) => f !== SW_FILE && !f.endsWith('.map') && !f.split('/').some((p) => p.startsWith('.')),
    )
    .map((f) => (f === 'index.html' ? './' : f));
  return [...new Set(keep)].sort();
}

/**
 * The precached URL that answers a GET request, or undefined to leave it to the network.
 * `scope` is the registration's scope (e.g. https://host:8080/); a page navigation anywhere in the
 * scope (with any query, e.g. ?join=demo) is the app's page.
 */
export function precachedUrlFor(
  url: string,
  mode: string,
  scope: string,
  files: ReadonlySet<string>,
): string | undefined {
  const u = new URL(url);
  const s = new URL(scope);
  if (u.origin !== s.origin || !u.pathname.startsWith(s.pathname)) return undefined;
  const rel = u.pathname.slice(s.pathname.length);
  if (NETWORK_ONLY.some((r) => r.test(rel))) return undefined;
  if (mode === 'navigate') {
    // Only the app's page: a navigation to a file (a download link, /sw.js) goes to the network.
    const last = rel.split('/').pop() ?? '';
    return (rel === '' || rel === 'index.html' || !last.includes('.')) && files.has('./')
      ? new URL('./', s).href
      : undefined;
  }
  return files.has(rel || './') ? new URL(rel || './', s).href : undefined;
}
