// nnU-Net v2's default ExperimentPlanner (plans name nnUNetPlans), spec §4: target spacing,
// transpose, and the 2d / 3d_fullres / 3d_lowres (+ cascade) configurations, each sized by the
// VRAM-estimate loop. Pure: the caller supplies the fingerprint and dataset.json.
import type { DatasetFingerprint } from '../fingerprint/types.ts';
import { BYTES_PER_FEATURE_ELEMENT, budgetElements } from './budget.ts';
import { channelNames, imageReaderWriter, normalizationSchemes } from './normalization.ts';
import {
  argmaxFirst,
  argmaxLastTie,
  column,
  computeNewShape,
  medianAxis0,
  percentile,
  percentileAxis0,
  prod,
  roundHalfEven,
} from '../util/numeric.ts';
import { getPoolAndConvProps, type Topology } from './topology.ts';
import type {
  BrowserBudgetRecord,
  ConfigurationPlan,
  DatasetJson,
  Plans,
  ResamplingKwargs,
} from './types.ts';
import { estimateFeatureMapSize } from './vram.ts';

export const ANISO_THRESHOLD = 3;
const BASE_FEATURES = 32;
const MAX_FEATURES_2D = 512;
const MAX_FEATURES_3D = 320;
const FEATUREMAP_MIN_EDGE = 4;
const MAX_NUMPOOL = 999999;
const BLOCKS_PER_STAGE_ENCODER = 2;
const BLOCKS_PER_STAGE_DECODER = 2;
const MIN_BATCH_SIZE = 2;
const MAX_DATASET_COVERED = 0.05;
const REFERENCE_VAL_3D = 560000000;
const REFERENCE_VAL_2D = 85000000;
const REFERENCE_VAL_GB = 8;
const REFERENCE_BS_2D = 12;
const REFERENCE_BS_3D = 2;
const LOWRES_CREATION_THRESHOLD = 0.25;
const LOWRES_SPACING_INCREASE = 1.03;

/** One static_estimate_VRAM_usage call, in the layout of reference/planner_trace. */
export interface EstimateCall {
  patch_size: number[];
  n_stages: number;
  strides: number[][];
  kernel_sizes: number[][];
  features_per_stage: number[];
  input_channels: number;
  output_channels: number;
  estimate: number;
}

export interface PlannerOptions {
  /** nnU-Net's dataset folder name, e.g. Dataset801_PhantomMR. */
  datasetName: string;
  plansName?: string;
  gpuMemoryTargetGB?: number;
  preprocessorName?: string;
  /** Defaults to dataset.json's overwrite_image_reader_writer, else by file ending. */
  imageReaderWriter?: string;
  overwriteTargetSpacing?: number[];
  suppressTranspose?: boolean;
  /** Browser memory budget; when set, configurations carry a browser_budget record. */
  memoryBudgetMB?: number;
  bytesPerFeatureElement?: number;
  /** Receives every estimate computed (cache misses only), in call order, like planner_trace. */
  estimateLog?: EstimateCall[];
}

const DATA_KWARGS: ResamplingKwargs = {
  is_seg: false,
  order: 3,
  order_z: 0,
  force_separate_z: null,
};
const SEG_KWARGS: ResamplingKwargs = { is_seg: true, order: 1, order_z: 0, force_separate_z: null };
const PROB_KWARGS: ResamplingKwargs = {
  is_seg: false,
  order: 1,
  order_z: 0,
  force_separate_z: null,
};

/** determine_fullres_target_spacing: per-axis median, with the 10th-percentile rule for one coarse axis. */
export function fullresTargetSpacing(fp: DatasetFingerprint, overwrite?: number[]): number[] {
  if (overwrite) return [...overwrite];
  // nnU-Net uses np.percentile(…, 50) here (not np.median); the two can differ in the last bit.
  const target = percentileAxis0(fp.spacings, 50);
  const targetSize = percentileAxis0(fp.shapes_after_crop, 50);
  const worst = argmaxFirst(target);
  const others = target.map((_, i) => i).filter((i) => i !== worst);
  const maxOtherSpacing = Math.max(...others.map((i) => target[i]));
  const minOtherSize = Math.min(...others.map((i) => targetSize[i]));
  const anisoSpacing = target[worst] > ANISO_THRESHOLD * maxOtherSpacing;
  const anisoVoxels = targetSize[worst] * ANISO_THRESHOLD < minOtherSize;
  if (anisoSpacing && anisoVoxels) {
    let t = percentile(column(fp.spacings, worst), 10);
    // Never coarser resolution than the other axes get: clamp just above them.
    if (t < maxOtherSpacing) t = Math.max(maxOtherSpacing, t) + 1e-5;
    target[worst] = t;
  }
  return target;
}

