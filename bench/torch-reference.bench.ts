// PyTorch (Debian's python3-torch, CPU) on the same networks, as the outside reference for the
// training and inference benchmarks. Skipped with a note when torch is not installed.
import { spawnSync } from 'node:child_process';

const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
if (probe.status !== 0) {
  console.log(
    'PyTorch not available (/usr/bin/python3 -c "import torch" failed); install Debian\'s python3-torch to run this reference.',
  );
} else {
  const r = spawnSync('/usr/bin/python3', ['bench/torch_reference.py'], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
