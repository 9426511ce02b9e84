// Fingerprint extraction and preprocessing in Node on the reference phantoms: the whole 801 dataset
// fingerprint (read + gunzip + NIfTI parse + per-case fingerprint, one case at a time), its parts,
// and run_case (crop, normalise, resample, class locations) of single cases. Each task runs in its
// own child process so that its peak RSS growth (getrusage maxrss over the post-import baseline) is
// its own. Times: one warm-up run, then the median and min of RUNS runs.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { caseFingerprint } from '../src/fingerprint/case.ts';
import { extractFingerprint, rawDatasetCases } from '../src/fingerprint/extract.ts';
import { openRawDataset, stackChannels } from '../src/io/raw-dataset.ts';
import { nnunetView, type Volume } from '../src/io/volume.ts';
import { fsSource } from '../src/node/fs-source.ts';
import { runCase, type PreprocessPlans } from '../src/preprocess/preprocess.ts';
import { REFERENCE } from '../test/paths.ts';

const RUNS = 10;
const raw = (d: string) => `${REFERENCE}/raw/${d}`;
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

interface Row {
  task: string;
  voxelsM: number;
  outMB?: number;
  times: number[];
  peakMB: number;
}

async function loadAll(d: string): Promise<{ id: string; image: Volume; label: Volume }[]> {
  const src = fsSource(raw(d));
  const out = [];
  for await (const c of rawDatasetCases(src, await openRawDataset(src))) {
    const imgs = c.image as Volume[];
    out.push({
      id: c.id,
      image: imgs.length === 1 ? imgs[0] : stackChannels(imgs),
      label: c.label!,
    });
  }
  return out;
}

const voxels = (v: Volume) => v.data.length;

const TASKS: Record<
  string,
  () => Promise<{
    label: string;
    voxelsM: number;
    outMB?: number;
    fn: () => Promise<unknown> | unknown;
  }>
> = {
  async 'fp-801'() {
    const cases = await loadAll('Dataset801_PhantomMR');
    return {
      label: 'fingerprint 801, 5 cases: read + gunzip + parse + fingerprint',
      voxelsM: cases.reduce((s, c) => s + voxels(c.image), 0) / 1e6,
      fn: () => extractFingerprint(fsSource(raw('Dataset801_PhantomMR'))),
    };
  },
  async 'read-801'() {
    const cases = await loadAll('Dataset801_PhantomMR');
    return {
      label: '  of which: read + gunzip + parse only',
      voxelsM: cases.reduce((s, c) => s + voxels(c.image), 0) / 1e6,
      fn: () => loadAll('Dataset801_PhantomMR'),
    };
  },
  async 'case-fp-801'() {
    const cases = await loadAll('Dataset801_PhantomMR');
    return {
      label: '  of which: caseFingerprint only (in memory)',
      voxelsM: cases.reduce((s, c) => s + voxels(c.image), 0) / 1e6,
      fn: () => cases.map((c) => caseFingerprint(c.image, c.label)),
    };
  },
  ...Object.fromEntries(
    [
      [
        'pp-801',
        'Dataset801_PhantomMR',
        'mrA_000',
        `${REFERENCE}/plans/Dataset801_PhantomMR/nnUNetPlans.json`,
        'no resampling',
      ],
      [
        'pp-802',
        'Dataset802_PhantomCTaniso',
        'ct_000',
        `${REFERENCE}/plans/Dataset802_PhantomCTaniso/nnUNetPlans.json`,
        'separate-z resampling 26→32 slices',
      ],
      [
        'pp-804f',
        'Dataset804_PhantomMRsiteB',
        'mrB_000',
        `${REFERENCE}/federated/fed_801_804/Dataset804_PhantomMRsiteB/nnUNetPlans.json`,
        'FFE plans: 3-D cubic resampling',
      ],
    ].map(([key, d, id, plansPath, note]) => [
      key,
      async () => {
        const c = (await loadAll(d)).find((x) => x.id === id)!;
        const plans = json(plansPath) as PreprocessPlans;
        const dj = json(`${raw(d)}/dataset.json`);
        const r = runCase(c.image, c.label, plans, '3d_fullres', dj);
        const [C, z, y, x] = nnunetView(c.image).shape;
        return {
          label: `preprocess ${d.slice(7, 10)} ${id} 3d_fullres (run_case, ${note}): ${C}×${z}×${y}×${x} → ${r.shape.join('×')}`,
          voxelsM: voxels(c.image) / 1e6,
          outMB: (r.data.byteLength + r.seg.byteLength) / 2 ** 20,
          fn: () => runCase(c.image, c.label, plans, '3d_fullres', dj),
        };
      },
    ]),
  ),
};

const maxRssMB = () => process.resourceUsage().maxRSS / 1024;

async function child(key: string): Promise<void> {
  const t = await TASKS[key]();
  (globalThis as { gc?: () => void }).gc?.();
  const base = maxRssMB();
  await t.fn(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await t.fn();
    times.push(performance.now() - t0);
  }
  const row: Row = {
    task: t.label,
    voxelsM: t.voxelsM,
    outMB: t.outMB,
    times,
    peakMB: maxRssMB() - base,
  };
  console.log(JSON.stringify(row));
}

async function main(): Promise<void> {
  console.log(
    `${RUNS} timed runs after one warm-up per task; each task in its own Node process. Peak RSS: growth of getrusage maxrss over the task's post-setup baseline (setup has loaded the task's cases once, so they are in the baseline; the first two rows read them from disk again in every run).\n`,
  );
  console.log(
    '| task | input voxels (M) | output (MB) | median (ms) | min (ms) | peak RSS growth (MB) |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const key of Object.keys(TASKS)) {
    const r = spawnSync(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', 'bench/fingerprint.bench.ts', key],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`${key}: ${r.stderr}`);
    const row = JSON.parse(r.stdout.trim().split('\n').pop()!) as Row;
    const s = [...row.times].sort((a, b) => a - b);
    console.log(
      `| ${row.task} | ${row.voxelsM.toFixed(2)} | ${row.outMB === undefined ? '' : row.outMB.toFixed(2)} | ${s[Math.floor(s.length / 2)].toFixed(0)} | ${s[0].toFixed(0)} | ${row.peakMB.toFixed(0)} |`,
    );
  }
}

const arg = process.argv[2];
await (arg ? child(arg) : main());
