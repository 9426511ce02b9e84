// Relay aggregation cost for a 31 M parameter model (nnU-Net 801-like 3d_fullres size):
// decode each site's fp16 delta and add it to the streaming mean, for 10 and 100 sites.
// Memory is the process' peak RSS growth over the run (one model in memory, not one per site).
import { StreamingMean } from '../src/fed/aggregate.ts';
import { decodeWeights, encodeWeights } from '../src/model/weights-codec.ts';
import type { NamedWeights } from '../src/model/named-weights.ts';
import { randomArray } from '../src/util/rng.ts';
import { spec801 } from './spec801.ts';

const spec = spec801();
const params = spec.reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);
// Two distinct encoded updates, reused round-robin, so building inputs does not dominate memory.
const updates = [1, 2].map((seed) => {
  const w: NamedWeights = new Map(spec.map((e, i) => [e.name, { shape: e.shape, data: randomArray(e.shape.reduce((x, y) => x * y, 1), seed * 1000 + i, -1e-3, 1e-3) }]));
  return encodeWeights(w, 'fp16');
});
const bytes = updates[0].payload.length;

console.log(`model: ${(params / 1e6).toFixed(2)} M parameters, fp16 update ${(bytes / 2 ** 20).toFixed(1)} MiB\n`);
console.log('| sites | aggregate time (s) | per site (ms) | relay RSS growth (MiB) |');
console.log('|---|---|---|---|');
for (const n of [10, 100]) {
  (globalThis as { gc?: () => void }).gc?.();
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const t0 = performance.now();
  const mean = new StreamingMean(spec);
  for (let k = 0; k < n; k++) {
    const u = updates[k % 2];
    mean.add(decodeWeights(u.entries, u.payload), 1);
    peak = Math.max(peak, process.memoryUsage().rss);
  }
  const result = mean.result();
  const t = (performance.now() - t0) / 1000;
  peak = Math.max(peak, process.memoryUsage().rss);
  console.log(`| ${n} | ${t.toFixed(1)} | ${((t * 1000) / n).toFixed(0)} | ${((peak - rss0) / 2 ** 20).toFixed(0)} |`);
  if (result.size !== spec.length) throw new Error('bad result');
}
