// Runs the workshop test (host tab + two participants over PeerJS / WebRTC) inside a fresh network
// namespace made here: loopback plus a veth pair with TEST-NET-1 addresses (192.0.2.10/11) and a
// default route into that pair. The namespace has no way out, so the WebRTC traffic of the test
// stays inside it. Needs root, unshare and iproute2 (CI has them); skipped otherwise.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const root = process.getuid?.() === 0;
const tools =
  spawnSync('sh', ['-c', 'command -v unshare && command -v ip'], { encoding: 'utf8' }).status === 0;

const SETUP = [
  'ip link set lo up',
  'ip link add fnnu0 type veth peer name fnnu1',
  'ip addr add 192.0.2.10/24 dev fnnu0',
  'ip addr add 192.0.2.11/24 dev fnnu1',
  'ip link set fnnu0 up',
  'ip link set fnnu1 up',
  'ip route add default dev fnnu0',
].join(' && ');

describe.skipIf(!root || !tools)('workshop mode inside an isolated network namespace', () => {
  it('a host tab and two participants complete a federation over PeerJS data channels (plain, and secure + DP); a host tab reloads and resumes; a host waits for its code to be free', () => {
    const r = spawnSync(
      'unshare',
      [
        '-n',
        'sh',
        '-c',
        `${SETUP} && exec npx vitest run --project browser test/browser/workshop.test.ts`,
      ],
      {
        env: { ...process.env, FEDNNUNET_NETNS: '1', FEDNNUNET_SKIP_BUILD: '1' },
        encoding: 'utf8',
        // Four browser federations (the host-reload one ~2–5 min alone) on a shared, slow CI machine.
        timeout: 1_200_000,
      },
    );
    // eslint-disable-next-line no-control-regex
    const out = `${r.stdout}\n${r.stderr}`.replace(/\x1b\[[0-9;]*m/g, '');
    expect(r.status, out.slice(-4000)).toBe(0);
    expect(out).toMatch(/Tests\s+4 passed/);
  }, 1_220_000);
});
