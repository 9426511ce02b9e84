import { defineConfig } from 'vite';
import { pwaPlugin } from './src/node/pwa-plugin.ts';

// Cross-origin isolation (COOP/COEP) gives the page SharedArrayBuffer, which
// onnxruntime-web needs for threaded wasm. The Node server (src/node/static-server.ts)
// sends the same headers in production.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

// Rolldown prints a [PLUGIN_TIMINGS] block on slow builds: noise in `npm start`'s terminal.
const quiet = { checks: { bundlerTimings: false } };

export default defineConfig({
  // Module workers: `new Worker(new URL(...), { type: 'module' })` needs ES output.
  worker: { format: 'es', rolldownOptions: quiet },
  server: { headers: isolation, host: '127.0.0.1' },
  preview: { headers: isolation, host: '127.0.0.1' },
  // The service worker (offline app, install as PWA): src/pwa/sw.ts, its file list from the plugin.
  plugins: [pwaPlugin({ swEntry: 'src/pwa/sw.ts' })],
  build: { target: 'es2022', outDir: 'dist', chunkSizeWarningLimit: 4096, rolldownOptions: quiet },
});
