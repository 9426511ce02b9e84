// batchgeneratorsv2 SpatialTransform as nnU-Net configures it (spec §7.7 step 2): rotation p 0.2,
// one shared scale factor U(0.7, 1.4) with p 0.2, no elastic deformation, output = centred patch.
//
// Deviation from upstream: the affine is applied rigidly in voxel space about the patch
// centre. Upstream applies it to grid_sample's normalised [-1, 1] coordinates, so a rotation is
// stretched whenever the loaded patch is not a cube, and it divides the grid by the size ratios in
// (Z, Y, X) order while the grid holds (x, y, z) — both artefacts of the coordinate convention.
// Scaling alone is identical either way.
import { cropAndPad } from './sampler.ts';
import { type Rng, type SegArray, as3d, newSegLike, uniform } from './util.ts';
import { prod } from '../util/numeric.ts';

export interface SpatialParams {
  /** Rotation angles in radians; 3D uses [a0, a1, a2] (about the x, y, z components), 2D uses a0. */
  angles: number[];
  /** Isotropic scale: > 1 samples a larger region, i.e. zooms out. */
  scale: number;
  /** False: neither rotation nor scaling was drawn, so the transform is a pure centre crop. */
  resample: boolean;
}

/** Draws SpatialTransform's parameters in upstream order: rotate?, scale?, then the values. */
export function sampleSpatialParams(
  dim: number,
  rotation: readonly [number, number],
  rng: Rng,
  pRotation = 0.2,
  pScaling = 0.2,
  scaling: readonly [number, number] = [0.7, 1.4],
): SpatialParams {
  const doRot = rng() < pRotation;
  const doScale = rng() < pScaling;
  const angles = new Array<number>(dim).fill(0);
  if (doRot) for (let i = 0; i < dim; i++) angles[i] = uniform(rng, rotation[0], rotation[1]);
  const scale = doScale ? uniform(rng, scaling[0], scaling[1]) : 1;
  return { angles, scale, resample: doRot || doScale };
}

type M3 = [number, number, number, number, number, number, number, number, number];

function mul(a: M3, b: M3): M3 {
  const r = new Array<number>(9) as M3;
  for (let i = 0; i < 3; i++)
    for (let j = 0; j < 3; j++)
      r[i * 3 + j] = a[i * 3] * b[j] + a[i * 3 + 1] * b[3 + j] + a[i * 3 + 2] * b[6 + j];
  return r;
}

/** Rz·Ry·Rx·S (3D) or R·S (2D, embedded with z untouched), acting on (x, y, z) row vectors. */
export function affineMatrix(dim: number, angles: readonly number[], scale: number): M3 {
  const S: M3 = [scale, 0, 0, 0, scale, 0, 0, 0, dim === 3 ? scale : 1];
  if (dim === 2) {
    const c = Math.cos(angles[0]),
      s = Math.sin(angles[0]);
    return mul([c, -s, 0, s, c, 0, 0, 0, 1], S);
  }
  const [ax, ay, az] = angles;
  const Rx: M3 = [1, 0, 0, 0, Math.cos(ax), -Math.sin(ax), 0, Math.sin(ax), Math.cos(ax)];
  const Ry: M3 = [Math.cos(ay), 0, Math.sin(ay), 0, 1, 0, -Math.sin(ay), 0, Math.cos(ay)];
  const Rz: M3 = [Math.cos(az), -Math.sin(az), 0, Math.sin(az), Math.cos(az), 0, 0, 0, 1];
  return mul(mul(mul(Rz, Ry), Rx), S);
}

/**
 * Applies the spatial transform to `channels` image volumes and `segChannels` label volumes of
 * spatial shape `inShape` (2 or 3 entries), producing `outShape`. Image: (bi/tri)linear with zero
 * padding. Seg: per label, the interpolated one-hot weight; a label with > 0.7 wins, otherwise the
 * label with the largest weight (ties: smaller label; nothing inside the image: the smallest label
 * of that seg channel), i.e. upstream's one-hot ×1000 rule computed from the 8 taps directly.
 */
