// `npm test`: install if needed, make sure a Chromium exists (installing Debian's when we are
// root on Debian/Ubuntu), then run every test (unit + browser) in one vitest run.
import { execSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { ensureDeps } from './ensure-deps.mjs';

const root = process.cwd();
ensureDeps(root);

const candidates = [
  process.env.CHROME_PATH,
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome',
].filter(Boolean);
if (!candidates.some((p) => existsSync(p))) {
  const debian =
    existsSync('/etc/debian_version') ||
    /ID(_LIKE)?=.*(debian|ubuntu)/.test(
      existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '',
    );
  const isRoot = process.getuid?.() === 0;
  if (debian && isRoot) {
    console.log("[fednnunet] no Chromium found: installing Debian's chromium with apt…");
    execSync(
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium',
      { stdio: 'inherit' },
    );
  } else {
    console.error(
      '[fednnunet] The browser tests need Chromium. Run:\n  sudo apt-get install -y chromium\n(or set CHROME_PATH to a Chromium/Chrome binary)',
    );
    process.exit(1);
  }
}

const r = spawnSync('npx', ['vitest', 'run', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
