// Rotation range, dummy-2D switch, mirror axes and the enlarged loader patch (spec §7.5–7.6;
// nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size + get_patch_size).

/** Anisotropy threshold for dummy-2D augmentation (nnU-Net's ANISO_THRESHOLD). */
export const ANISO_THRESHOLD = 3;

/** Scale range get_patch_size divides by. Not the (0.7, 1.4) used by the transform: upstream keeps v1's value. */
const PATCH_SIZE_MIN_SCALE = 0.85;

const DEG = Math.PI / 180;

export interface AugmentationGeometry {
  /** Rotation range in radians, the same for every axis that rotates. */
  rotation: [number, number];
  /** 3D only: rotate/scale in-plane slice by slice because axis 0 is much coarser. */
  dummy2d: boolean;
  /** Spatial axes (0-based, numpy order) that training mirrors and inference may mirror. */
  mirrorAxes: number[];
  /** Patch the loader cuts (≥ patch on every axis) so rotation/scaling find image content. */
  initialPatchSize: number[];
}

/** Spec §7.6 for a 2D (Y, X) or 3D (Z, Y, X) configuration patch size. */
export function configureAugmentationGeometry(patchSize: readonly number[]): AugmentationGeometry {
  const dim = patchSize.length;
  let rotDeg: number;
  let dummy2d = false;
  let mirrorAxes: number[];
  if (dim === 2) {
    rotDeg = Math.max(...patchSize) / Math.min(...patchSize) > 1.5 ? 15 : 180;
    mirrorAxes = [0, 1];
  } else if (dim === 3) {
    dummy2d = Math.max(...patchSize) / patchSize[0] > ANISO_THRESHOLD;
    rotDeg = dummy2d ? 180 : 30;
    mirrorAxes = [0, 1, 2];
  } else {
    throw new Error(`patch size must have 2 or 3 entries, got ${dim}`);
  }
  const rotation: [number, number] = [-rotDeg * DEG, rotDeg * DEG];
  return {
    rotation,
    dummy2d,
    mirrorAxes,
    initialPatchSize: initialPatchSize(patchSize, rotation, dummy2d),
  };
}

// Row vector times matrix, as batchgenerators' rotate_coords_{2d,3d} do (coords · R).
function rowTimes(v: readonly number[], m: readonly (readonly number[])[]): number[] {
  return m[0].map((_, j) => v.reduce((acc, vi, i) => acc + vi * m[i][j], 0));
}

/**
 * get_patch_size (spec §7.5): max of |patch · R| over the rotations about each axis (2D: one
 * rotation), angle capped at 90°, divided by 0.85 and truncated. Dummy-2D keeps axis 0 as is.
 * `rotation` is a range in radians (or its max magnitude).
 */
export function initialPatchSize(
  patchSize: readonly number[],
  rotation: readonly [number, number] | number,
  dummy2d: boolean,
): number[] {
  const maxAbs =
    typeof rotation === 'number'
      ? Math.abs(rotation)
      : Math.max(Math.abs(rotation[0]), Math.abs(rotation[1]));
  const a = Math.min((90 / 360) * 2 * Math.PI, maxAbs);
  const c = Math.cos(a);
  const s = Math.sin(a);
  const coords = [...patchSize];
  let rots: number[][][];
  if (coords.length === 3) {
    const rx = [
      [1, 0, 0],
      [0, c, -s],
      [0, s, c],
    ];
    const ry = [
      [c, 0, s],
      [0, 1, 0],
      [-s, 0, c],
    ];
    const rz = [
      [c, -s, 0],
      [s, c, 0],
      [0, 0, 1],
    ];
    rots = [rx, ry, rz];
  } else if (coords.length === 2) {
    rots = [
      [
        [c, -s],
        [s, c],
      ],
    ];
  } else {
    throw new Error(`patch size must have 2 or 3 entries, got ${coords.length}`);
  }
  const best = coords.slice();
  for (const r of rots) {
    const v = rowTimes(coords, r);
    for (let i = 0; i < best.length; i++) best[i] = Math.max(best[i], Math.abs(v[i]));
  }
  const out = best.map((v) => Math.trunc(v / PATCH_SIZE_MIN_SCALE));
  if (dummy2d) out[0] = patchSize[0];
  return out;
}
