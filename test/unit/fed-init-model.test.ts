// Fine-tuning (issue 16): a federation that starts from nnU-Net's own checkpoint (the reference
// Dataset801 model, fold 0) on two sites holding Dataset801's phantom cases, each cropped to one
// 32³ patch around the organ (tfjs-cpu runs a 32³ tile of this network in seconds; whole cases
// would take minutes). Round 1's global is the checkpoint, so each site's validation Dice before
// any federated training equals the checkpoint's own Dice on that case — measured independently
// by the inference path (predictCase, raw space; the path whose labels equal nnU-Net's in
// 99.999 % of voxels) — and is far above the same site's randomly initialised network. The sites train with the checkpoint's
// plans (FFE's pooled plan would differ, and the log says so); AsymFedAvg shares exactly the tensors
// whose name and shape match the checkpoint; a checkpoint with other labels is refused.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NNUNET_MODEL as MODEL } from '../nnunet-helpers.ts';
import { REFERENCE } from '../paths.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { startRelay } from '../../src/node/relay/server.ts';
import { SiteClient } from '../../src/fed/client.ts';
import { wsConnect } from '../../src/fed/ws-transport.ts';
import { mergeSiteFingerprints } from '../../src/fed/ffe-merge.ts';
import type { FederationConfig } from '../../src/fed/protocol.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { TrainerSite } from '../../src/pipeline/trainer-site.ts';
import { SitePipeline } from '../../src/pipeline/site-pipeline.ts';
import { rawFolderStore } from '../../src/pipeline/site-store.ts';
import { loadInitModel } from '../../src/node/init-model-fs.ts';
import { checkInitModel } from '../../src/fed/init-model.ts';
import type { NamedWeights } from '../../src/model/named-weights.ts';
import { readNifti } from '../../src/io/nifti.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import type { Volume } from '../../src/io/volume.ts';
import { readNnUNetModel } from '../../src/infer/nnunet-folds.ts';
import { configurationInfo, predictCase, tfjsTilePredictor } from '../../src/infer/predictor.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { computeCaseMetrics } from '../../src/eval/metrics.ts';

const RAW = join(REFERENCE, 'raw', 'Dataset801_PhantomMR');
// Seed 1 puts mrA_000 (site A) and mrA_004 (site B) in validation: the cases nnU-Net predicted.
const SEED = 1;
const SITES = [
  ['mrA_000', 'mrA_001', 'mrA_002'],
  ['mrA_003', 'mrA_004'],
];
const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-init-model-'));

const EDGE = 32;
/** `v` cropped to EDGE³ voxels centred on the label's foreground (affine moved with it). */
function crop(v: Volume, box: number[]): Volume {
  const [x0, y0, z0] = box;
  const [nx, ny] = v.dims;
  const data = new (v.data.constructor as Float32ArrayConstructor)(EDGE ** 3);
  for (let z = 0; z < EDGE; z++)
    for (let y = 0; y < EDGE; y++)
      for (let x = 0; x < EDGE; x++)
        data[x + EDGE * (y + EDGE * z)] = v.data[x + x0 + nx * (y + y0 + ny * (z + z0))];
  const a = [...v.affine];
  for (let r = 0; r < 3; r++) a[4 * r + 3] += a[4 * r] * x0 + a[4 * r + 1] * y0 + a[4 * r + 2] * z0;
  return { ...v, data, dims: [EDGE, EDGE, EDGE], affine: a, source: undefined };
}
function foregroundBox(seg: Volume): number[] {
  const [nx, ny, nz] = seg.dims;
  const sum = [0, 0, 0];
  let n = 0;
  for (let z = 0; z < nz; z++)
    for (let y = 0; y < ny; y++)
      for (let x = 0; x < nx; x++)
        if (seg.data[x + nx * (y + ny * z)] > 0) {
          sum[0] += x;
          sum[1] += y;
          sum[2] += z;
          n++;
        }
  return sum.map((s, i) => Math.max(0, Math.min(seg.dims[i] - EDGE, Math.round(s / n) - EDGE / 2)));
}