export function spatialTransform(
  img: Float32Array,
  channels: number,
  seg: SegArray,
  segChannels: number,
  inShape: readonly number[],
  outShape: readonly number[],
  params: SpatialParams,
): { img: Float32Array; seg: SegArray } {
  const dim = inShape.length;
  const s3 = as3d(inShape);
  const p3 = as3d(outShape);
  const vout = prod(p3);
  const outImg = new Float32Array(channels * vout);
  const outSeg = newSegLike(seg, segChannels * vout);
  if (!params.resample) {
    // Pure crop around floor(centre), as upstream's crop_tensor; zero padding for both.
    const start = s3.map((s, d) => Math.floor(s / 2) - Math.floor(p3[d] / 2));
    cropAndPad(img, channels, s3, start, p3, 0, outImg, 0);
    cropAndPad(seg, segChannels, s3, start, p3, 0, outSeg, 0);
    return { img: outImg, seg: outSeg };
  }
  const A = affineMatrix(dim, params.angles, params.scale);
  const [Z, Y, X] = s3;
  const vin = Z * Y * X;
  const cz = (Z - 1) / 2,
    cy = (Y - 1) / 2,
    cx = (X - 1) / 2;
  const minLabel = new Int32Array(segChannels);
  for (let c = 0; c < segChannels; c++) {
    let m = Infinity;
    for (let i = c * vin; i < (c + 1) * vin; i++) if (seg[i] < m) m = seg[i];
    minLabel[c] = m;
  }
  const idx = new Int32Array(8);
  const wt = new Float64Array(8);
  const labs = new Int32Array(8);
  const sums = new Float64Array(8);
  let o = 0;
  for (let z = 0; z < p3[0]; z++) {
    const oz = z - (p3[0] - 1) / 2;
    for (let y = 0; y < p3[1]; y++) {
      const oy = y - (p3[1] - 1) / 2;
      for (let x = 0; x < p3[2]; x++, o++) {
        const ox = x - (p3[2] - 1) / 2;
        // q = (ox, oy, oz) · A; components are (x, y, z)
        const qx = ox * A[0] + oy * A[3] + oz * A[6];
        const qy = ox * A[1] + oy * A[4] + oz * A[7];
        const qz = ox * A[2] + oy * A[5] + oz * A[8];
        const pz = qz + cz,
          py = qy + cy,
          px = qx + cx;
        const fz = Math.floor(pz),
          fy = Math.floor(py),
          fx = Math.floor(px);
        const wz1 = pz - fz,
          wy1 = py - fy,
          wx1 = px - fx;
        let k = 0;
        for (let dz = 0; dz < 2; dz++) {
          const iz = fz + dz;
          const wz = dz ? wz1 : 1 - wz1;
          for (let dy = 0; dy < 2; dy++) {
            const iy = fy + dy;
            const wzy = wz * (dy ? wy1 : 1 - wy1);
            for (let dx = 0; dx < 2; dx++, k++) {
              const ix = fx + dx;
              const inside = iz >= 0 && iz < Z && iy >= 0 && iy < Y && ix >= 0 && ix < X;
              idx[k] = inside ? (iz * Y + iy) * X + ix : 0;
              wt[k] = inside ? wzy * (dx ? wx1 : 1 - wx1) : 0;
            }
          }
        }
        for (let c = 0; c < channels; c++) {
          const base = c * vin;
          let acc = 0;
          for (let t = 0; t < 8; t++) if (wt[t] !== 0) acc += wt[t] * img[base + idx[t]];
          outImg[c * vout + o] = acc;
        }
        for (let c = 0; c < segChannels; c++) {
          const base = c * vin;
          let n = 0;
          for (let t = 0; t < 8; t++) {
            if (wt[t] === 0) continue;
            const l = seg[base + idx[t]];
            let j = 0;
            while (j < n && labs[j] !== l) j++;
            if (j === n) {
              labs[n] = l;
              sums[n] = 0;
              n++;
            }
            sums[j] += wt[t];
          }
          let best = minLabel[c];
          let bestW = 0;
          for (let j = 0; j < n; j++) {
            if (sums[j] > 0.7) {
              best = labs[j];
              break;
            }
            if (sums[j] > bestW || (sums[j] === bestW && labs[j] < best)) {
              best = labs[j];
              bestW = sums[j];
            }
          }
          outSeg[c * vout + o] = best;
        }
      }
    }
  }
  return { img: outImg, seg: outSeg };
}
