import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readModelFolder } from '../../src/node/model-folder-fs.ts';
import { decodeCheckpoint } from '../../src/train/train-checkpoint.ts';
import { REFERENCE } from '../paths.ts';

const bin = 'bin/fednnunet.js';
const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-train-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const DS = join(REFERENCE, 'raw', 'Dataset801_PhantomMR');

describe('fednnunet train', () => {
  it('--tiny on Dataset801 (fingerprint + plan + preprocess + 1 epoch × 2 iterations) writes the model folder', async () => {
    const out = join(tmp, 'model');
    const stdout = execFileSync(
      process.execPath,
      [
        bin,
        'train',
        DS,
        '--tiny',
        '--tiny-patch',
        '16',
        '--epochs',
        '1',
        '--iters',
        '2',
        '--val-iters',
        '1',
        '--seed',
        '1',
        '-o',
        out,
      ],
      { encoding: 'utf8' },
    );
    expect(stdout).toMatch(/3d_fullres \(tiny\): patch 16x16x16, batch 2/);
    expect(stdout).toMatch(/epoch 0: lr 1\.000e-2/);
    for (const f of [
      'model.json',
      'plans.json',
      'dataset.json',
      'dataset_fingerprint.json',
      'weights.bin',
      'weights.json',
      'training_log.json',
      'checkpoint_final.ckpt',
      'checkpoint_best.ckpt',
    ]) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }
    const plans = JSON.parse(readFileSync(join(out, 'plans.json'), 'utf8'));
    expect(plans.configurations['3d_fullres'].tiny_preset.description).toMatch(/fednnunet --tiny/);
    const md = await readModelFolder(out);
    expect(md.meta).toMatchObject({
      format: 'fednnunet-model',
      version: 1,
      configuration: '3d_fullres',
      num_input_channels: 1,
      num_segmentation_heads: 3,
    });
    expect(md.meta.architecture!.arch_kwargs).toEqual(
      plans.configurations['3d_fullres'].architecture.arch_kwargs,
    );
    expect(md.provenance).toMatchObject({
      trained_by: 'fednnunet train',
      method: 'local',
      sites: 1,
      epochs: 1,
      iterations: 2,
    });
    const w = md.weights;
    expect(w.get('encoder.stages.0.0.convs.0.conv.weight')!.shape).toEqual([8, 1, 3, 3, 3]);
    const ck = decodeCheckpoint(new Uint8Array(readFileSync(join(out, 'checkpoint_final.ckpt'))));
    expect(ck.epoch).toBe(1);
    expect([...ck.weights.get('decoder.seg_layers.1.bias')!.data]).toEqual([
      ...w.get('decoder.seg_layers.1.bias')!.data,
    ]);
    const log = JSON.parse(readFileSync(join(out, 'training_log.json'), 'utf8'));
    expect(log.train_losses).toHaveLength(1);
    expect(log.split.train).toHaveLength(4);
  }, 240_000);

  it('--backend webgpu in Node without a Vulkan adapter: a clear error naming what to install, exit 1; bad usage exits 2', () => {
    const r = spawnSync(
      process.execPath,
      [
        bin,
        'train',
        DS,
        '--epochs',
        '1',
        '--iters',
        '1',
        '--backend',
        'webgpu',
        '-o',
        join(tmp, 'x'),
      ],
      // An ICD file that does not exist: Dawn's Vulkan loader finds no driver, on any machine.
      { encoding: 'utf8', env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json' } },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/found no Vulkan adapter/);
    expect(r.stderr).toMatch(/VK_ICD_FILENAMES=/);
    const u = spawnSync(process.execPath, [bin, 'train', DS, '-o', join(tmp, 'x')], {
      encoding: 'utf8',
    });
    expect(u.status).toBe(2);
  }, 240_000);

  it('--precision: fp32 or mixed, and mixed needs --backend webgpu (exit 2 with the reason)', () => {
    const run = (...extra: string[]) =>
      spawnSync(
        process.execPath,
        [bin, 'train', DS, '--epochs', '1', '--iters', '1', '-o', join(tmp, 'p'), ...extra],
        { encoding: 'utf8' },
      );
    const bad = run('--precision', 'fp8');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--precision must be fp32 or mixed/);
    const cpu = run('--precision', 'mixed');
    expect(cpu.status).toBe(2);
    expect(cpu.stderr).toMatch(/--precision mixed needs --backend webgpu/);
  }, 120_000);
});
