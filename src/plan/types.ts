// nnU-Net v2's dataset.json (the keys the planner reads) and nnUNetPlans.json, typed after the
// reference files in test/reference/plans. Key order in the objects the planner builds
// follows nnU-Net's, so JSON.stringify gives the same layout.
import type { ChannelIntensityProperties } from '../fingerprint/types.ts';

// dataset.json is the raw-dataset format's type (src/io); re-exported for planner users.
export type { DatasetJson } from '../io/raw-dataset.ts';

export interface ResamplingKwargs {
  is_seg: boolean;
  order: number;
  order_z: number;
  force_separate_z: boolean | null;
}

export interface ArchKwargs {
  n_stages: number;
  features_per_stage: number[];
  conv_op: string;
  kernel_sizes: number[][];
  strides: number[][];
  n_conv_per_stage: number[];
  n_conv_per_stage_decoder: number[];
  conv_bias: boolean;
  norm_op: string;
  norm_op_kwargs: { eps: number; affine: boolean };
  dropout_op: string | null;
  dropout_op_kwargs: Record<string, unknown> | null;
  nonlin: string;
  nonlin_kwargs: { inplace: boolean };
}

export interface Architecture {
  network_class_name: string;
  arch_kwargs: ArchKwargs;
  _kw_requires_import: string[];
}

/** What the browser memory budget changed in one configuration (not an nnU-Net key). */
export interface BrowserBudgetRecord {
  memoryBudgetMB: number;
  bytesPerFeatureElement: number;
  /** Feature-map elements (one batch) the budget allows: the loop's reference value × ref batch. */
  budgetElements: number;
  changed: {
    field: 'patch_size' | 'n_stages' | 'features_per_stage' | 'batch_size';
    from: unknown;
    to: unknown;
  }[];
  reason: string;
}

export interface ConfigurationPlan {
  data_identifier: string;
  preprocessor_name: string;
  batch_size: number;
  patch_size: number[];
  median_image_size_in_voxels: number[];
  spacing: number[];
  normalization_schemes: string[];
  use_mask_for_norm: boolean[];
  resampling_fn_data: string;
  resampling_fn_seg: string;
  resampling_fn_data_kwargs: ResamplingKwargs;
  resampling_fn_seg_kwargs: ResamplingKwargs;
  resampling_fn_probabilities: string;
  resampling_fn_probabilities_kwargs: ResamplingKwargs;
  architecture: Architecture;
  batch_dice: boolean;
  next_stage?: string;
  browser_budget?: BrowserBudgetRecord;
}

/** 3d_cascade_fullres only points at its parents. */
export interface CascadeConfiguration {
  inherits_from: string;
  previous_stage: string;
}

export interface Plans {
  dataset_name: string;
  plans_name: string;
  original_median_spacing_after_transp: number[];
  original_median_shape_after_transp: number[];
  image_reader_writer: string;
  transpose_forward: number[];
  transpose_backward: number[];
  configurations: {
    '2d'?: ConfigurationPlan;
    '3d_lowres'?: ConfigurationPlan;
    '3d_fullres'?: ConfigurationPlan;
    '3d_cascade_fullres'?: CascadeConfiguration;
  };
  experiment_planner_used: string;
  label_manager: string;
  foreground_intensity_properties_per_channel: Record<string, ChannelIntensityProperties>;
}
