// `npm start` stopped by its PID must not leave the relay serving (scripts/supervise.mjs, used by
// scripts/start.mjs): signals go on to the child, and a dead parent stops the child too.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SUPERVISE = fileURLToPath(new URL('../../scripts/supervise.mjs', import.meta.url));
// A stand-in for start.mjs: supervises a child that would serve forever, prints the child's pid.
const SUPERVISOR = `
import { spawn } from 'node:child_process';
import { supervise } from ${JSON.stringify(SUPERVISE)};
const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
supervise(child, { pollMs: 100 });
child.on('exit', () => process.exit(0));
console.log('child ' + child.pid);
`;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Waits (bounded) until `pid` is gone; true when it went. */
async function gone(pid: number, ms = 10_000): Promise<boolean> {
  for (const t0 = Date.now(); Date.now() - t0 < ms;) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

function childPid(out: NodeJS.ReadableStream): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no child pid printed: ${text}`)), 20_000);
    out.on('data', (b: Buffer) => {
      text += b.toString();
      const m = /child (\d+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
}

describe('npm start supervision', () => {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`${sig} to the start process stops its child`, async () => {
      const sup = spawn(process.execPath, ['--input-type=module', '-e', SUPERVISOR], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const pid = await childPid(sup.stdout!);
      try {
        expect(alive(pid)).toBe(true);
        sup.kill(sig);
        expect(await gone(pid)).toBe(true);
        expect(await gone(sup.pid!)).toBe(true);
      } finally {
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      }
    });
  }

  it('a parent killed outright (npm, a shell) stops the child too', async () => {
    // `; true` keeps sh from exec-ing node, so sh is the parent that dies without passing a signal on.
    const sh = spawn(
      'sh',
      ['-c', `"${process.execPath}" --input-type=module -e "$0"; true`, SUPERVISOR],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const pid = await childPid(sh.stdout!);
    try {
      expect(alive(pid)).toBe(true);
      sh.kill('SIGKILL');
      expect(await gone(pid)).toBe(true);
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});
