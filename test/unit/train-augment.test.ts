import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/util/rng.ts';
import {
  applyBrightness,
  applyContrast,
  applyGamma,
  applyGaussianBlur,
  applyGaussianNoise,
  applyLowResolution,
  gaussianKernel,
} from '../../src/train/aug-intensity.ts';
import { spatialTransform } from '../../src/train/aug-spatial.ts';
import {
  applyMirror,
  augmentBatch,
  augmentSample,
  validationBatch,
} from '../../src/train/augment.ts';
import { cropAndPad, sampleBatch, type TrainingCase } from '../../src/train/sampler.ts';

function ramp(n: number, seed = 1): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r() * 10 - 3);
}
function meanStd(a: ArrayLike<number>, from = 0, to = a.length, ddof = 0): [number, number] {
  let s = 0;
  for (let i = from; i < to; i++) s += a[i];
  const m = s / (to - from);
  let q = 0;
  for (let i = from; i < to; i++) q += (a[i] - m) ** 2;
  return [m, Math.sqrt(q / (to - from - ddof))];
}

describe('spatial transform', () => {
  it('no rotation/scaling drawn: pure crop at floor(s/2) − p//2', () => {
    const img = ramp(2 * 9 * 8 * 7);
    const seg = Int8Array.from({ length: 9 * 8 * 7 }, (_, i) => (i % 5) - 1);
    const r = spatialTransform(img, 2, seg, 1, [9, 8, 7], [4, 5, 3], {
      angles: [0, 0, 0],
      scale: 1,
      resample: false,
    });
    const ref = new Float32Array(2 * 60);
    cropAndPad(img, 2, [9, 8, 7], [2, 2, 2], [4, 5, 3], 0, ref, 0); // 4−2, 4−2, 3−1
    expect(Array.from(r.img)).toEqual(Array.from(ref));
    const refSeg = new Int8Array(60);
    cropAndPad(seg, 1, [9, 8, 7], [2, 2, 2], [4, 5, 3], 0, refSeg, 0);
    expect(Array.from(r.seg)).toEqual(Array.from(refSeg));
  });

  it('rotation 0 and scale 1 through the resampling path equal the centre crop exactly', () => {
    const img = ramp(2 * 10 * 9 * 8);
    const seg = Int8Array.from({ length: 10 * 9 * 8 }, (_, i) => ((i * 7) % 4) - 1);
    const r = spatialTransform(img, 2, seg, 1, [10, 9, 8], [6, 5, 4], {
      angles: [0, 0, 0],
      scale: 1,
      resample: true,
    });
    const c = spatialTransform(img, 2, seg, 1, [10, 9, 8], [6, 5, 4], {
      angles: [0, 0, 0],
      scale: 1,
      resample: false,
    });
    expect(Array.from(r.img)).toEqual(Array.from(c.img));
    expect(Array.from(r.seg)).toEqual(Array.from(c.seg));
  });

  it('2D rotation by 90° permutes voxels of a square image (image ≈, seg exact)', () => {
    const n = 7;
    const img = ramp(n * n, 4);
    const seg = Int8Array.from({ length: n * n }, (_, i) => i % 3);
    const r = spatialTransform(img, 1, seg, 1, [n, n], [n, n], {
      angles: [Math.PI / 2, 0],
      scale: 1,
      resample: true,
    });
    // q = (ox, oy)·R(90°) = (oy, −ox): out[y][x] = in[c − (x − c)][c + (y − c)] with c = 3
    for (let y = 0; y < n; y++)
      for (let x = 0; x < n; x++) {
        const sy = 3 - (x - 3),
          sx = 3 + (y - 3);
        expect(r.img[y * n + x]).toBeCloseTo(img[sy * n + sx], 5);
        expect(r.seg[y * n + x]).toBe(seg[sy * n + sx]);
      }
  });

  it('seg: > 0.7 wins, else argmax with ties to the smaller label; image interpolates linearly', () => {
    // 2×2 → 1×2 with scale 0.5: x samples at 0.25 and 0.75, y at 0.5
    const params = { angles: [0, 0], scale: 0.5, resample: true };
    const img = Float32Array.from([0, 4, 8, 12]);
    let r = spatialTransform(img, 1, Int8Array.from([1, 2, 1, 2]), 1, [2, 2], [1, 2], params);
    expect(Array.from(r.img)).toEqual([5, 7]); // 0.75·4 + 0.25·8, 0.25·4 + 0.75·8
    expect(Array.from(r.seg)).toEqual([1, 2]); // weights 0.75 > 0.7
    r = spatialTransform(img, 1, Int8Array.from([1, 2, 3, 2]), 1, [2, 2], [1, 2], params);
    expect(Array.from(r.seg)).toEqual([1, 2]); // x=0: {1: .375, 3: .375, 2: .25} → tie → 1
    // centre of a 2×2: four taps of 0.25
    const c = { angles: [0, 0], scale: 1, resample: true };
    expect(
      Array.from(spatialTransform(img, 1, Int8Array.from([1, 2, 2, 3]), 1, [2, 2], [1, 1], c).seg),
    ).toEqual([2]);
    expect(
      Array.from(spatialTransform(img, 1, Int8Array.from([3, 1, 1, 3]), 1, [2, 2], [1, 1], c).seg),
    ).toEqual([1]);
  });

  it('zooming out pads the image with 0 and the seg with the smallest label present', () => {
    const img = new Float32Array(6 * 6 * 6).fill(2);
    const seg = new Int8Array(6 * 6 * 6).fill(1);
    seg[0] = -1;
    const r = spatialTransform(img, 1, seg, 1, [6, 6, 6], [6, 6, 6], {
      angles: [0, 0, 0],
      scale: 2,
      resample: true,
    });
    // corner output (0,0,0) samples at −5 + 2.5 = −2.5 on every axis: outside
    expect(r.img[0]).toBe(0);
    expect(r.seg[0]).toBe(-1);
    // centre voxels sample inside: constant 2
    const mid = (3 * 6 + 3) * 6 + 3;
    expect(r.img[mid]).toBeCloseTo(2, 6);
    expect(r.seg[mid]).toBe(1);
  });
});

