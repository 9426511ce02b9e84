// nnUNetDataLoader's patch sampling (spec §7.5, nnU-Net v2.6 data_loader.py): cases uniform with
// replacement, the last samples of a batch forced to foreground, crop-and-pad with 0 / −1.
import { type Rng, type SegArray, randInt, newSegLike } from './util.ts';
import { prod, roundHalfEven } from '../util/numeric.ts';

/**
 * Key under which a case may store "annotated voxel" locations (nnU-Net's `(-1, *all_labels)` key,
 * present only with an ignore label). Other keys are the label (or region) value as a decimal string.
 */
export const ANNOTATED_KEY = 'annotated';

/** One preprocessed training case, held in memory in nnU-Net order. */
export interface TrainingCase {
  /** (C, Z, Y, X) float32, C-order. 2D configurations use the same 3D arrays and sample one slice. */
  data: Float32Array;
  /** (1, Z, Y, X) labels; −1 marks voxels outside the nonzero mask. */
  seg: SegArray;
  /** Spatial shape (Z, Y, X). */
  shape: readonly [number, number, number];
  /**
   * Foreground locations per class: **flat voxel indices** `z·Y·X + y·X + x` into the (Z, Y, X)
   * volume (nnU-Net stores rows (0, z, y, x); flat indices are 4–8× smaller and index the arrays
   * directly). An absent class has an empty list.
   */
  classLocations: Record<string, ArrayLike<number>>;
}

export interface SamplerOptions {
  batchSize: number;
  /** Configuration patch size, 2 (Y, X) or 3 (Z, Y, X) entries. */
  patchSize: readonly number[];
  /** Enlarged loader patch from `initialPatchSize` (validation: the patch size itself). */
  initialPatchSize: readonly number[];
  /** Default 0.33. */
  oversampleForegroundPercent?: number;
  /** The dataset has an ignore label: non-forced samples centre on annotated voxels. */
  hasIgnoreLabel?: boolean;
}

export interface PatchBatch {
  /** (B, C, ...loaderPatch) */
  data: Float32Array;
  /** (B, 1, ...loaderPatch) */
  seg: SegArray;
  batchSize: number;
  channels: number;
  /** Spatial shape of each patch: (Z, Y, X); (1, Y, X) for 2D configurations. */
  patchShape: [number, number, number];
  caseIndices: number[];
  forcedForeground: boolean[];
  /** Lower corner of each patch in its case's voxel grid (may be negative: padding). */
  starts: [number, number, number][];
}

/** Whether sample j of a batch is forced foreground: the last `bs − round(bs·(1−p))` samples. */
export function isForcedForeground(j: number, batchSize: number, percent = 0.33): boolean {
  return !(j < roundHalfEven(batchSize * (1 - percent)));
}

interface LoaderGeometry {
  patch: [number, number, number];
  needToPad: [number, number, number];
}

function loaderGeometry(opts: SamplerOptions): LoaderGeometry {
  const { patchSize, initialPatchSize } = opts;
  if (patchSize.length !== initialPatchSize.length)
    throw new Error('patchSize and initialPatchSize differ in length');
  if (patchSize.length === 2) {
    // Upstream quirk kept on purpose: a 2D patch becomes (1, Y, X) and final_patch_size is set to the
    // *initial* patch too, so 2D loaders get no padding allowance beyond what a small image needs.
    return { patch: [1, initialPatchSize[0], initialPatchSize[1]], needToPad: [0, 0, 0] };
  }
  if (patchSize.length !== 3)
    throw new Error(`patch size must have 2 or 3 entries, got ${patchSize.length}`);
  const patch: [number, number, number] = [
    initialPatchSize[0],
    initialPatchSize[1],
    initialPatchSize[2],
  ];
  const needToPad: [number, number, number] = [0, 1, 2].map(
    (d) => initialPatchSize[d] - patchSize[d],
  ) as [number, number, number];
  return { patch, needToPad };
}

/** Lower and upper bound for the patch start along every axis (spec §7.5). */
export function startBounds(
  shape: readonly number[],
  patch: readonly number[],
  needToPad: readonly number[],
): { lb: number[]; ub: number[] } {
  const lb: number[] = [];
  const ub: number[] = [];
  for (let d = 0; d < shape.length; d++) {
    let need = needToPad[d];
    if (need + shape[d] < patch[d]) need = patch[d] - shape[d];
    // Python // and % floor towards −∞; need ≥ 0 here so Math.floor matches.
    lb.push(0 - Math.floor(need / 2)); // 0 − x, not −x: no −0 starts
    ub.push(shape[d] + Math.floor(need / 2) + (need % 2) - patch[d]);
  }
  return { lb, ub };
}

