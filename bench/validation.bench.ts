// A federation site's per-round validation Dice (TrainerSite.validationDice: a Gaussian sliding
// window over every validation case, step 0.5) on tfjs-cpu and on onnxruntime-node (one ONNX
// export of the current weights, then the session), against one round of training (15
// iterations), on the demo site A (1 mm phantoms, 56³ voxels; --tiny, 24³ patch: the setting of
// `fednnunet simulate --method ffe --rounds 3 --iters 15 --tiny`). Wall and CPU seconds (CPU time
// of this process, all threads: less sensitive to a loaded machine than wall time).
import { DEMO_SITES, demoDataset } from '../src/demo/phantoms.ts';
import type { FederationConfig } from '../src/fed/protocol.ts';
import { nodeValidationEngine, tfjsValidationEngine } from '../src/infer/validation-engine.ts';
import { useBackend } from '../src/model/tf-backend.ts';
import { SitePipeline } from '../src/pipeline/site-pipeline.ts';
import { memoryCasesStore } from '../src/pipeline/site-store.ts';
import { TrainerSite } from '../src/pipeline/trainer-site.ts';

await useBackend('cpu');
const ds = demoDataset(DEMO_SITES[0], 0);
const pipeline = new SitePipeline(memoryCasesStore(ds.name, ds.datasetJson, ds.cases));
const config: FederationConfig = {
  method: 'fedavg',
  configuration: '3d_fullres',
  rounds: 3,
  itersPerRound: Number(process.env.ITERS ?? 15),
  minSites: 1,
  roundDeadlineMs: 60_000,
  weighting: 'uniform',
  encoding: 'fp32',
};
const ort = await nodeValidationEngine();
const measure = async <T>(f: () => Promise<T>) => {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await f();
  const cpu = process.cpuUsage(c0);
  return { value, wall: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6 };
};
const rows: string[] = [];
for (const engine of [tfjsValidationEngine(undefined, 'tfjs (cpu)'), ort]) {
  const site = new TrainerSite({
    pipeline,
    tiny: true,
    seed: 0,
    valIters: 0,
    validationEngine: engine,
  });
  await site.prepare(null, config);
  const train = await measure(() => site.train(1));
  const val = await measure(() => site.validationDice());
  rows.push(
    `| ${engine.name} | ${site.trainer!.valIds.length} | ${train.wall.toFixed(1)} / ${train.cpu.toFixed(1)} | ${val.wall.toFixed(1)} / ${val.cpu.toFixed(1)} | ${val.value.toFixed(4)} |`,
  );
  site.trainer!.dispose();
}
console.log(
  `| validation engine | val cases | one round's training (${config.itersPerRound} it), wall / CPU s | validation Dice, wall / CPU s | Dice |`,
);
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(r);
