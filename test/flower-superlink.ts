// A real Flower SuperLink (the vendored kit, flower/kit: Flower's Python package from source) with
// the REST Fleet API on loopback, random free ports, and our ServerApp (flower/fednnunet_app)
// submitted to it: shared by the unit and browser tests. `flowerKitMissing` says why they skip
// when the kit's Python dependencies (Debian packages; `.ci/run` installs them) are absent.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
export const KIT = join(ROOT, 'flower/kit');
export const APP = join(ROOT, 'flower/fednnunet_app');
export const PY = '/usr/bin/python3';
const PY_DEPS =
  'grpc, google.protobuf, starlette, uvicorn, numpy, cryptography, sqlalchemy, typer, Cryptodome, tomli_w, pathspec, yaml, requests, typing_extensions';

/** Why the Flower tests cannot run here, or undefined when they can. */
export function flowerKitMissing(): string | undefined {
  const r = spawnSync(PY, ['-c', `import ${PY_DEPS}`], { encoding: 'utf8' });
  if (r.error) return `no ${PY}`;
  if (r.status !== 0)
    return `the Flower kit's Python dependencies are missing (${r.stderr.trim().split('\n').at(-1)}); run: sh flower/kit/setup.sh DIR`;
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

export interface SuperLink {
  /** http://127.0.0.1:PORT of the REST Fleet API. */
  fleetUrl: string;
  /** Scratch folder (Flower's home, the unpacked package, model folders of the tests). */
  dir: string;
  /** The environment Flower's Python programs need (the kit's shims and package). */
  env: NodeJS.ProcessEnv;
  /** Submits a run of our ServerApp with these run-config overrides; resolves to its log at its end. */
  submit(
    overrides: Record<string, string | number | boolean>,
    onOutput?: (text: string) => void,
  ): Promise<string>;
  /** The SuperLink's latest output (the last 20 000 characters). */
  log(): string;
  close(): void;
}

export async function startSuperLink(): Promise<SuperLink> {
  const dir = mkdtempSync(join(tmpdir(), 'flower-test-'));
  execFileSync('tar', ['xzf', join(KIT, 'flwr-py.tgz'), '-C', dir]);
  const [fleet, appio, control] = [await freePort(), await freePort(), await freePort()];
  writeFileSync(
    join(dir, 'config.toml'),
    `[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:${control}"\ninsecure = true\n`,
  );
  const env = {
    ...process.env,
    FLWR_HOME: dir,
    FLWR_PY: dir,
    PYTHONPATH: `${join(KIT, 'shims')}:${dir}`,
    PATH: `${join(KIT, 'bin')}:${process.env.PATH}`,
  };
  let log = '';
  const link: ChildProcess = spawn(
    join(KIT, 'bin/flower-superlink'),
    [
      '--insecure',
      '--fleet-api-type',
      'rest',
      '--fleet-api-address',
      `127.0.0.1:${fleet}`,
      '--serverappio-api-address',
      `127.0.0.1:${appio}`,
      '--control-api-address',
      `127.0.0.1:${control}`,
    ],
    { env, cwd: dir },
  );
  link.stdout?.on('data', (d) => (log = (log + d).slice(-20_000)));
  link.stderr?.on('data', (d) => (log = (log + d).slice(-20_000)));
  const fleetUrl = `http://127.0.0.1:${fleet}`;
  const close = () => {
    link.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForFleet(fleetUrl, link, () => log);
  } catch (e) {
    close();
    throw e;
  }
  const submit = (
    overrides: Record<string, string | number | boolean>,
    onOutput?: (text: string) => void,
  ) => {
    const args = Object.entries(overrides).map(([k, v]) =>
      typeof v === 'string' ? `${k}='${v}'` : `${k}=${v}`,
    );
    return new Promise<string>((res, rej) => {
      const p = spawn(PY, [join(KIT, 'submit_run.py'), APP, 'local', ...args], { env, cwd: dir });
      let out = '';
      const add = (d: Buffer) => {
        out += d;
        onOutput?.(String(d));
      };
      p.stdout.on('data', add);
      p.stderr.on('data', add);
      p.on('error', rej);
      p.on('exit', () => res(out));
    });
  };
  return { fleetUrl, dir, env, submit, log: () => log, close };
}

async function waitForFleet(url: string, link: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (link.exitCode !== null) throw new Error(`the SuperLink exited: ${log().slice(-2000)}`);
    // Any HTTP answer means the REST server is up (a GET on a POST route answers 405).
    const up = await fetch(`${url}/api/v0/fleet/pull-messages`).then(
      () => true,
      () => false,
    );
    if (up) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error('the SuperLink REST API did not come up');
}
