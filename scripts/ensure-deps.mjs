// Installs dependencies when they are missing, so that the README's two commands work on a fresh
// clone. Plain Node: it must run before `npm ci`. It never reinstalls over an existing
// node_modules (npm ci would first delete it, which breaks a shared or symlinked install).
import { execSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export function ensureDeps(root = process.cwd()) {
  if (existsSync(join(root, 'node_modules', '.package-lock.json'))) return;
  // --loglevel=error: npm's warnings (deprecations, install scripts) are not this app's to act on.
  console.log('[fednnunet] installing dependencies (npm ci)…');
  execSync('npm ci --no-audit --no-fund --loglevel=error', {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
  });
}
