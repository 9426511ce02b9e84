import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tinyConfiguration } from '../../src/train/tiny.ts';
import { paramSpecs, archFromPlan } from '../../src/model/arch.ts';
import { sharedSpec } from '../../src/fed/aggregate.ts';
import { REFERENCE } from '../paths.ts';

const plan = (id: string) =>
  JSON.parse(readFileSync(join(REFERENCE, 'plans', id, 'nnUNetPlans.json'), 'utf8')).configurations[
    '3d_fullres'
  ];

describe("tiny preset keeps the plan's kernel/stride pattern", () => {
  it('an anisotropic plan (804) keeps its in-plane first stage; an isotropic one (801) does not', () => {
    const aniso = tinyConfiguration(plan('Dataset804_PhantomMRsiteB'), { patch: 16 });
    expect(aniso.architecture.arch_kwargs.kernel_sizes).toEqual([
      [1, 3, 3],
      [3, 3, 3],
      [3, 3, 3],
    ]);
    expect(aniso.architecture.arch_kwargs.strides).toEqual([
      [1, 1, 1],
      [1, 2, 2],
      [2, 2, 2],
    ]);
    const iso = tinyConfiguration(plan('Dataset801_PhantomMR'), { patch: 16 });
    expect(iso.architecture.arch_kwargs.kernel_sizes).toEqual([
      [3, 3, 3],
      [3, 3, 3],
      [3, 3, 3],
    ]);
    expect(iso.architecture.arch_kwargs.strides).toEqual([
      [1, 1, 1],
      [2, 2, 2],
      [2, 2, 2],
    ]);
    // So AsymFedAvg between these sites shares everything but the tensors shaped by the first
    // stage's kernels and the second stage's stride (the transposed conv back up to stage 0).
    const specs = [iso, aniso].map((c) =>
      paramSpecs(archFromPlan(c, 1, 3)).map((p) => ({ name: p.name, shape: p.shape })),
    );
    const shared = new Set(sharedSpec(specs).map((e) => e.name));
    const local = specs[0].filter((e) => !shared.has(e.name)).map((e) => e.name);
    expect(local.sort()).toEqual([
      'decoder.stages.1.convs.0.conv.weight',
      'decoder.stages.1.convs.1.conv.weight',
      'decoder.transpconvs.1.weight',
      'encoder.stages.0.0.convs.0.conv.weight',
      'encoder.stages.0.0.convs.1.conv.weight',
    ]);
  });
});
