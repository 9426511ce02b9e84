// An exact reference for the conv kernel checks at nnU-Net's full channel widths: chosen elements
// of Conv3D, Conv3DBackpropInputV2 and Conv3DBackpropFilterV2 as direct float64 sums over their
// definitions (NDHWC, filter [kd, kh, kw, in, out], dilation 1), each element on its own. The
// tfjs cpu backend computes every element in float32 (minutes at 256→320 channels on 2 cores);
// a few thousand elements in float64 take milliseconds. Padding as tfjs computes it.
import * as tf from '@tensorflow/tfjs';
import { mulberry32 } from '../../src/util/rng.ts';

type V3 = [number, number, number];
export interface ConvGeometry {
  batch: number;
  spatial: V3;
  cin: number;
  cout: number;
  kernel: V3;
  strides: V3;
  pad: 'same' | 'valid';
}

export type ConvPassName = 'y' | 'dx' | 'dw';

interface Dims {
  B: number;
  I: V3;
  O: V3;
  K: V3;
  S: V3;
  P: V3;
  CI: number;
  CO: number;
}

function dims(c: ConvGeometry): Dims {
  const info = tf.backend_util.computeConv3DInfo(
    [c.batch, ...c.spatial, c.cin],
    [...c.kernel, c.cin, c.cout],
    c.strides,
    1,
    c.pad,
  );
  return {
    B: c.batch,
    I: [...c.spatial],
    O: [info.outDepth, info.outHeight, info.outWidth],
    K: [...c.kernel],
    S: [...c.strides],
    P: [info.padInfo.front, info.padInfo.top, info.padInfo.left],
    CI: c.cin,
    CO: c.cout,
  };
}

/** Splits a row-major index into its coordinates along `shape`. */
function coords(i: number, shape: number[]): number[] {
  const out = new Array<number>(shape.length);
  for (let a = shape.length - 1; a >= 0; a--) {
    out[a] = i % shape[a];
    i = Math.floor(i / shape[a]);
  }
  return out;
}

/**
 * Element `i` (row-major) of one pass, in float64: y from x and w, dx from dy and w, dw from x
 * and dy (the operands as the kernels get them).
 */
function element(
  d: Dims,
  pass: ConvPassName,
  i: number,
  t: { x: Float32Array; w: Float32Array; dy: Float32Array },
): number {
  const { B, I, O, K, S, P, CI, CO } = d;
  const xAt = (b: number, z: number, y: number, x: number, ci: number) =>
    t.x[(((b * I[0] + z) * I[1] + y) * I[2] + x) * CI + ci];
  const wAt = (kz: number, ky: number, kx: number, ci: number, co: number) =>
    t.w[(((kz * K[1] + ky) * K[2] + kx) * CI + ci) * CO + co];
  const dyAt = (b: number, z: number, y: number, x: number, co: number) =>
    t.dy[(((b * O[0] + z) * O[1] + y) * O[2] + x) * CO + co];
  let s = 0;
  if (pass === 'y') {
    const [b, oz, oy, ox, co] = coords(i, [B, ...O, CO]);
    for (let kz = 0; kz < K[0]; kz++) {
      const z = oz * S[0] - P[0] + kz;
      if (z < 0 || z >= I[0]) continue;
      for (let ky = 0; ky < K[1]; ky++) {
        const y = oy * S[1] - P[1] + ky;
        if (y < 0 || y >= I[1]) continue;
        for (let kx = 0; kx < K[2]; kx++) {
          const x = ox * S[2] - P[2] + kx;
          if (x < 0 || x >= I[2]) continue;
          for (let ci = 0; ci < CI; ci++) s += xAt(b, z, y, x, ci) * wAt(kz, ky, kx, ci, co);
        }
      }
    }
  } else if (pass === 'dx') {
    const [b, z, y, x, ci] = coords(i, [B, ...I, CI]);
    // The output voxels whose window puts tap k on this input voxel: o·s − p + k = i.
    const hit = (v: number, a: number, k: number) => {
      const n = v + P[a] - k;
      return n >= 0 && n % S[a] === 0 && n / S[a] < O[a] ? n / S[a] : -1;
    };
    for (let kz = 0; kz < K[0]; kz++) {
      const oz = hit(z, 0, kz);
      if (oz < 0) continue;
      for (let ky = 0; ky < K[1]; ky++) {
        const oy = hit(y, 1, ky);
        if (oy < 0) continue;
        for (let kx = 0; kx < K[2]; kx++) {
          const ox = hit(x, 2, kx);
          if (ox < 0) continue;
          for (let co = 0; co < CO; co++) s += dyAt(b, oz, oy, ox, co) * wAt(kz, ky, kx, ci, co);
        }
      }
    }
  } else {
    const [kz, ky, kx, ci, co] = coords(i, [...K, CI, CO]);
    for (let b = 0; b < B; b++)
      for (let oz = 0; oz < O[0]; oz++) {
        const z = oz * S[0] - P[0] + kz;
        if (z < 0 || z >= I[0]) continue;
        for (let oy = 0; oy < O[1]; oy++) {
          const y = oy * S[1] - P[1] + ky;
          if (y < 0 || y >= I[1]) continue;
          for (let ox = 0; ox < O[2]; ox++) {
            const x = ox * S[2] - P[2] + kx;
            if (x < 0 || x >= I[2]) continue;
            s += xAt(b, z, y, x, ci) * dyAt(b, oz, oy, ox, co);
          }
        }
      }
  }
  return s;
}

/**
 * The elements of an output of `n` elements whose last axis has `channels` entries that a check
 * compares, ascending: every element when there are at most `count`; else every channel of the
 * first and the last row (where partial blocks and padded borders are) and `count` more distinct
 * ones at random (seeded).
 */
export function sampleIndices(n: number, channels: number, count: number, seed: number): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  const picked = new Set<number>();
  for (let ch = 0; ch < Math.min(channels, n); ch++) {
    picked.add(ch);
    picked.add(n - 1 - ch);
  }
  const want = Math.min(n, picked.size + count);
  const r = mulberry32(seed);
  while (picked.size < want) picked.add(Math.floor(r() * n));
  return [...picked].sort((a, b) => a - b);
}

/**
 * One pass's elements at `indices` in float64 (referenceElement for each), computing the
 * geometry once.
 */
export function referenceAt(
  c: ConvGeometry,
  pass: ConvPassName,
  indices: number[],
  t: { x: Float32Array; w: Float32Array; dy: Float32Array },
): Float64Array {
  const d = dims(c);
  return Float64Array.from(indices, (i) => element(d, pass, i, t));
}
