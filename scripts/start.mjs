// `npm start`: install if needed, build the app if the sources changed, then run the relay
// (`fednnunet relay`) serving the app with a demo federation ready to join: FFE, 2 sites,
// 3 rounds × 5 iterations, join code `demo`. Any relay option given after `--` wins
// (`npm start -- --port 0 --rounds 10`). Each run starts a fresh federation in a temporary
// data dir unless `--data-dir` is given (a relay restarted on an old dir resumes that federation).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDeps } from './ensure-deps.mjs';
import { supervise } from './supervise.mjs';

const root = process.cwd();
ensureDeps(root);

function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let m = st.mtimeMs;
  for (const name of readdirSync(path)) m = Math.max(m, newest(join(path, name)));
  return m;
}

const built = join(root, 'dist', 'index.html');
const sources = ['src', 'workers', 'public', 'index.html', 'vite.config.ts', 'package-lock.json']
  .map((p) => join(root, p))
  .filter(existsSync);
if (!existsSync(built) || Math.max(...sources.map(newest)) > statSync(built).mtimeMs) {
  console.log('[fednnunet] building the app (vite build)…');
  const r = spawnSync('npx', ['vite', 'build', '--logLevel', 'warn'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const user = process.argv.slice(2);
const given = (name) => user.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
const DEMO = { method: 'ffe', sites: '2', rounds: '3', iters: '5', token: 'demo' };
const defaults = Object.entries(DEMO)
  .filter(([k]) => !given(k))
  .flatMap(([k, v]) => [`--${k}`, v]);
let tempDir;
if (!given('data-dir') && !user.includes('--help')) {
  tempDir = mkdtempSync(join(tmpdir(), 'fednnunet-demo-'));
  defaults.push('--data-dir', tempDir);
}
if (!user.includes('--help')) {
  console.log(
    `[fednnunet] demo federation: ${given('method') ? 'custom' : 'FFE'}, ${given('sites') ? 'custom' : '2'} sites` +
      `${tempDir ? ` (fresh state in ${tempDir})` : ''}. Open the printed link in two browser profiles (or two`,
  );
  console.log(
    '[fednnunet] machines), choose "Use demo data" with a different demo site in each, then "Join the federation".',
  );
}
const child = spawn(process.execPath, ['bin/fednnunet.js', 'relay', ...defaults, ...user], {
  cwd: root,
  stdio: 'inherit',
});
// Ctrl-C / SIGTERM / a dead parent: let the relay close, then remove the demo's temporary state.
supervise(child);
child.on('exit', (code, signal) => {
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  process.exit(code ?? (signal ? 1 : 0));
});
