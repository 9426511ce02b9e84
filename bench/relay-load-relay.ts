// The relay half of `npm run bench relay-load`, in its own process so its peak RSS is the relay's
// alone. Reads the federation config (JSON) from argv, prints `URL <ws url>`, a timestamped line per
// closed round, and at the end (stdin closed) the final model's checksum and the peak RSS.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../src/node/native-crc.ts';
import { startRelay } from '../src/node/relay/server.ts';
import { modelChecksum } from '../src/fed/global-delta.ts';

const config = JSON.parse(process.argv[2]);
const dir = mkdtempSync(join(tmpdir(), 'relay-load-'));
const relay = await startRelay({
  dataDir: dir,
  config,
  // Every site connects from 127.0.0.1.
  limits: { maxPerAddress: 1024 },
  log: (l) => {
    if (/round \d+ closed|rejected|refused|asked for/.test(l))
      console.log(`LOG ${Date.now()} ${l}`);
  },
});
console.log(`URL ${relay.wsUrl}`);
process.stdin.resume();
process.stdin.on('end', async () => {
  const g = relay.coordinator.global;
  console.log(`FINAL ${g ? modelChecksum(g) : 'none'}`);
  await relay.close();
  rmSync(dir, { recursive: true, force: true });
  console.log(`RSS ${process.resourceUsage().maxRSS * 1024}`);
  process.exit(0);
});