/** determine_transpose: the coarsest axis first, the others in order. */
export function transposeFor(
  targetSpacing: readonly number[],
  suppress = false,
): { forward: number[]; backward: number[] } {
  if (suppress) return { forward: [0, 1, 2], backward: [0, 1, 2] };
  const worst = argmaxFirst(targetSpacing);
  const forward = [worst, ...[0, 1, 2].filter((i) => i !== worst)];
  const backward = [0, 1, 2].map((i) => forward.indexOf(i));
  return { forward, backward };
}

function featuresPerStage(nStages: number, maxFeatures: number): number[] {
  return Array.from({ length: nStages }, (_, i) => Math.min(maxFeatures, BASE_FEATURES * 2 ** i));
}

interface SearchResult {
  topology: Topology;
  features: number[];
  estimate: number;
  batchSize: number;
  /** The budget could not be met even at the smallest patch the loop reaches. */
  infeasible?: boolean;
}

class Planner {
  private readonly cache = new Map<string, number>();
  private readonly inputChannels: number;
  private readonly outputChannels: number;

  constructor(
    private readonly fp: DatasetFingerprint,
    private readonly dataset: DatasetJson,
    private readonly opts: PlannerOptions,
  ) {
    this.inputChannels = Object.keys(channelNames(dataset)).length;
    this.outputChannels = Object.keys(dataset.labels).length;
  }

  private estimate(
    topo: Topology,
    features: number[],
    cache: Map<string, number>,
    log: boolean,
  ): number {
    const key = JSON.stringify([topo.patchSize, topo.strides]);
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    const e = estimateFeatureMapSize(topo.patchSize, topo.strides, features, this.outputChannels);
    cache.set(key, e);
    if (log) {
      this.opts.estimateLog?.push({
        patch_size: [...topo.patchSize],
        n_stages: topo.strides.length,
        strides: topo.strides,
        kernel_sizes: topo.kernelSizes,
        features_per_stage: features,
        input_channels: this.inputChannels,
        output_channels: this.outputChannels,
        estimate: e,
      });
    }
    return e;
  }

