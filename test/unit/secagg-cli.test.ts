// The secure-aggregation / DP options of `fednnunet relay` (shared with `simulate`).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const bin = 'bin/fednnunet.js';

describe('fednnunet relay --secure-agg', () => {
  it('prints the threshold, quantisation and DP noise it chose, and a join link marked secure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-secagg-'));
    const p = spawn(
      process.execPath,
      [
        bin,
        'relay',
        '--port',
        '0',
        '--data-dir',
        dir,
        '--static',
        dir,
        '--sites',
        '5',
        '--rounds',
        '4',
        '--token',
        'abc',
        '--dp-epsilon',
        '8',
        '--clip',
        '2',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    try {
      for (let i = 0; i < 300 && !out.includes('join code'); i++)
        await new Promise((ok) => setTimeout(ok, 50));
      expect(out).toMatch(
        /secure aggregation: threshold 3 of 5 sites, clip 2, \d+ fractional bits/,
      );
      expect(out).toMatch(
        /differential privacy: target ε = 8, δ = 0\.00001; noise multiplier σ = \d+\.\d{4} \(std σ·C = [\d.]+ on the sum\)/,
      );
      expect(out).toMatch(/\?join=abc&secure=1/);
    } finally {
      p.kill('SIGTERM');
      await new Promise((ok) => p.once('exit', ok));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it.each([
    [['--dp-epsilon', '1'], /differential privacy needs an explicit clip norm/],
    [
      ['--secure-agg', '--threshold', '4', '--sites', '3'],
      /threshold must be an integer in 2\.\.3/,
    ],
    [
      ['--secure-agg', '--threshold', '2', '--sites', '5'],
      /--threshold 2 is below a majority of 5 sites \(3\).*--allow-minority-threshold/,
    ],
    [['--clip', '1'], /--clip only applies with --secure-agg or --dp-epsilon/],
    [['--secure-agg', '--sites', '1'], /at least 2 sites/],
    [['--dp-epsilon', '2', '--clip', '1', '--weighting', 'cases'], /uniform weighting/],
    [['--secure-agg', '--clip=-3'], /--clip must be a positive number/],
  ])('refuses %j with a one-line usage error', (args, message) => {
    const r = spawnSync(process.execPath, [bin, 'relay', '--port', '0', ...args], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});
