// Training step cost of the --tiny preset on the tfjs cpu backend: ms per iteration (sampling,
// augmentation, forward, backward, SGD step; batch 2) and the peak of tf.memory().numBytes during
// an iteration (tf.profile over every kernel), with and without per-stage activation
// checkpointing, for 16³, 24³ and 32³ patches. Data: 3 synthetic 40³ cases. Iteration 0 (which
// also allocates the momentum buffers) is not timed; 3 iterations are.
import { useBackend } from '../src/model/tf-backend.ts';
import { prepareTraining, SitePipeline } from '../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../src/pipeline/site-store.ts';
import { Trainer } from '../src/train/trainer.ts';
import { ellipsoidPhantom, PHANTOM_DATASET_JSON } from '../test/unit/helpers/phantom.ts';

await useBackend('cpu');
const dj = { ...PHANTOM_DATASET_JSON, numTraining: 3 };
const ph = Array.from({ length: 3 }, (_, i) => ellipsoidPhantom(i, 40));
const patches = (process.env.PATCHES ?? '16,24,32').split(',').map(Number);
console.log('| patch | checkpointing | ms/iter | peak tf MiB |');
console.log('|---|---|---|---|');
for (const p of patches) {
  const prep = await prepareTraining(
    new SitePipeline(
      memoryCasesStore(
        'Dataset999_Bench',
        dj,
        ph.map((c, i) => ({ id: `c${i}`, ...c })),
      ),
    ),
    { configuration: '3d_fullres', tiny: { patch: p } },
  );
  for (const checkpointing of [false, true]) {
    const t = new Trainer({
      plans: prep.plans,
      configuration: '3d_fullres',
      datasetJson: dj,
      cases: prep.cases,
      options: {
        epochs: 1,
        itersPerEpoch: 4,
        valIters: 0,
        split: 'all',
        checkpointing,
        peakMemory: (process.env.PEAK ?? 'exact') as 'exact' | 'sampled',
      },
    });
    const ms: number[] = [];
    let peak = 0;
    await t.run({
      onEvent: (e) => {
        if (e.type === 'iteration' && e.iteration > 0) {
          ms.push(e.msPerIter);
          peak = Math.max(peak, e.peakBytes);
        }
      },
    });
    t.dispose();
    console.log(
      `| ${p}³ | ${checkpointing ? 'every stage' : 'off'} | ${(ms.reduce((a, b) => a + b, 0) / ms.length).toFixed(0)} | ${(peak / 2 ** 20).toFixed(1)} |`,
    );
  }
}