  /**
   * The patch-size search of get_plans_for_configuration against a reference value (nnU-Net's,
   * or a smaller one derived from the browser budget), then the batch size.
   */
  private search(
    spacing: number[],
    medianShape: number[],
    approxNVoxels: number,
    reference: number,
    cache: Map<string, number>,
    log: boolean,
    budgetLimited: boolean,
  ): SearchResult {
    const dim = spacing.length;
    const maxFeatures = dim === 2 ? MAX_FEATURES_2D : MAX_FEATURES_3D;
    const refBs = dim === 2 ? REFERENCE_BS_2D : REFERENCE_BS_3D;

    // Initial patch: the spacing's aspect ratio at the volume of 256³ (3D) or 2048² (2D), clipped
    // to the median shape (which may be fractional; the topology pads it).
    const inv = spacing.map((s) => 1 / s);
    const scale =
      dim === 3 ? (256 ** 3 / prod(inv)) ** (1 / 3) : (2048 ** 2 / prod(inv)) ** (1 / 2);
    const initial = inv.map((a, i) => Math.min(roundHalfEven(a * scale), medianShape[i]));

    let topo = getPoolAndConvProps(spacing, initial, FEATUREMAP_MIN_EDGE, MAX_NUMPOOL);
    let features = featuresPerStage(topo.strides.length, maxFeatures);
    let estimate = this.estimate(topo, features, cache, log);
    let infeasible = false;

    while ((estimate / refBs) * 2 > reference) {
      // Shrink the axis that is largest relative to the median shape. Subtracting its current
      // divisor could skip valid sizes, so subtract the divisor of the already reduced patch.
      const ratios = topo.patchSize.map((p, i) => p / medianShape[i]);
      const axis = argmaxLastTie(ratios);
      const tmp = [...topo.patchSize];
      tmp[axis] -= topo.mustBeDivisibleBy[axis];
      const divisor = getPoolAndConvProps(spacing, tmp, FEATUREMAP_MIN_EDGE, MAX_NUMPOOL)
        .mustBeDivisibleBy[axis];
      const patch = [...topo.patchSize];
      patch[axis] -= divisor;
      if (patch[axis] < 1) {
        // Only reachable with a tiny browser budget; nnU-Net's 8 GB reference never gets here.
        infeasible = true;
        break;
      }
      topo = getPoolAndConvProps(spacing, patch, FEATUREMAP_MIN_EDGE, MAX_NUMPOOL);
      features = featuresPerStage(topo.strides.length, maxFeatures);
      estimate = this.estimate(topo, features, cache, log);
    }

    // Batch from the VRAM headroom (nnU-Net rounds; under a binding budget round down so it fits),
    // capped so one batch covers at most 5% of the dataset's voxels, at least 2.
    const vramBs = budgetLimited
      ? Math.floor((reference / estimate) * refBs)
      : roundHalfEven((reference / estimate) * refBs);
    const capBs = roundHalfEven((approxNVoxels * MAX_DATASET_COVERED) / prod(topo.patchSize));
    const batchSize = Math.max(Math.min(vramBs, capBs), MIN_BATCH_SIZE);
    return { topology: topo, features, estimate, batchSize, infeasible };
  }

  configuration(
    spacing: number[],
    medianShape: number[],
    dataIdentifier: string,
    approxNVoxels: number,
  ): ConfigurationPlan {
    const dim = spacing.length;
    if (!spacing.every((s) => s > 0)) throw new Error(`Spacing must be > 0! Spacing: ${spacing}`);
    const refBs = dim === 2 ? REFERENCE_BS_2D : REFERENCE_BS_3D;
    const gb = this.opts.gpuMemoryTargetGB ?? 8;
    const reference = (dim === 2 ? REFERENCE_VAL_2D : REFERENCE_VAL_3D) * (gb / REFERENCE_VAL_GB);

    let result: SearchResult;
    let budget: BrowserBudgetRecord | undefined;
    if (this.opts.memoryBudgetMB === undefined) {
      result = this.search(spacing, medianShape, approxNVoxels, reference, this.cache, true, false);
    } else {
      const bytes = this.opts.bytesPerFeatureElement ?? BYTES_PER_FEATURE_ELEMENT;
      const elements = budgetElements(this.opts.memoryBudgetMB, bytes);
      // The loop compares estimate·2/refBs with the reference, so a batch of elements E·refBs.
      const budgetReference = elements / refBs;
      const binding = budgetReference < reference;
      const nnunet = this.search(
        spacing,
        medianShape,
        approxNVoxels,
        reference,
        new Map(),
        false,
        false,
      );
      result = binding
        ? this.search(spacing, medianShape, approxNVoxels, budgetReference, this.cache, true, true)
        : nnunet;
      budget = budgetRecord(
        this.opts.memoryBudgetMB,
        bytes,
        elements,
        reference * refBs,
        gb,
        nnunet,
        result,
      );
    }

    const { schemes, useMask } = normalizationSchemes(
      this.dataset,
      this.fp.median_relative_size_after_cropping,
    );
    const topo = result.topology;
    const nStages = topo.strides.length;
    const conv = dim === 2 ? 'Conv2d' : 'Conv3d';
    const plan: ConfigurationPlan = {
      data_identifier: dataIdentifier,
      preprocessor_name: this.opts.preprocessorName ?? 'DefaultPreprocessor',
      batch_size: result.batchSize,
      patch_size: topo.patchSize,
      median_image_size_in_voxels: medianShape,
      spacing,
      normalization_schemes: schemes,
      use_mask_for_norm: useMask,
      resampling_fn_data: 'resample_data_or_seg_to_shape',
      resampling_fn_seg: 'resample_data_or_seg_to_shape',
      resampling_fn_data_kwargs: { ...DATA_KWARGS },
      resampling_fn_seg_kwargs: { ...SEG_KWARGS },
      resampling_fn_probabilities: 'resample_data_or_seg_to_shape',
      resampling_fn_probabilities_kwargs: { ...PROB_KWARGS },
      architecture: {
        network_class_name: 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
        arch_kwargs: {
          n_stages: nStages,
          features_per_stage: result.features,
          conv_op: `torch.nn.modules.conv.${conv}`,
          kernel_sizes: topo.kernelSizes,
          strides: topo.strides,
          n_conv_per_stage: new Array(nStages).fill(BLOCKS_PER_STAGE_ENCODER),
          n_conv_per_stage_decoder: new Array(nStages - 1).fill(BLOCKS_PER_STAGE_DECODER),
          conv_bias: true,
          norm_op: `torch.nn.modules.instancenorm.InstanceNorm${dim}d`,
          norm_op_kwargs: { eps: 1e-5, affine: true },
          dropout_op: null,
          dropout_op_kwargs: null,
          nonlin: 'torch.nn.LeakyReLU',
          nonlin_kwargs: { inplace: true },
        },
        _kw_requires_import: ['conv_op', 'norm_op', 'dropout_op', 'nonlin'],
      },
      batch_dice: false, // set by planExperiment, which knows whether a lowres stage exists
    };
    if (budget) plan.browser_budget = budget;
    return plan;
  }
}

