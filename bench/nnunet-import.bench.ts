// Import of a large nnU-Net v2 model: a 31 M-parameter 3d_fullres PlainConvUNet (the 1 mm brain
// plan: 6 stages, 32→320 features, 3³ kernels; random weights) with 5 folds, written as nnU-Net
// would (checkpoint_final.pth per fold, by src/io/torch-save.ts), then imported into model folders
// by `import-nnunet`'s core in a child process — from the results folder and from the export zip.
// Reports time and memory: peak RSS of the child against its RSS once the modules are loaded, and
// the RSS/ArrayBuffer bytes after each fold, which stay flat when folds are read one at a time
// (the whole model is 5 checkpoints; holding them, or a fold's archive + pickle + tensor copies
// together, would show as a multiple of a checkpoint's size).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { paramSpecs } from '../src/model/arch.ts';
import { exportNnUNetModel, nnunetExportZip } from '../src/model/nnunet-export.ts';
import { archFromFolder, type ModelFolder, type ModelPlans } from '../src/model/model-folder.ts';
import type { NamedWeights } from '../src/model/named-weights.ts';
import { writeParts } from '../src/node/write-parts.ts';
import { REFERENCE } from '../test/paths.ts';

const REF = `${REFERENCE}/nnunet-model/Dataset801_PhantomMR/nnUNetTrainer__nnUNetPlans__3d_fullres`;
const FOLDS = 5;
const MiB = 2 ** 20;

const plans = JSON.parse(readFileSync(`${REF}/plans.json`, 'utf8')) as ModelPlans & {
  configurations: Record<string, Record<string, unknown>>;
};
const datasetJson = JSON.parse(readFileSync(`${REF}/dataset.json`, 'utf8'));
const cfg = plans.configurations['3d_fullres'];
cfg.patch_size = [128, 128, 128];
cfg.spacing = [1, 1, 1];
const arch = cfg.architecture as { arch_kwargs: Record<string, unknown> };
arch.arch_kwargs = {
  ...arch.arch_kwargs,
  n_stages: 6,
  features_per_stage: [32, 64, 128, 256, 320, 320],
  kernel_sizes: Array.from({ length: 6 }, () => [3, 3, 3]),
  strides: [[1, 1, 1], ...Array.from({ length: 5 }, () => [2, 2, 2])],
  n_conv_per_stage: [2, 2, 2, 2, 2, 2],
  n_conv_per_stage_decoder: [2, 2, 2, 2, 2],
};

/** Seeded random weights (xorshift32), ±0.05: values do not matter, sizes do. */
function randomWeights(m: ModelFolder, seed: number): NamedWeights {
  let s = seed >>> 0 || 1;
  const w: NamedWeights = new Map();
  for (const p of paramSpecs(archFromFolder(m))) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      d[i] = ((s >>> 0) / 2 ** 32 - 0.5) * 0.1;
    }
    w.set(p.name, { shape: p.shape, data: d });
  }
  return w;
}

const tmp = mkdtempSync(join(tmpdir(), 'bench-nnunet-import-'));
try {
  const base: ModelFolder = { plans, datasetJson, configuration: '3d_fullres', weights: new Map() };
  const nParams = paramSpecs(archFromFolder(base)).reduce(
    (a, p) => a + p.shape.reduce((x, y) => x * y, 1),
    0,
  );
  const modelDir = join(tmp, 'Dataset801_PhantomMR', 'nnUNetTrainer__nnUNetPlans__3d_fullres');
  let t = performance.now();
  let ckptBytes = 0;
  for (let fold = 0; fold < FOLDS; fold++) {
    const ex = exportNnUNetModel({ ...base, weights: randomWeights(base, 1234 + fold) }, { fold });
    for (const f of ex.files) {
      mkdirSync(dirname(join(modelDir, f.path)), { recursive: true });
      const n = writeParts(join(modelDir, f.path), f.parts);
      if (f.path.endsWith('.pth')) ckptBytes = n;
    }
  }
  const writeSeconds = (performance.now() - t) / 1000;
  // The export zip of all 5 folds (nnUNetv2_export_model_to_zip's layout), STORED.
  t = performance.now();
  {
    const files = [];
    for (const p of ['plans.json', 'dataset.json', 'dataset_fingerprint.json'])
      files.push({ path: p, parts: [readFileSync(join(modelDir, p))] });
    for (let fold = 0; fold < FOLDS; fold++)
      files.push({
        path: `fold_${fold}/checkpoint_final.pth`,
        parts: [readFileSync(join(modelDir, `fold_${fold}/checkpoint_final.pth`))],
      });
    writeParts(
      join(tmp, 'export.zip'),
      nnunetExportZip({
        datasetName: 'Dataset801_PhantomMR',
        modelDir: 'nnUNetTrainer__nnUNetPlans__3d_fullres',
        configuration: '3d_fullres',
        fold: 0,
        files,
      }),
    );
  }
  const zipSeconds = (performance.now() - t) / 1000;

  console.log(
    `${(nParams / 1e6).toFixed(1)} M parameters, ${FOLDS} folds, checkpoint_final.pth ${(ckptBytes / MiB).toFixed(0)} MiB each (${((FOLDS * ckptBytes) / MiB).toFixed(0)} MiB in all); writing the 5 checkpoints (torch-save.ts): ${writeSeconds.toFixed(1)} s; the 5-fold export zip: ${zipSeconds.toFixed(1)} s. Load average before import: ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}.\n`,
  );
  console.log(
    '| source | import time (s) | peak RSS (MiB) | RSS after loading modules (MiB) | peak − baseline (MiB) | RSS after each fold (MiB) | ArrayBuffers after each fold (MiB) |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const [label, src, only] of [
    ['results folder, fold 0 only', modelDir, '0'],
    ['results folder', modelDir, undefined],
    ['export zip', join(tmp, 'export.zip'), undefined],
  ] as const) {
    const out = join(tmp, `imported-${label.replace(/\W+/g, '-')}`);
    const r = spawnSync(
      process.execPath,
      [
        '--expose-gc',
        '--import',
        'tsx',
        'bench/nnunet-import-child.ts',
        src,
        out,
        ...(only === undefined ? [] : [only]),
      ],
      { encoding: 'utf8', maxBuffer: 1 << 24 },
    );
    if (r.status !== 0) throw new Error(`import child failed: ${r.stderr}`);
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
    const mb = (x: number) => (x / MiB).toFixed(0);
    console.log(
      `| ${label} | ${j.seconds.toFixed(1)} | ${mb(j.maxRssBytes)} | ${mb(j.baseline.rss)} | ${mb(j.maxRssBytes - j.baseline.rss)} | ${j.folds.map((f: { rss: number }) => mb(f.rss)).join(', ')} | ${j.folds.map((f: { arrayBuffers: number }) => mb(f.arrayBuffers)).join(', ')} |`,
    );
  }
  console.log(
    `\nOne checkpoint is ${(ckptBytes / MiB).toFixed(0)} MiB; all ${FOLDS} are ${((FOLDS * ckptBytes) / MiB).toFixed(0)} MiB.`,
  );
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
