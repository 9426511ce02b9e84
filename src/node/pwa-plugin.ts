// Build step for the service worker (src/pwa/sw.ts): Vite builds it as its own entry at dist/sw.js,
// and this plugin writes into it the list of every file of the build (bundles, workers, .wasm,
// public/ icons and manifest) and a version hashed from their contents. A changed file is a changed
// sw.js, which is how browsers notice a new build on the relay. Runs in Node at build time only.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import type { Plugin } from 'vite';
import { precacheFiles, SW_FILE, type PrecacheManifest } from '../pwa/precache.ts';

/** The placeholder sw.ts reads its manifest from (a bare global: minifiers leave it alone). */
const PLACEHOLDER = '__FEDNNUNET_PRECACHE__';

function walk(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : [],
  );
}

export function pwaPlugin(opts: { swEntry: string; htmlEntry?: string }): Plugin {
  let publicDir = '';
  return {
    name: 'fednnunet-pwa',
    apply: 'build',
    enforce: 'post',
    config(_, env) {
      if (env.isPreview) return;
      return {
        build: {
          rolldownOptions: {
            input: { index: opts.htmlEntry ?? 'index.html', sw: opts.swEntry },
            output: {
              // sw.js at the root, unhashed: its scope is the whole app and its URL must not change.
              entryFileNames: (c: { name: string }) =>
                c.name === 'sw' ? SW_FILE : 'assets/[name]-[hash].js',
            },
          },
        },
      };
    },
    configResolved(c) {
      publicDir = c.publicDir;
    },
    generateBundle(_, bundle) {
      const hash = createHash('sha256');
      const names: string[] = [];
      for (const [name, item] of Object.entries(bundle).sort(([a], [b]) => a.localeCompare(b))) {
        if (name === SW_FILE) continue;
        names.push(name);
        hash.update(name).update('\0');
        hash.update(item.type === 'chunk' ? item.code : item.source).update('\0');
      }
      for (const file of walk(publicDir).sort()) {
        const name = relative(publicDir, file).split(sep).join('/');
        names.push(name);
        hash.update(name).update('\0').update(readFileSync(file)).update('\0');
      }
      if (!names.includes('index.html')) names.push('index.html');
      const manifest: PrecacheManifest = {
        version: hash.digest('hex').slice(0, 16),
        files: precacheFiles(names),
      };
      const sw = bundle[SW_FILE];
      if (!sw || sw.type !== 'chunk' || !sw.code.includes(PLACEHOLDER))
        throw new Error(`pwa: ${SW_FILE} was not built from ${opts.swEntry} with its placeholder`);
      if (/^\s*import\s/m.test(sw.code))
        throw new Error(`pwa: ${SW_FILE} imports other chunks; a classic service worker cannot`);
      sw.code = sw.code.split(PLACEHOLDER).join(JSON.stringify(manifest));
    },
  };
}
