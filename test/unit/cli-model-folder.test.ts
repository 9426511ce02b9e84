// The model folder across the CLI: `fednnunet train -o M` → `predict --model M` → `evaluate
// --model M`, and `simulate -o` → `predict`, on small synthetic phantom datasets (`demo-data`).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNifti } from '../../src/io/nifti.ts';
import { readModelFolder } from '../../src/node/model-folder-fs.ts';

const bin = 'bin/fednnunet.js';
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
const ok = (r: ReturnType<typeof cli>) => {
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}\n${r.stdout}`);
  return r.stdout;
};
const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-model-folder-cli-'));
const load = (p: string) => readNifti(new Uint8Array(readFileSync(p)), p);
const CASES = 4;
let rawA = '';
let rawB = '';
// Case ids of a raw folder, from its label files.
const caseId = (raw: string, i: number) => {
  const labels = readdirSync(join(raw, 'labelsTr')).sort();
  return labels[i].replace(/\.nii\.gz$/, '');
};

beforeAll(() => {
  ok(cli('demo-data', '-o', join(tmp, 'raw'), '--sites', '2', '--cases', String(CASES)));
  [rawA, rawB] = readdirSync(join(tmp, 'raw'))
    .sort()
    .map((d) => join(tmp, 'raw', d));
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('model folder across the CLI', () => {
  it('train --tiny -o M → predict --model M → evaluate --model M', async () => {
    const M = join(tmp, 'M');
    ok(
      cli(
        'train',
        rawA,
        '--tiny',
        '--tiny-patch',
        '16',
        '--epochs',
        '2',
        '--iters',
        '5',
        '--val-iters',
        '1',
        '-o',
        M,
      ),
    );
    const md = await readModelFolder(M);
    expect(md.provenance).toMatchObject({
      trained_by: 'fednnunet train',
      method: 'local',
      sites: 1,
      epochs: 2,
      iterations: 10,
    });
    expect(md.meta.inference_allowed_mirroring_axes).toEqual([0, 1, 2]);

    const pred = join(tmp, 'pred');
    const ref = join(tmp, 'ref');
    mkdirSync(pred);
    mkdirSync(ref);
    for (const i of [0]) {
      const id = caseId(rawA, i);
      const input = join(rawA, 'imagesTr', `${id}_0000.nii.gz`);
      const out = join(pred, `${id}.nii.gz`);
      const stdout = ok(cli('predict', '--model', M, '-i', input, '-o', out));
      expect(stdout).toMatch(/tfjs-cpu: preprocess/);
      const inp = load(input);
      const seg = load(out);
      expect(seg.dims).toEqual(inp.dims);
      expect(seg.affine).toEqual(inp.affine);
      for (const v of seg.data) expect([0, 1, 2]).toContain(v);
      copyFileSync(join(rawA, 'labelsTr', `${id}.nii.gz`), join(ref, `${id}.nii.gz`));
    }
    const summaryPath = join(tmp, 'summary.json');
    // Labels come from the model folder's dataset.json (foreground 1, 2).
    const stdout = ok(
      cli('evaluate', '--pred', pred, '--ref', ref, '--model', M, '-o', summaryPath),
    );
    console.log(stdout.trim());
    const summary = JSON.parse(readFileSync(summaryPath, 'utf8').replace(/\bNaN\b/g, 'null'));
    expect(Object.keys(summary.mean)).toEqual(['1', '2']);
    expect(summary.metric_per_case).toHaveLength(1);
  }, 900_000);

  it('simulate -o writes one model folder per site, each of which predict reads', async () => {
    const S = join(tmp, 'S');
    ok(
      cli(
        'simulate',
        '--sites',
        rawA,
        rawB,
        '--method',
        'asym',
        '--rounds',
        '1',
        '--iters',
        '1',
        '--val-iters',
        '0',
        '--tiny',
        '--tiny-patch',
        '16',
        '--encoding',
        'fp32',
        '-o',
        S,
      ),
    );
    for (const [site, raw] of [
      ['site1', rawA],
      ['site2', rawB],
    ] as const) {
      const md = await readModelFolder(join(S, site));
      expect(md.provenance).toMatchObject({
        trained_by: 'fednnunet simulate',
        method: 'asym',
        sites: 2,
        site,
        rounds: 1,
        iterations: 1,
      });
      const input = join(raw, 'imagesTr', `${caseId(raw, 0)}_0000.nii.gz`);
      const out = join(tmp, `${site}.nii.gz`);
      // onnxruntime: the faster engine on a CPU (tfjs-cpu predicts the same folder in the test above).
      ok(
        cli(
          'predict',
          '--model',
          join(S, site),
          '-i',
          input,
          '-o',
          out,
          '--backend',
          'ort-node',
          '--step-size',
          '1',
        ),
      );
      expect(load(out).dims).toEqual(load(input).dims);
    }
  }, 900_000);

  it('predict refuses a folder that is not a model folder, in one line', () => {
    const r = cli(
      'predict',
      '--model',
      join(tmp, 'raw'),
      '-i',
      'x.nii.gz',
      '-o',
      join(tmp, 'x.nii.gz'),
    );
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^fednnunet predict: .*not a model folder \(no model.json\)$/);
  });
});
