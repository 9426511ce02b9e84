// `fednnunet predict --model <nnU-Net results folder>`: layout detection, `--folds 0 1`, the fold
// ensemble on tfjs-cpu and onnxruntime-node, and the error paths. Parity with nnU-Net's own
// predictions of whole cases: nnunet-parity.test.ts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readNifti } from '../../src/io/nifti.ts';
import { writeNifti } from '../../src/io/nifti-write.ts';
import { NNUNET_MODEL as MODEL, smallNnUNetCase } from '../nnunet-helpers.ts';

const bin = 'bin/fednnunet.js';
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-predict-nnunet-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function smallInput(): string {
  const p = join(tmp, 'small_0000.nii.gz');
  writeFileSync(p, writeNifti(smallNnUNetCase(), { gzip: true }));
  return p;
}

describe('fednnunet predict with an nnU-Net results folder', () => {
  const input = smallInput();
  const outs: Record<string, Uint8Array> = {};
  /** `fednnunet predict --model <model> -i <the small input> -o <out> ...more`. */
  const predict = (model: string, out: string, ...more: string[]) =>
    cli('predict', '--model', model, '-i', input, '-o', out, ...more);

  it('predicts with one fold and with the ensemble of folds 0 1 (nnU-Net argument style)', () => {
    for (const [tag, folds] of [
      ['f0', ['0']],
      ['f01', ['0', '1']],
    ] as const) {
      const out = join(tmp, `${tag}.nii.gz`);
      const r = predict(MODEL, out, '--folds', ...folds);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`folds ${folds.join(' ')}`);
      const seg = readNifti(new Uint8Array(readFileSync(out)));
      expect(seg.dims).toEqual([28, 28, 20]);
      outs[tag] = seg.data as Uint8Array;
    }
    // some foreground is found, and the ensemble is a prediction of its own
    expect(outs.f01.some((v) => v > 0)).toBe(true);
    expect(outs.f0).not.toEqual(outs.f01);
    // onnxruntime-node: the same ensemble as tfjs-cpu; and with mirroring over the checkpoint's axes
    const ort = join(tmp, 'f01-ort.nii.gz');
    let r = predict(MODEL, ort, '--folds', '0', '1', '--backend', 'ort-node');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const o = readNifti(new Uint8Array(readFileSync(ort))).data as Uint8Array;
    let same = 0;
    for (let i = 0; i < o.length; i++) if (o[i] === outs.f01[i]) same++;
    expect(same / o.length).toBeGreaterThanOrEqual(0.999);
    r = predict(MODEL, ort, '--folds', '0', '1', '--tta', '--backend', 'ort-node');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('+tta (axes 0 1 2), ort-node');
  }, 400_000);

  it('import-nnunet → export-nnunet zip → predict --model <zip> --checkpoint: the same labels as fold 0', () => {
    let r = cli('import-nnunet', MODEL, '-o', join(tmp, 'imported'), '--folds', '0');
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/fold 0: .* checkpoint_final.pth → /);
    const zip = join(tmp, 'Dataset801_export.zip');
    r = cli('export-nnunet', '--model', join(tmp, 'imported'), '-o', zip);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('Dataset801_PhantomMR/nnUNetTrainer__nnUNetPlans__3d_fullres/');
    const out = join(tmp, 'fromzip.nii.gz');
    r = predict(zip, out, '--checkpoint', 'checkpoint_final.pth');
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('folds 0 (checkpoint_final.pth)');
    expect(outs.f0).toBeDefined();
    expect(readNifti(new Uint8Array(readFileSync(out))).data).toEqual(outs.f0);
    r = predict(zip, out, '--checkpoint', 'checkpoint_best.pth');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/no fold_K\/checkpoint_best.pth beside plans.json/);
  }, 180_000);

  it('reports a missing fold, an unknown backend and --folds on a non-nnU-Net folder', () => {
    let r = predict(MODEL, join(tmp, 'x.nii.gz'), '--folds', '3');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/fold 3 has no checkpoint_final.pth \(available: 0, 1\)/);
    r = predict(MODEL, join(tmp, 'x.nii.gz'), '--backend', 'webgl');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--backend must be one of tfjs-cpu, ort-node, ort-wasm/);
    r = predict(tmp, join(tmp, 'x.nii.gz'), '--folds', '0');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--folds applies to nnU-Net results folders/);
  }, 180_000);
});