/** A site's raw folder: some of Dataset801's cases, each cropped to EDGE³ around its organ. */
function siteFolder(name: string, cases: string[]): string {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'imagesTr'), { recursive: true });
  mkdirSync(join(dir, 'labelsTr'), { recursive: true });
  for (const c of cases) {
    const img = readNifti(new Uint8Array(readFileSync(join(RAW, 'imagesTr', `${c}_0000.nii.gz`))));
    const seg = readNifti(new Uint8Array(readFileSync(join(RAW, 'labelsTr', `${c}.nii.gz`))));
    const box = foregroundBox(seg);
    writeFileSync(
      join(dir, 'imagesTr', `${c}_0000.nii.gz`),
      writeNifti(crop(img, box), { gzip: true }),
    );
    writeFileSync(join(dir, 'labelsTr', `${c}.nii.gz`), writeNifti(crop(seg, box), { gzip: true }));
  }
  const dj = JSON.parse(readFileSync(join(RAW, 'dataset.json'), 'utf8'));
  writeFileSync(join(dir, 'dataset.json'), JSON.stringify({ ...dj, numTraining: cases.length }));
  return dir;
}

/** A site that also measures its own random initialisation before the first global arrives. */
class ProbedSite extends TrainerSite {
  randomDice?: number;
  probe = true;
  override async loadShared(shared: NamedWeights): Promise<void> {
    if (this.probe && this.randomDice === undefined) this.randomDice = await this.validationDice();
    return super.loadShared(shared);
  }
}

/** The checkpoint's mean foreground Dice on a site's case, through the inference path. */
async function checkpointDice(siteDir: string, c: string): Promise<number> {
  const m = await readNnUNetModel(fsSource(MODEL), { folds: [0] });
  const net = new PlainConvUNet(m.arch);
  net.loadNamedWeights(m.folds[0].weights);
  try {
    const { patch } = configurationInfo(m.plans, m.configuration);
    const r = await predictCase(
      [readNifti(new Uint8Array(readFileSync(join(siteDir, 'imagesTr', `${c}_0000.nii.gz`))))],
      { plans: m.plans, configuration: m.configuration, datasetJson: m.datasetJson },
      tfjsTilePredictor(net, patch),
    );
    const ref = readNifti(new Uint8Array(readFileSync(join(siteDir, 'labelsTr', `${c}.nii.gz`))));
    const metrics = computeCaseMetrics(
      Int16Array.from(ref.data as ArrayLike<number>),
      r.segmentation.data as Uint8Array,
      [1, 2],
    );
    return (metrics['1'].Dice + metrics['2'].Dice) / 2;
  } finally {
    net.dispose();
  }
}

async function federation(method: FederationConfig['method'], withInit: boolean, evaluate = true) {
  const config: FederationConfig = {
    method,
    configuration: '3d_fullres',
    rounds: 1,
    itersPerRound: 1,
    minSites: 2,
    roundDeadlineMs: 3600_000,
    weighting: 'uniform',
    encoding: 'fp32',
  };
  const init = withInit ? await loadInitModel(MODEL, config) : undefined;
  if (init) config.initModel = init.info;
  const logs: string[] = [];
  const sites: ProbedSite[] = [];
  const dirs: string[] = [];
  for (const [i, cases] of SITES.entries()) {
    dirs.push(siteFolder(`${method}-${withInit}-${i}`, cases));
    const store = await rawFolderStore(fsSource(dirs[i]));
    sites.push(
      new ProbedSite({
        pipeline: new SitePipeline(store),
        seed: SEED,
        // Ignored over the checkpoint's plans (FFE); AsymFedAvg's own plans get the small network.
        tiny: true,
        valIters: 1,
        augmentation: false,
        evaluate,
        log: (l) => {
          logs.push(l);
          if (process.env.FEDNNUNET_TEST_LOG) console.log(`${new Date().toISOString()} ${l}`);
        },
      }),
    );
  }
  for (const x of sites) x.probe = evaluate;
  const dataDir = mkdtempSync(join(tmp, 'relay-'));
  const relay = await startRelay({
    dataDir,
    config: { ...config, expectedSites: 2, token: 't' },
    aggregateFingerprints: mergeSiteFingerprints,
    initialWeights: init?.weights,
    log: (l) => logs.push(`[relay] ${l}`),
  });
  try {
    const runs = [];
    for (const [i, trainer] of sites.entries()) {
      runs.push(
        new SiteClient({
          connect: wsConnect(relay.wsUrl, WebSocket as never),
          token: 't',
          siteName: `site${i + 1}`,
          trainer,
        }).run(),
      );
      while (relay.coordinator.roster().length <= i) await new Promise((r) => setTimeout(r, 10));
    }
    const results = await Promise.all(runs);
    return { sites, logs, results, init, dirs };
  } finally {
    await relay.close();
  }
}