/** Picks the patch start for one sample (get_bbox). */
export function chooseStart(
  c: TrainingCase,
  patch: readonly number[],
  needToPad: readonly number[],
  forceFg: boolean,
  hasIgnoreLabel: boolean,
  rng: Rng,
): [number, number, number] {
  const { lb, ub } = startBounds(c.shape, patch, needToPad);
  const random = (): [number, number, number] => [
    randInt(rng, lb[0], ub[0]),
    randInt(rng, lb[1], ub[1]),
    randInt(rng, lb[2], ub[2]),
  ];
  if (!forceFg && !hasIgnoreLabel) return random();

  let selected: string | null = null;
  if (!forceFg) {
    const ann = c.classLocations[ANNOTATED_KEY];
    selected = ann && ann.length > 0 ? ANNOTATED_KEY : null;
  } else {
    const eligible = Object.keys(c.classLocations).filter((k) => c.classLocations[k].length > 0);
    if (eligible.length > 1) {
      const i = eligible.indexOf(ANNOTATED_KEY);
      if (i >= 0) eligible.splice(i, 1);
    }
    selected = eligible.length > 0 ? eligible[randInt(rng, 0, eligible.length - 1)] : null;
  }
  if (selected === null) return random(); // no foreground in this case: fall back to a random patch

  const locs = c.classLocations[selected];
  const flat = locs[randInt(rng, 0, locs.length - 1)];
  const [, Y, X] = c.shape;
  const vz = Math.floor(flat / (Y * X));
  const rem = flat - vz * Y * X;
  const vy = Math.floor(rem / X);
  const vx = rem - vy * X;
  const v = [vz, vy, vx];
  // No upper clamp, as upstream: a voxel near the far border can push the patch past ub (padded).
  return [0, 1, 2].map((d) => Math.max(lb[d], v[d] - Math.floor(patch[d] / 2))) as [
    number,
    number,
    number,
  ];
}

/**
 * Copies the box [start, start + patch) of a (C, Z, Y, X) volume into `out` at `outOffset`,
 * filling everything outside the volume with `padValue` (acvl crop_and_pad_nd).
 */
export function cropAndPad<T extends Float32Array | Int8Array | Int16Array>(
  src: T,
  channels: number,
  shape: readonly [number, number, number],
  start: readonly number[],
  patch: readonly [number, number, number],
  padValue: number,
  out: T,
  outOffset: number,
): void {
  const [Z, Y, X] = shape;
  const [pz, py, px] = patch;
  const x0 = Math.max(0, start[2]);
  const x1 = Math.min(X, start[2] + px);
  const ox0 = x0 - start[2];
  const nx = Math.max(0, x1 - x0);
  const volIn = Z * Y * X;
  const volOut = pz * py * px;
  for (let c = 0; c < channels; c++) {
    for (let z = 0; z < pz; z++) {
      const iz = start[0] + z;
      for (let y = 0; y < py; y++) {
        const iy = start[1] + y;
        const o = outOffset + c * volOut + (z * py + y) * px;
        if (iz < 0 || iz >= Z || iy < 0 || iy >= Y || nx === 0) {
          out.fill(padValue, o, o + px);
          continue;
        }
        if (ox0 > 0) out.fill(padValue, o, o + ox0);
        const s = c * volIn + (iz * Y + iy) * X + x0;
        out.set(src.subarray(s, s + nx), o + ox0);
        if (ox0 + nx < px) out.fill(padValue, o + ox0 + nx, o + px);
      }
    }
  }
}

/** Samples one batch of loader patches (before augmentation). */
export function sampleBatch(
  cases: readonly TrainingCase[],
  opts: SamplerOptions,
  rng: Rng,
): PatchBatch {
  if (cases.length === 0) throw new Error('no training cases');
  const bs = opts.batchSize;
  const percent = opts.oversampleForegroundPercent ?? 0.33;
  const { patch, needToPad } = loaderGeometry(opts);
  const channels = cases[0].data.length / prod(cases[0].shape);
  const vol = prod(patch);
  const data = new Float32Array(bs * channels * vol);
  const seg = newSegLike(cases[0].seg, bs * vol);
  const caseIndices: number[] = [];
  const forcedForeground: boolean[] = [];
  const starts: [number, number, number][] = [];
  // Cases first, like DataLoader.get_indices (np.random.choice with replacement).
  for (let j = 0; j < bs; j++) caseIndices.push(randInt(rng, 0, cases.length - 1));
  for (let j = 0; j < bs; j++) {
    const c = cases[caseIndices[j]];
    const cc = c.data.length / prod(c.shape);
    if (cc !== channels)
      throw new Error(`case ${caseIndices[j]} has ${cc} channels, expected ${channels}`);
    const force = isForcedForeground(j, bs, percent);
    const start = chooseStart(c, patch, needToPad, force, opts.hasIgnoreLabel ?? false, rng);
    cropAndPad(c.data, channels, c.shape, start, patch, 0, data, j * channels * vol);
    cropAndPad(c.seg, 1, c.shape, start, patch, -1, seg, j * vol);
    forcedForeground.push(force);
    starts.push(start);
  }
  return {
    data,
    seg,
    batchSize: bs,
    channels,
    patchShape: patch,
    caseIndices,
    forcedForeground,
    starts,
  };
}

/** Converts nnU-Net's location rows ((0, z, y, x), or (z, y, x)) into the flat indices used here. */
export function flatLocations(
  rows: readonly (readonly number[])[],
  shape: readonly [number, number, number],
): Int32Array {
  const [, Y, X] = shape;
  const out = new Int32Array(rows.length);
  rows.forEach((r, i) => {
    const k = r.length - 3;
    out[i] = (r[k] * Y + r[k + 1]) * X + r[k + 2];
  });
  return out;
}