function budgetRecord(
  mb: number,
  bytes: number,
  elements: number,
  nnunetElements: number,
  gb: number,
  nnunet: SearchResult,
  ours: SearchResult,
): BrowserBudgetRecord {
  const changed: BrowserBudgetRecord['changed'] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (!same(nnunet.topology.patchSize, ours.topology.patchSize))
    changed.push({
      field: 'patch_size',
      from: nnunet.topology.patchSize,
      to: ours.topology.patchSize,
    });
  if (nnunet.topology.strides.length !== ours.topology.strides.length)
    changed.push({
      field: 'n_stages',
      from: nnunet.topology.strides.length,
      to: ours.topology.strides.length,
    });
  if (!same(nnunet.features, ours.features))
    changed.push({ field: 'features_per_stage', from: nnunet.features, to: ours.features });
  if (nnunet.batchSize !== ours.batchSize)
    changed.push({ field: 'batch_size', from: nnunet.batchSize, to: ours.batchSize });
  const fmt = (x: number) => x.toExponential(3);
  let reason: string;
  if (elements >= nnunetElements) {
    reason = `budget not binding: ${mb} MB at ${bytes} B/element allows ${fmt(elements)} feature-map elements per batch, at least nnU-Net's ${gb} GB reference (${fmt(nnunetElements)}); plan is nnU-Net's`;
  } else if (ours.infeasible) {
    reason = `budget too small: ${mb} MB allows ${fmt(elements)} elements per batch, but the smallest patch the VRAM loop reaches needs ${fmt(ours.estimate * 2)} for batch 2`;
  } else if (changed.length === 0) {
    reason = `budget binding (${fmt(elements)} < ${fmt(nnunetElements)} elements per batch) but nnU-Net's plan already fits (estimate ${fmt(nnunet.estimate)} per sample)`;
  } else {
    reason = `${mb} MB at ${bytes} B/element allows ${fmt(elements)} feature-map elements per batch instead of nnU-Net's ${fmt(nnunetElements)} (${gb} GB): the VRAM loop shrank the patch until batch 2 fits (estimate ${fmt(nnunet.estimate)} -> ${fmt(ours.estimate)} per sample) and the batch size was taken from the budget`;
  }
  return {
    memoryBudgetMB: mb,
    bytesPerFeatureElement: bytes,
    budgetElements: elements,
    changed,
    reason,
  };
}