describe('intensity transforms', () => {
  it('gaussian noise: one shared field, std grows as sqrt(1 + σ²)', () => {
    const n = 40_000;
    const img = new Float32Array(2 * n);
    applyGaussianNoise(img, 2, 0.05, mulberry32(5));
    expect(Array.from(img.subarray(0, 100))).toEqual(Array.from(img.subarray(n, n + 100)));
    const [m, s] = meanStd(img, 0, n);
    expect(Math.abs(m)).toBeLessThan(0.002);
    expect(s).toBeGreaterThan(0.05 * 0.97);
    expect(s).toBeLessThan(0.05 * 1.03);
    // on unit-std data
    const r = mulberry32(8);
    const u = Float32Array.from({ length: n }, () => (r() - 0.5) * Math.sqrt(12));
    applyGaussianNoise(u, 1, 0.5, mulberry32(9));
    expect(meanStd(u)[1]).toBeCloseTo(Math.sqrt(1.25), 1);
  });

  it('gaussian blur: kernel sizes, constants unchanged, impulse → separable kernel', () => {
    expect(gaussianKernel(0.5).length).toBe(3); // round(3.5) = 4 → 3
    expect(gaussianKernel(0.75).length).toBe(5);
    expect(gaussianKernel(1).length).toBe(7); // round(6.5) = 6 → 7
    const k = gaussianKernel(1);
    expect(k.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(k[0]).toBeCloseTo(k[6], 15);
    const c = new Float32Array(5 * 6 * 7).fill(3);
    applyGaussianBlur(c, 1, [5, 6, 7], [[0.6, 0.8, 1]]);
    for (const v of c) expect(v).toBeCloseTo(3, 5);
    const imp = new Float32Array(9 * 9 * 9);
    imp[(4 * 9 + 4) * 9 + 4] = 1;
    applyGaussianBlur(imp, 1, [9, 9, 9], [[0.5, 1, 1]]);
    const kz = gaussianKernel(0.5);
    expect(imp[(4 * 9 + 5) * 9 + 3]).toBeCloseTo(kz[1] * k[4] * k[2], 7);
    expect(imp[(3 * 9 + 4) * 9 + 4]).toBeCloseTo(kz[0] * k[3] * k[3], 7);
    // channels with null sigmas stay untouched
    const two = ramp(2 * 4 * 4);
    const before = two.slice();
    applyGaussianBlur(two, 2, [4, 4], [null, [1, 1]]);
    expect(Array.from(two.subarray(0, 16))).toEqual(Array.from(before.subarray(0, 16)));
    expect(Array.from(two.subarray(16))).not.toEqual(Array.from(before.subarray(16)));
  });

  it('brightness multiplies per channel; contrast keeps [min, max] and the mean', () => {
    const a = Float32Array.from([1, 2, 3, 4]);
    applyBrightness(a, 2, [2, 0.5]);
    expect(Array.from(a)).toEqual([2, 4, 1.5, 2]);
    const img = ramp(2 * 1000, 3);
    const [mn, mx] = [Math.min(...img.subarray(0, 1000)), Math.max(...img.subarray(0, 1000))];
    const m0 = meanStd(img, 1000, 2000)[0];
    applyContrast(img, 2, [1.25, 0.75]);
    for (const v of img.subarray(0, 1000)) {
      expect(v).toBeGreaterThanOrEqual(mn);
      expect(v).toBeLessThanOrEqual(mx);
    }
    expect(meanStd(img, 1000, 2000)[0]).toBeCloseTo(m0, 4); // shrinking never clamps
    const s1 = meanStd(img, 1000, 2000)[1];
    expect(s1).toBeGreaterThan(0); // and std shrinks by 0.75
    const fresh = ramp(2 * 1000, 3);
    expect(s1 / meanStd(fresh, 1000, 2000)[1]).toBeCloseTo(0.75, 4);
  });

  it('simulate low resolution keeps the shape; scale 1 is identity; hand-computed 0.5 case', () => {
    const img = ramp(3 * 8 * 6);
    const before = img.slice();
    applyLowResolution(img, 1, [3, 8, 6], [1]);
    for (let i = 0; i < img.length; i++) expect(img[i]).toBeCloseTo(before[i], 6);
    // x-periodic [0,1,0,1,...]: nearest-exact to half samples indices 2i+1 → all ones → all ones
    const stripes = Float32Array.from({ length: 4 * 8 }, (_, i) => i % 2);
    applyLowResolution(stripes, 1, [4, 8], [0.5]);
    expect(Array.from(stripes)).toEqual(new Array(32).fill(1));
    // 1D ramp 0..7 at 0.5: down = [1,3,5,7]; linear back with align_corners=False
    const r = Float32Array.from({ length: 8 }, (_, i) => i);
    applyLowResolution(r, 1, [1, 8], [0.5], [0]);
    expect(Array.from(r)).toEqual([1, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7]);
  });

  it('gamma (with and without inversion) restores mean and unbiased std', () => {
    for (const invert of [false, true]) {
      const img = ramp(2 * 500, 6);
      const [m0, s0] = meanStd(img, 0, 500, 1);
      const before = img.slice();
      applyGamma(img, 2, [1.4, 0.7], invert);
      const [m1, s1] = meanStd(img, 0, 500, 1);
      expect(m1).toBeCloseTo(m0, 4);
      expect(s1).toBeCloseTo(s0, 4);
      expect(
        Math.max(...img.subarray(0, 500).map((v, i) => Math.abs(v - before[i]))),
      ).toBeGreaterThan(0.05);
    }
    const img = ramp(100, 7);
    const before = img.slice();
    applyGamma(img, 1, [1], false);
    for (let i = 0; i < 100; i++) expect(img[i]).toBeCloseTo(before[i], 4);
  });
});

describe('mirroring, masking and the composed pipeline', () => {
  it('mirror flips the named axes; twice is the identity', () => {
    const img = Float32Array.from([0, 1, 2, 3, 4, 5]); // (1, 2, 3)
    const seg = Int8Array.from([0, 1, 2, 3, 4, 5]);
    applyMirror(img, 1, seg, 1, [2, 3], [1]);
    expect(Array.from(img)).toEqual([2, 1, 0, 5, 4, 3]);
    applyMirror(img, 1, seg, 1, [2, 3], [0]);
    expect(Array.from(img)).toEqual([5, 4, 3, 2, 1, 0]);
    expect(Array.from(seg)).toEqual([5, 4, 3, 2, 1, 0]);
    const a = ramp(2 * 3 * 4 * 5);
    const s = Int8Array.from({ length: 60 }, (_, i) => i);
    const a0 = a.slice(),
      s0 = s.slice();
    applyMirror(a, 2, s, 1, [3, 4, 5], [0, 1, 2]);
    expect(Array.from(a)).not.toEqual(Array.from(a0));
    applyMirror(a, 2, s, 1, [3, 4, 5], [0, 1, 2]);
    expect(Array.from(a)).toEqual(Array.from(a0));
    expect(Array.from(s)).toEqual(Array.from(s0));
  });

  it('probabilityScale 0: centre crop, mask where seg < 0, then −1 → 0', () => {
    const img = ramp(2 * 8 * 8 * 8);
    const seg = Int8Array.from({ length: 512 }, (_, i) => (i % 3) - 1);
    const opts = {
      patchSize: [4, 4, 4],
      rotation: [-0.5, 0.5] as [number, number],
      dummy2d: false,
      mirrorAxes: [0, 1, 2],
      probabilityScale: 0,
    };
    const crop = spatialTransform(img, 2, seg, 1, [8, 8, 8], [4, 4, 4], {
      angles: [0, 0, 0],
      scale: 1,
      resample: false,
    });
    const plain = augmentSample(img, 2, seg, [8, 8, 8], opts, mulberry32(1));
    expect(Array.from(plain.data)).toEqual(Array.from(crop.img));
    expect(Array.from(plain.seg)).toEqual(Array.from(crop.seg).map((v) => (v < 0 ? 0 : v)));
    const masked = augmentSample(
      img,
      2,
      seg,
      [8, 8, 8],
      { ...opts, useMaskForNorm: [false, true] },
      mulberry32(1),
    );
    for (let i = 0; i < 64; i++)
      for (let c = 0; c < 2; c++)
        expect(masked.data[c * 64 + i]).toBe(crop.seg[i] < 0 ? 0 : crop.img[c * 64 + i]);
  });

  it('dummy-2D keeps slices apart: every transform on, each output slice holds only its own label', () => {
    const [Z, Y, X] = [4, 12, 12];
    const img = new Float32Array(Z * Y * X);
    const seg = new Int8Array(Z * Y * X);
    for (let i = 0; i < img.length; i++) {
      img[i] = Math.floor(i / (Y * X)) + 1;
      seg[i] = Math.floor(i / (Y * X)) + 1;
    }
    const opts = {
      patchSize: [4, 8, 8],
      rotation: [-Math.PI, Math.PI] as [number, number],
      dummy2d: true,
      mirrorAxes: [0, 1, 2],
      probabilityScale: 100,
    };
    const r = augmentSample(img, 1, seg, [Z, Y, X], opts, mulberry32(12));
    expect(r.seg.length).toBe(4 * 64);
    // mirroring along axis 0 is certain at this scale, so slice z holds label Z − z
    for (let z = 0; z < Z; z++) for (let i = 0; i < 64; i++) expect(r.seg[z * 64 + i]).toBe(Z - z);
    for (const v of r.data) expect(Number.isFinite(v)).toBe(true);
  });

  it('augmentBatch and validationBatch on sampled 2D and 3D batches', () => {
    const shape: [number, number, number] = [6, 20, 18];
    const n = shape[0] * shape[1] * shape[2];
    const c: TrainingCase = {
      data: ramp(n, 2),
      seg: Int8Array.from({ length: n }, (_, i) => (i % 7 === 0 ? -1 : i % 3)),
      shape,
      classLocations: { '1': [1, 4] },
    };
    const rng = mulberry32(4);
    const b2 = sampleBatch(
      [c],
      { batchSize: 2, patchSize: [8, 8], initialPatchSize: [11, 11] },
      rng,
    );
    const a2 = augmentBatch(
      b2,
      { patchSize: [8, 8], rotation: [-Math.PI, Math.PI], dummy2d: false, mirrorAxes: [0, 1] },
      rng,
    );
    expect(a2.patchShape).toEqual([8, 8]);
    expect(a2.data.length).toBe(2 * 64);
    expect(Math.min(...a2.seg)).toBeGreaterThanOrEqual(0);
    const b3 = sampleBatch(
      [c],
      { batchSize: 2, patchSize: [4, 8, 8], initialPatchSize: [4, 8, 8] },
      rng,
    );
    const hadNeg = b3.seg.some((v) => v < 0);
    const v3 = validationBatch(b3, 3);
    expect(v3.patchShape).toEqual([4, 8, 8]);
    expect(hadNeg).toBe(true);
    expect(v3.seg.every((v) => v >= 0)).toBe(true);
  });
});
