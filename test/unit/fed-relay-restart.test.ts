// SIGKILL the relay process mid-training, restart it on the same data dir: the federation
// completes, losing at most the open round; the sites reconnect by themselves.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { SiteClient } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import { MockTrainer } from './helpers/mock-site.ts';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', () => ok()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

function startRelayProcess(port: number, dataDir: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      'bin/fednnunet.js',
      'relay',
      '--port',
      String(port),
      '--data-dir',
      dataDir,
      '--method',
      'fedavg',
      '--sites',
      '2',
      '--rounds',
      '3',
      '--iters',
      '1',
      '--token',
      'tok',
      '--encoding',
      'fp32',
      '--static',
      '/nonexistent',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b) => {
      out += b;
      if (out.includes('join code')) resolve(child);
    });
    child.stderr!.on('data', (b) => (out += b));
    child.once('exit', (c) => reject(new Error(`relay exited ${c}: ${out}`)));
  });
}

describe('relay crash recovery', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'relay-kill-'));
  let relay: ChildProcess | undefined;
  afterAll(() => {
    relay?.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('continues from the last completed round after SIGKILL', async () => {
    const port = await freePort();
    relay = await startRelayProcess(port, dataDir);
    const url = `ws://127.0.0.1:${port}/fed`;
    const base = [
      { name: 'w', shape: [6] },
      { name: 'b', shape: [2] },
    ];
    const trainers = [1, 2].map((s) => new MockTrainer(base, s));
    let killed = false;
    let restarted: Promise<ChildProcess> | undefined;
    trainers[0].onTrain = async (round) => {
      if (round === 2 && !killed) {
        // Let site 1's round-2 update reach the relay and be accepted first: the relay then dies
        // holding an accepted update in memory, which site 1 must send again after the restart.
        while (!trainers[1].trained.includes(2)) await new Promise((ok) => setTimeout(ok, 20));
        await new Promise((ok) => setTimeout(ok, 300));
        killed = true;
        relay!.kill('SIGKILL');
        await new Promise((ok) => relay!.once('exit', ok));
        const state = JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8'));
        expect(state.round).toBe(1); // round 1 was persisted before the crash
        restarted = startRelayProcess(port, dataDir);
        relay = await restarted;
      }
    };
    const clients = trainers.map(
      (t, i) =>
        new SiteClient({
          connect: wsConnect(url, WebSocket),
          token: 'tok',
          siteName: `s${i}`,
          trainer: t,
          reconnect: { initialMs: 100, maxMs: 400, maxTries: 100 },
        }),
    );
    const results = await Promise.all(clients.map((c) => c.run()));
    expect(killed).toBe(true);
    expect(results.map((r) => r.rounds)).toEqual([3, 3]);
    const state = JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8'));
    expect(state.phase).toBe('done');
    expect(state.history.map((h: { round: number }) => h.round)).toEqual([1, 2, 3]);
    // Both sites end on the same global weights.
    expect([...results[0].global.get('w')!.data]).toEqual([...results[1].global.get('w')!.data]);
  });
});
