// The service worker's policy (src/pwa/precache.ts): which build files are kept for offline use,
// and which requests are answered from them; relay, signalling and other origins never are.
import { describe, expect, it } from 'vitest';
import { cacheName, precachedUrlFor, precacheFiles } from '../../src/pwa/precache.ts';

const SCOPE = 'https://10.0.0.5:8080/';
const files = new Set(
  precacheFiles([
    'index.html',
    'sw.js',
    'assets/index-abc.js',
    'assets/index-abc.js.map',
    'assets/ort-wasm-simd-threaded.jsep-x.wasm',
    'manifest.webmanifest',
    '.DS_Store',
  ]),
);

describe('service worker precache policy', () => {
  it('keeps the page and every build file but the SW itself, source maps and hidden files', () => {
    expect([...files]).toEqual([
      './',
      'assets/index-abc.js',
      'assets/ort-wasm-simd-threaded.jsep-x.wasm',
      'manifest.webmanifest',
    ]);
    expect(cacheName('f00d')).toBe('fednnunet-app-f00d');
  });

  it('answers navigations in scope with the page, build files with themselves', () => {
    const at = (path: string, mode = 'cors') => precachedUrlFor(SCOPE + path, mode, SCOPE, files);
    expect(at('?join=demo&hostkey=ab', 'navigate')).toBe(SCOPE);
    expect(at('index.html', 'navigate')).toBe(SCOPE);
    expect(at('workshop', 'navigate')).toBe(SCOPE);
    expect(at('assets/index-abc.js')).toBe(`${SCOPE}assets/index-abc.js`);
    expect(at('assets/ort-wasm-simd-threaded.jsep-x.wasm')).toBe(
      `${SCOPE}assets/ort-wasm-simd-threaded.jsep-x.wasm`,
    );
  });

  it('leaves relay, signalling, API, unknown files and other origins to the network', () => {
    const at = (url: string, mode = 'cors') => precachedUrlFor(url, mode, SCOPE, files);
    expect(at(`${SCOPE}fed`)).toBeUndefined();
    expect(at(`${SCOPE}fed`, 'navigate')).toBeUndefined();
    expect(at(`${SCOPE}peerjs/peerjs/id`)).toBeUndefined();
    expect(at(`${SCOPE}api/state`)).toBeUndefined();
    expect(at(`${SCOPE}sw.js`)).toBeUndefined();
    expect(at(`${SCOPE}assets/index-old.js`)).toBeUndefined(); // another build's file
    expect(at(`${SCOPE}model.zip`, 'navigate')).toBeUndefined(); // a file, not the app
    expect(at('https://10.0.0.6:8080/assets/index-abc.js')).toBeUndefined();
    // A scope below the origin's root: only requests under it.
    expect(
      precachedUrlFor('https://h/app/assets/index-abc.js', 'cors', 'https://h/app/', files),
    ).toBe('https://h/app/assets/index-abc.js');
    expect(precachedUrlFor('https://h/assets/index-abc.js', 'cors', 'https://h/app/', files)).toBe(
      undefined,
    );
  });
});
