// A small static file server for the built app (dist/). It sends COOP/COEP so the page is
// cross-origin isolated (SharedArrayBuffer for onnxruntime-web's threaded wasm).
// The federation relay (issue 7) mounts the same handler next to its WebSocket endpoint.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import type { AddressInfo } from 'node:net';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.gz': 'application/gzip',
  '.nii': 'application/octet-stream',
  '.onnx': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8',
};

export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
} as const;

/**
 * Returns a request handler serving `root`; unknown paths without an extension get index.html.
 * Hostile requests get an answer, never an exception: a malformed path is a 400, a method other
 * than GET/HEAD a 405, and a symlink that leads out of `root` a 403.
 */
export function staticHandler(root: string) {
  const base = resolve(root);
  // Resolved once: `root` itself may be a symlink (e.g. a deployed dist/), its files may not leave it.
  let realBase: string | undefined;
  const inside = (dir: string, file: string) => file === dir || file.startsWith(dir + sep);
  return (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...ISOLATION_HEADERS, Allow: 'GET, HEAD' }).end('method not allowed');
      return;
    }
    let rel: string;
    try {
      rel = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      res.writeHead(400, ISOLATION_HEADERS).end('bad request: malformed URL');
      return;
    }
    if (rel.includes('\0')) {
      res.writeHead(400, ISOLATION_HEADERS).end('bad request: malformed URL');
      return;
    }
    if (rel.endsWith('/')) rel += 'index.html';
    const file = normalize(join(base, rel));
    if (!inside(base, file)) {
      res.writeHead(403).end('forbidden');
      return;
    }
    let target = file;
    if (!isFile(target)) {
      if (extname(rel) !== '') {
        res.writeHead(404, ISOLATION_HEADERS).end('not found');
        return;
      }
      target = join(base, 'index.html');
    }
    let real: string;
    let size: number;
    try {
      realBase ??= realpathSync(base);
      real = realpathSync(target);
      size = statSync(real).size;
    } catch {
      res.writeHead(404, ISOLATION_HEADERS).end('not found');
      return;
    }
    if (!inside(realBase, real)) {
      res.writeHead(403).end('forbidden');
      return;
    }
    res.writeHead(200, {
      ...ISOLATION_HEADERS,
      'Content-Type': MIME[extname(target)] ?? 'application/octet-stream',
      'Content-Length': size,
      'Cache-Control': 'no-cache',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    // A file removed between stat and read ends this response, not the process.
    createReadStream(real)
      .on('error', () => res.destroy())
      .pipe(res);
  };
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export interface RunningServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function serveStatic(
  root: string,
  opts: { port?: number; host?: string } = {},
): Promise<RunningServer> {
  if (!existsSync(join(root, 'index.html'))) {
    throw new Error(`${root}/index.html not found: build the app first (npm run build)`);
  }
  const host = opts.host ?? '127.0.0.1';
  const server = createServer(staticHandler(root));
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, host, () => ok());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${host}:${port}/`,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}