beforeAll(async () => {
  await useBackend('cpu');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('a federation started from an nnU-Net checkpoint', () => {
  it('FFE: round 1 starts at the checkpoint’s Dice on each site’s case, far above random', async () => {
    const { sites, logs, dirs } = await federation('ffe', true);
    for (const [i, s] of sites.entries()) {
      const [val] = s.trainer!.valIds;
      const ref = await checkpointDice(dirs[i], val);
      const start = s.rounds[0].diceBefore!;
      console.log(
        `${val}: Dice at round 1 (checkpoint) ${start.toFixed(4)}, checkpoint by predictCase ${ref.toFixed(4)}, random init ${s.randomDice!.toFixed(4)}, after 1 round ${s.finalDice!.toFixed(4)}`,
      );
      expect(ref).toBeGreaterThan(0.5); // the checkpoint segments this case
      expect(Math.abs(start - ref)).toBeLessThan(0.03);
      expect(start).toBeGreaterThan(s.randomDice! + 0.4);
      // The site trains the checkpoint's network, not the tiny/own one.
      expect(s.trainer!.config.patch_size).toEqual(
        JSON.parse(readFileSync(join(MODEL, 'plans.json'), 'utf8')).configurations['3d_fullres']
          .patch_size,
      );
    }
    expect(sites.map((s) => s.trainer!.valIds[0]).sort()).toEqual(['mrA_000', 'mrA_004']);
    expect(logs.join('\n')).toMatch(
      /pooled \(FFE\) plan (would differ from|matches) the initial model's/,
    );
    expect(logs.join('\n')).toMatch(
      /initial global model: nnUNetTrainer__nnUNetPlans__3d_fullres fold 0/,
    );
  }, 600_000);

  it('AsymFedAvg: shares exactly the tensors whose name and shape match the checkpoint (and every site)', async () => {
    const { results, init, sites } = await federation('asym', true, false);
    const ck = init!.weights;
    // The intersection of both sites' networks and the checkpoint's, by name and shape.
    const [a, b] = await Promise.all(sites.map((x) => x.weights()));
    const expected = [...a]
      .filter(([n, t]) => [b, ck].every((w) => w.get(n)?.shape.join() === t.shape.join()))
      .map(([n]) => n)
      .sort();
    for (const r of results) expect(r.shared.map((t) => t.name).sort()).toEqual(expected);
    // Both sites planned their own networks; some tensors match the checkpoint's.
    expect(results[0].shared.length).toBeGreaterThan(0);
    expect(init!.info.plans).toBeUndefined();
  }, 600_000);

  it('a checkpoint with other labels is refused by the site, in words', () => {
    expect(() =>
      checkInitModel(
        {
          method: 'ffe',
          configuration: '3d_fullres',
          rounds: 1,
          itersPerRound: 1,
          minSites: 1,
          roundDeadlineMs: 1,
          weighting: 'uniform',
          encoding: 'fp32',
          initModel: { name: 'x', labels: { background: 0, liver: 1 } },
        },
        { labels: { background: 0, organ: 1, lesion: 2 } },
        undefined,
        () => undefined,
      ),
    ).toThrow(/labels .* are not the initial model's \(x:/);
  });
});
