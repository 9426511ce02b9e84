// DefaultPreprocessor.run_case on in-memory volumes (spec §5): transpose, crop to nonzero, normalise,
// resample to the configuration spacing, sample foreground locations for oversampling.
import { nnunetView, type Volume } from '../io/volume.ts';
import { mulberry32 } from '../util/rng.ts';
import { cropToNonzero, type BBox, type Shape3 } from './crop.ts';
import { normalize, type IntensityProperties } from './normalize.ts';
import { computeNewShape, resampleData, resampleSeg } from './resample.ts';
import { labelSets } from '../model/labels.ts';

/** The fields of nnUNetPlans.json that preprocessing reads (the full Plans type lives in src/plan/). */
export interface PreprocessPlans {
  transpose_forward: number[];
  foreground_intensity_properties_per_channel: Record<string, IntensityProperties>;
  configurations: Record<string, PreprocessConfiguration>;
}

interface ResamplingKwargs {
  order?: number;
  order_z?: number;
  force_separate_z?: boolean | null;
}

export interface PreprocessConfiguration {
  inherits_from?: string;
  spacing?: number[];
  normalization_schemes?: string[];
  use_mask_for_norm?: boolean[];
  resampling_fn_data_kwargs?: ResamplingKwargs;
  resampling_fn_seg_kwargs?: ResamplingKwargs;
}

/** The dataset.json fields used here: label names -> value (or list of values for a region). */
export interface PreprocessDatasetJson {
  labels: Record<string, number | number[]>;
}

export interface CaseProperties {
  /** Reader spacing before transposition, numpy (z, y, x) order. */
  spacing: number[];
  shape_before_cropping: number[];
  bbox_used_for_cropping: BBox;
  shape_after_cropping_and_before_resampling: number[];
  /**
   * Oversampling locations per class (key: label, or "(a, b)" for a region): rows of
   * (0, z, y, x) flattened, 4 ints per location, as nnU-Net's (k, 4) arrays. Absent class: empty.
   */
  class_locations?: Record<string, Int32Array>;
}

export interface PreprocessedCase {
  /** float32 (C, Z, Y, X) at the configuration spacing. */
  data: Float32Array;
  /** (1, Z, Y, X): -1 outside the nonzero mask, int16 only if a label exceeds 127 (as nnU-Net). */
  seg: Int8Array | Int16Array;
  shape: [number, number, number, number];
  properties: CaseProperties;
}

/** Resolves `inherits_from` (e.g. 3d_cascade_fullres -> 3d_fullres). */
export function resolveConfiguration(
  plans: PreprocessPlans,
  name: string,
): Required<
  Pick<PreprocessConfiguration, 'spacing' | 'normalization_schemes' | 'use_mask_for_norm'>
> &
  PreprocessConfiguration {
  const own = plans.configurations[name];
  if (!own)
    throw new Error(
      `plans have no configuration '${name}' (have: ${Object.keys(plans.configurations).join(', ')})`,
    );
  const merged = own.inherits_from
    ? { ...resolveConfiguration(plans, own.inherits_from), ...own }
    : own;
  if (!merged.spacing || !merged.normalization_schemes || !merged.use_mask_for_norm) {
    throw new Error(
      `configuration '${name}' lacks spacing / normalization_schemes / use_mask_for_norm`,
    );
  }
  return merged as ReturnType<typeof resolveConfiguration>;
}

/** The classes whose voxel locations preprocessing samples: foreground labels or regions, plus the ignore key. */
export function foregroundClasses(dj: PreprocessDatasetJson): (number | number[])[] {
  const { foreground, all, ignoreLabel } = labelSets(dj);
  // nnU-Net collects [-1, ...all labels] for the ignore label (its class_locations key).
  return ignoreLabel === undefined ? foreground : [...foreground, [-1, ...all]];
}

function classKey(c: number | number[]): string {
  return Array.isArray(c) ? `(${c.join(', ')}${c.length === 1 ? ',' : ''})` : String(c);
}

/** k distinct integers from [0, n), ascending (sparse Fisher–Yates on a seeded RNG). */
export function sampleWithoutReplacement(n: number, k: number, rnd: () => number): Int32Array {
  const swapped = new Map<number, number>();
  const out = new Int32Array(k);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rnd() * (n - i));
    const vj = swapped.get(j) ?? j;
    swapped.set(j, swapped.get(i) ?? i);
    out[i] = vj;
  }
  return out.sort();
}

/**
 * Oversampling locations per class on the final seg: k = max(min(10000, n), ceil(0.01 n)) voxels
 * sampled without replacement (seeded; nnU-Net's RandomState stream is not reproduced).
 * Two passes over the seg and no per-voxel lists, so huge classes stay cheap.
 */
