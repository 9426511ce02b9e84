// The README's first quick-start command: `npm start` serves the app at a printed URL.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../../src/node/chromium.ts';

describe('npm start', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    // npm → start.mjs → server: kill the whole process group, not just npm.
    if (child?.pid) process.kill(-child.pid, 'SIGTERM');
  });

  it('prints a URL that serves the app', async () => {
    // Port 0: let the OS pick a free port; the command prints the real one.
    child = spawn('npm', ['start', '--', '--port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`no URL printed; output:\n${out}`)), 120_000);
      const onData = (b: Buffer) => {
        out += b.toString();
        const m = /open (http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      child!.stdout!.on('data', onData);
      child!.stderr!.on('data', onData);
      child!.once('exit', (code) =>
        reject(new Error(`npm start exited (${code}) before printing a URL:\n${out}`)),
      );
    });
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    const b = await launchChromium({ webgpu: true });
    try {
      const page = await b.newPage();
      await page.goto(url);
      await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
      expect(await page.title()).toBe('FednnU-Net Web');
    } finally {
      await b.close();
    }
  });
});
