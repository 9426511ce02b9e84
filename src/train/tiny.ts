// The `--tiny` preset: a small network and patch for quick runs on a CPU (tests, demos, the
// acceptance check), replacing only what sets the model's size. Not an nnU-Net configuration.
import type { ConfigurationPlan } from '../plan/types.ts';

/** What the preset changed, written into the configuration it returns (so plans.json documents it). */
export interface TinyPresetRecord {
  description: string;
  from: {
    patch_size: number[];
    batch_size: number;
    n_stages: number;
    features_per_stage: number[];
  };
}

export type TinyConfigurationPlan = ConfigurationPlan & { tiny_preset: TinyPresetRecord };

export interface TinyOptions {
  /** Patch edge on every axis (default 24); must be divisible by 4 (two stride-2 stages). */
  patch?: number;
  batchSize?: number;
}

/**
 * 3 stages with 8, 16, 32 features, 2 convs per stage, patch `patch` on every axis (24 by
 * default), batch 2. The kernels and strides of the plan's first three stages are kept (strides
 * capped at 2), so an anisotropic plan keeps its in-plane-only first stages: sites of different
 * spacing still get differently shaped tensors, which is what AsymFedAvg is about. Spacing,
 * normalisation, resampling and batch_dice stay the plan's. Pure: returns a modified deep copy.
 */
export function tinyConfiguration(
  config: ConfigurationPlan,
  opts: TinyOptions = {},
): TinyConfigurationPlan {
  const edge = opts.patch ?? 24;
  const batch = opts.batchSize ?? 2;
  if (!Number.isInteger(edge) || edge < 4 || edge % 4 !== 0)
    throw new Error(`tiny preset: patch ${edge} must be a positive multiple of 4`);
  if (!Number.isInteger(batch) || batch < 1)
    throw new Error(`tiny preset: batch ${batch} must be a positive integer`);
  const dims = config.patch_size.length;
  const out = structuredClone(config) as TinyConfigurationPlan;
  const k = out.architecture.arch_kwargs;
  const from = {
    patch_size: [...config.patch_size],
    batch_size: config.batch_size,
    n_stages: k.n_stages,
    features_per_stage: [...k.features_per_stage],
  };
  const axes = (v: number) => new Array<number>(dims).fill(v);
  out.patch_size = axes(edge);
  out.batch_size = batch;
  k.n_stages = 3;
  k.features_per_stage = [8, 16, 32];
  const planKernels = config.architecture.arch_kwargs.kernel_sizes;
  const planStrides = config.architecture.arch_kwargs.strides;
  k.kernel_sizes = [0, 1, 2].map((i) => [...(planKernels[i] ?? axes(3))]);
  k.strides = [
    axes(1),
    ...[1, 2].map((i) => (planStrides[i] ?? axes(2)).map((v) => Math.min(v, 2))),
  ];
  k.n_conv_per_stage = [2, 2, 2];
  k.n_conv_per_stage_decoder = [2, 2];
  out.tiny_preset = {
    description: `fednnunet --tiny: 3 stages (8, 16, 32 features), the plan's first kernels/strides (${JSON.stringify(k.kernel_sizes)} / ${JSON.stringify(k.strides)}), patch ${edge}^${dims}, batch ${batch}; spacing and preprocessing unchanged. Not nnU-Net's plan.`,
    from,
  };
  return out;
}