export function sampleClassLocations(
  seg: ArrayLike<number>,
  shape: Shape3,
  classes: (number | number[])[],
  seed = 1234,
): Record<string, Int32Array> {
  const rnd = mulberry32(seed);
  const out: Record<string, Int32Array> = {};
  const [, ny, nx] = shape;
  for (const c of classes) {
    const members = new Set(Array.isArray(c) ? c : [c]);
    let n = 0;
    for (let i = 0; i < seg.length; i++) if (seg[i] !== 0 && members.has(seg[i])) n++;
    if (n === 0) {
      out[classKey(c)] = new Int32Array(0);
      continue;
    }
    const k = Math.max(Math.min(10000, n), Math.ceil(0.01 * n));
    const picks = sampleWithoutReplacement(n, k, rnd);
    const locs = new Int32Array(4 * k);
    for (let i = 0, rank = 0, p = 0; i < seg.length && p < k; i++) {
      if (seg[i] === 0 || !members.has(seg[i])) continue;
      if (rank++ !== picks[p]) continue;
      const x = i % nx,
        y = Math.floor(i / nx) % ny,
        z = Math.floor(i / (nx * ny));
      locs.set([0, z, y, x], 4 * p++);
    }
    out[classKey(c)] = locs;
  }
  return out;
}

/** Permutes the spatial axes of a (C, Z, Y, X) array: out axis i = in axis perm[i]. */
export function transposeSpatial<T extends ArrayLike<number>>(
  src: T,
  channels: number,
  shape: Shape3,
  perm: number[],
  out: Float32Array | Int16Array,
): void {
  const st = [shape[1] * shape[2], shape[2], 1];
  const os: Shape3 = [shape[perm[0]], shape[perm[1]], shape[perm[2]]];
  const s0 = st[perm[0]],
    s1 = st[perm[1]],
    s2 = st[perm[2]];
  const n = shape[0] * shape[1] * shape[2];
  let o = 0;
  for (let c = 0; c < channels; c++)
    for (let i = 0; i < os[0]; i++)
      for (let j = 0; j < os[1]; j++)
        for (let k = 0; k < os[2]; k++) out[o++] = src[c * n + i * s0 + j * s1 + k * s2];
}

export interface RunCaseOptions {
  /** Seed for the class-location sampler. */
  seed?: number;
  /** Skip class locations (inference). Default: collected when a label is given. */
  classLocations?: boolean;
}

/**
 * run_case: image volume (channels stacked) + optional label volume → preprocessed arrays.
 * The label must share the image grid (same dims).
 */
export function runCase(
  image: Volume,
  label: Volume | null,
  plans: PreprocessPlans,
  configurationName: string,
  datasetJson: PreprocessDatasetJson,
  opts: RunCaseOptions = {},
): PreprocessedCase {
  const cfg = resolveConfiguration(plans, configurationName);
  const v = nnunetView(image);
  const C = v.shape[0];
  let shape: Shape3 = [v.shape[1], v.shape[2], v.shape[3]];
  if (label && label.dims.some((d, i) => d !== image.dims[i]))
    throw new Error(`label dims ${label.dims} differ from image dims ${image.dims}`);
  const tf = plans.transpose_forward;
  const originalSpacing = tf.map((i) => v.spacing[i]);
  let data: ArrayLike<number> = v.data;
  let seg: ArrayLike<number> | null = label ? label.data : null;
  if (tf.some((a, i) => a !== i)) {
    const t = new Float32Array(v.data.length);
    transposeSpatial(v.data, C, shape, tf, t);
    if (seg) {
      const s = new Int16Array(seg.length);
      transposeSpatial(seg, 1, shape, tf, s);
      seg = s;
    }
    data = t;
    shape = [shape[tf[0]], shape[tf[1]], shape[tf[2]]];
  }
  const crop = cropToNonzero(data, C, shape, seg);
  const target = cfg.spacing.length < 3 ? [originalSpacing[0], ...cfg.spacing] : cfg.spacing;
  const newShape = computeNewShape(crop.shape, originalSpacing, target) as Shape3;
  normalize(
    crop.data,
    C,
    crop.seg,
    cfg.normalization_schemes,
    cfg.use_mask_for_norm,
    plans.foreground_intensity_properties_per_channel,
  );
  const dk = cfg.resampling_fn_data_kwargs ?? {},
    sk = cfg.resampling_fn_seg_kwargs ?? {};
  const outData = resampleData(crop.data, C, crop.shape, newShape, originalSpacing, target, {
    order: (dk.order ?? 3) as 0 | 1 | 3,
    orderZ: (dk.order_z ?? 0) as 0 | 1,
    forceSeparateZ: dk.force_separate_z ?? null,
  });
  const outSeg16 = resampleSeg(crop.seg, crop.shape, newShape, originalSpacing, target, {
    order: (sk.order ?? 1) as 1,
    orderZ: (sk.order_z ?? 0) as 0,
    forceSeparateZ: sk.force_separate_z ?? null,
  });
  const properties: CaseProperties = {
    spacing: [...v.spacing],
    shape_before_cropping: [...shape],
    bbox_used_for_cropping: crop.bbox,
    shape_after_cropping_and_before_resampling: [...crop.shape],
  };
  if (label && opts.classLocations !== false) {
    properties.class_locations = sampleClassLocations(
      outSeg16,
      newShape,
      foregroundClasses(datasetJson),
      opts.seed ?? 1234,
    );
  }
  let mx = -Infinity;
  for (let i = 0; i < outSeg16.length; i++) if (outSeg16[i] > mx) mx = outSeg16[i];
  const outSeg = mx > 127 ? outSeg16 : Int8Array.from(outSeg16);
  return { data: outData, seg: outSeg, shape: [C, ...newShape], properties };
}