/** plan_experiment: the whole nnUNetPlans object for one dataset. */
export function planExperiment(
  fp: DatasetFingerprint,
  dataset: DatasetJson,
  opts: PlannerOptions,
): Plans {
  if (fp.spacings.length !== fp.shapes_after_crop.length || fp.spacings.length === 0)
    throw new Error(
      'fingerprint: spacings and shapes_after_crop must list the same, non-zero number of cases',
    );
  const planner = new Planner(fp, dataset, opts);
  const plansName = opts.plansName ?? 'nnUNetPlans';
  const id = (c: string) => `${plansName}_${c}`;

  const fullres = fullresTargetSpacing(fp, opts.overwriteTargetSpacing);
  const { forward, backward } = transposeFor(fullres, opts.suppressTranspose);
  const fullresT = forward.map((i) => fullres[i]);
  // Median shape after resampling to the target spacing: per case, then the per-axis median.
  const newShapes = fp.shapes_after_crop.map((shape, i) =>
    computeNewShape(shape, fp.spacings[i], fullres),
  );
  const newMedian = medianAxis0(newShapes);
  const newMedianT = forward.map((i) => newMedian[i]);
  const approxNVoxels = prod(newMedianT) * dataset.numTraining;

  let fullresPlan: ConfigurationPlan | undefined;
  let lowresPlan: ConfigurationPlan | undefined;
  if (newMedianT[0] !== 1) {
    fullresPlan = planner.configuration(fullresT, newMedianT, id('3d_fullres'), approxNVoxels);
    // A lowres stage when the fullres patch covers under a quarter of the median image: coarsen
    // the spacing by 3% steps (the anisotropic axes first) until the patch covers enough.
    let medianNumVoxels = prod(newMedianT);
    let patchVoxels = prod(fullresPlan.patch_size);
    const lowresSpacing = [...fullresT];
    while (patchVoxels / medianNumVoxels < LOWRES_CREATION_THRESHOLD) {
      const maxSpacing = Math.max(...lowresSpacing);
      const coarse = lowresSpacing.map((s) => maxSpacing / s > 2);
      const anyCoarse = coarse.some(Boolean);
      for (let i = 0; i < lowresSpacing.length; i++)
        if (!anyCoarse || coarse[i]) lowresSpacing[i] *= LOWRES_SPACING_INCREASE;
      const lowresShape = fullresT.map((f, i) => (f / lowresSpacing[i]) * newMedianT[i]);
      medianNumVoxels = prod(lowresShape);
      lowresPlan = planner.configuration(
        [...lowresSpacing],
        lowresShape.map(roundHalfEven),
        id('3d_lowres'),
        medianNumVoxels * dataset.numTraining,
      );
      patchVoxels = prod(lowresPlan.patch_size);
    }
    // Not worth a cascade if the lowres images are less than 2x smaller.
    if (prod(newMedianT) / medianNumVoxels < 2) lowresPlan = undefined;
    if (lowresPlan) {
      lowresPlan.batch_dice = false;
      fullresPlan.batch_dice = true;
    } else {
      fullresPlan.batch_dice = false;
    }
  }

  const plan2d = planner.configuration(
    fullresT.slice(1),
    newMedianT.slice(1),
    id('2d'),
    approxNVoxels,
  );
  plan2d.batch_dice = true;

  const medianSpacing = medianAxis0(fp.spacings);
  const medianShape = medianAxis0(fp.shapes_after_crop);
  const plans: Plans = {
    dataset_name: opts.datasetName,
    plans_name: plansName,
    original_median_spacing_after_transp: forward.map((i) => medianSpacing[i]),
    original_median_shape_after_transp: forward.map((i) => roundHalfEven(medianShape[i])),
    image_reader_writer: opts.imageReaderWriter ?? imageReaderWriter(dataset),
    transpose_forward: forward,
    transpose_backward: backward,
    configurations: { '2d': plan2d },
    experiment_planner_used: 'ExperimentPlanner',
    label_manager: 'LabelManager',
    foreground_intensity_properties_per_channel: structuredClone(
      fp.foreground_intensity_properties_per_channel,
    ),
  };
  if (lowresPlan) {
    if (fullresPlan) lowresPlan.next_stage = '3d_cascade_fullres';
    plans.configurations['3d_lowres'] = lowresPlan;
  }
  if (fullresPlan) {
    plans.configurations['3d_fullres'] = fullresPlan;
    if (lowresPlan)
      plans.configurations['3d_cascade_fullres'] = {
        inherits_from: '3d_fullres',
        previous_stage: '3d_lowres',
      };
  }
  return plans;
}
