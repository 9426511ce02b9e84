// Relay aggregation cost for a 31 M parameter model (nnU-Net 801-like 3d_fullres size): each
// site's fp16 delta checked (CRC-32, sizes, finiteness, norm) and added to the streaming mean, the
// way Coordinator.update does it, for 10 and 100 sites. Next to it, in the same run: a plain copy of
// the same bytes (memcpy speed, so the ratio holds on a busy machine), the same path adding one
// update per pass over the sums (StreamingMean batch 1; the default adds ADD_BATCH), the JS CRC the page uses, and the earlier path
// (decode to float32 tensors, validate, norm, add) for comparison. Each row prints the 1-minute
// load average before and after it (the machine may be shared). Memory is the process' RSS growth
// over the run (one model in memory, not one per site).
import { loadavg } from 'node:os';
import * as zlib from 'node:zlib';
import '../src/node/native-crc.ts';
import { ADD_BATCH, l2Norm, StreamingMean, validateUpdate } from '../src/fed/aggregate.ts';
import { checkEncodedUpdate } from '../src/fed/encoded-update.ts';
import { decodeWeights, encodeWeights } from '../src/model/weights-codec.ts';
import type { NamedWeights } from '../src/model/named-weights.ts';
import { setCrc32Impl } from '../src/util/crc32.ts';
import { randomArray } from '../src/util/rng.ts';
import { spec801 } from './spec801.ts';

const spec = spec801();
const params = spec.reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);
// Two distinct encoded updates, reused round-robin, so building inputs does not dominate memory.
const updates = [1, 2].map((seed) => {
  const w: NamedWeights = new Map(
    spec.map((e, i) => [
      e.name,
      {
        shape: e.shape,
        data: randomArray(
          e.shape.reduce((x, y) => x * y, 1),
          seed * 1000 + i,
          -1e-3,
          1e-3,
        ),
      },
    ]),
  );
  return encodeWeights(w, 'fp16');
});
const bytes = updates[0].payload.length;
const nativeCrc = typeof (zlib as { crc32?: unknown }).crc32 === 'function';

type Path = (n: number) => NamedWeights;
const fusedBatch =
  (batch?: number): Path =>
  (n) => {
    const mean = new StreamingMean(spec, batch);
    for (let k = 0; k < n; k++) {
      const u = updates[k % 2];
      const c = checkEncodedUpdate(u.entries, u.payload, spec);
      mean.addChecked(c, 1, c.norm > 100 ? 100 / c.norm : 1);
    }
    const r = mean.result();
    // As the coordinator does at a round's close: the sums serve the next round (no fresh mapping).
    mean.release();
    return r;
  };
const fused = fusedBatch();
const oneByOne = fusedBatch(1);
// What Coordinator.update did before: decode, validate, l2Norm, then add (which validates again).
const decoded: Path = (n) => {
  const mean = new StreamingMean(spec);
  for (let k = 0; k < n; k++) {
    const u = updates[k % 2];
    const w = decodeWeights(u.entries, u.payload);
    validateUpdate(w, spec);
    const norm = l2Norm(w);
    mean.add(w, 1, norm > 100 ? 100 / norm : 1);
  }
  return mean.result();
};

let baseline = NaN;
const load = () => loadavg()[0].toFixed(1);
function time(label: string, n: number, run: (n: number) => unknown): unknown {
  (globalThis as { gc?: () => void }).gc?.();
  const rss0 = process.memoryUsage().rss;
  const load0 = load();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = run(n);
  const t = (performance.now() - t0) / 1000;
  // CPU time of this process (all threads): less sensitive than wall time to other jobs' load.
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1000 / n;
  // After the run, with the result still held: what the aggregation keeps (transients already freed or not).
  const peak = process.memoryUsage().rss;
  if (label.startsWith('memcpy')) baseline = t / n;
  console.log(
    `| ${label} | ${n} | ${t.toFixed(2)} | ${((t * 1000) / n).toFixed(0)} | ${cpu.toFixed(0)} | ${(t / n / baseline).toFixed(1)} | ${((peak - rss0) / 2 ** 20).toFixed(0)} | ${load0} → ${load()} |`,
  );
  return r;
}

console.log(
  `model: ${(params / 1e6).toFixed(2)} M parameters, fp16 update ${(bytes / 2 ** 20).toFixed(1)} MiB; CRC-32: ${nativeCrc ? 'zlib (native)' : 'JS'}\n`,
);
console.log(
  '| path | sites | time (s) | per site (ms) | CPU per site (ms) | per site ÷ memcpy per site (last memcpy row) | RSS growth after the run (MiB) | load average (1 min) before → after |',
);
console.log('|---|---|---|---|---|---|---|---|');
const copy = new Uint8Array(bytes);
for (const n of [10, 100]) {
  time('memcpy of the update bytes (baseline)', n, (m) => {
    for (let k = 0; k < m; k++) copy.set(updates[k % 2].payload);
  });
  const r = time(
    `check (blocked CRC + norm) + fused decode-accumulate (${ADD_BATCH} per pass over the sums)`,
    n,
    fused,
  ) as NamedWeights;
  if (r.size !== spec.length) throw new Error('bad result');
}
time('the same, one update per pass over the sums (StreamingMean batch 1)', 100, oneByOne);
setCrc32Impl(undefined);
time('check + fused, JS slice-by-8 CRC (page)', 10, fused);
const a = time(
  'before: decode, validate ×2, norm, add (JS slice-by-8 CRC)',
  10,
  decoded,
) as NamedWeights;
const b = fused(10);
const c = oneByOne(10);
for (const [name, t] of a) {
  const u = b.get(name)!.data;
  for (let i = 0; i < t.data.length; i++)
    if (!Object.is(t.data[i], u[i]) || !Object.is(t.data[i], c.get(name)!.data[i]))
      throw new Error(`fused result differs from the decoded path at '${name}'[${i}]`);
}
console.log('\nfused (batched and not) and decoded paths: bit-identical means (10 sites)');
