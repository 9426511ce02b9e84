import { describe, expect, it } from 'vitest';
import {
  computeGaussian,
  gaussianImportanceMap,
  padArray,
  paddingFor,
  slidingWindowPredict,
  slidingWindowSteps,
  tilePositions,
  unpadArray,
  type PredictTiles,
} from '../../src/infer/sliding-window.ts';
import { gaussianKernel1d, gaussianRadius, roundToHalf } from '../../src/infer/gaussian.ts';
import { axisCombinations, flipAxes } from '../../src/infer/flip.ts';
import { maxAbsDiff } from '../../src/util/compare.ts';
import { prod, roundHalfEven } from '../../src/util/numeric.ts';

describe('tile positions (§8 step 3)', () => {
  it('matches nnU-Net examples', () => {
    expect(tilePositions(110, 64)).toEqual([0, 23, 46]);
    expect(tilePositions(300, 128)).toEqual([0, 57, 115, 172]); // 57.33, 114.67, 172
    expect(tilePositions(37, 32)).toEqual([0, 5]);
    expect(tilePositions(64, 64)).toEqual([0]);
    expect(tilePositions(65, 64)).toEqual([0, 1]);
    expect(slidingWindowSteps([110, 37], [64, 32])).toEqual([
      [0, 23, 46],
      [0, 5],
    ]);
  });
  it('rounds half to even', () => {
    expect([0.5, 1.5, 2.5, 3.5, -2.5, 2.4999].map(roundHalfEven)).toEqual([0, 2, 2, 4, -2, 2]);
    expect(tilePositions(14, 4)).toEqual([0, 2, 4, 6, 8, 10]); // step exactly 2
    // size 9, tile 4 → n = ceil(5/2)+1 = 4, step 5/3: 1.67, 3.33, 5 → [0,2,3,5].
    expect(tilePositions(9, 4)).toEqual([0, 2, 3, 5]);
    // A genuine tie: size 9, tile 4, stepSize 1 → n = 3, step 2.5 → [0, 2 (2.5 half-even), 5].
    expect(tilePositions(9, 4, 1)).toEqual([0, 2, 5]);
  });
  it('rejects a volume smaller than the tile', () => {
    expect(() => tilePositions(10, 16)).toThrow();
  });
});

describe('padding (§8 step 2)', () => {
  it('pads centred with the extra voxel high, only trailing axes, and round-trips', () => {
    const shape = [2, 3, 5, 4];
    const p = paddingFor(shape, [6, 8, 4]);
    expect(p.shape).toEqual([2, 6, 8, 4]);
    expect(p.below).toEqual([0, 1, 1, 0]); // diff 3 → 1 below, 2 above; diff 3 → 1/2; diff 0
    expect(p.slicer).toEqual([
      [0, 2],
      [1, 4],
      [1, 6],
      [0, 4],
    ]);
    const src = Float32Array.from({ length: prod(shape) }, (_, i) => i + 1);
    const padded = padArray(src, shape, p);
    expect(padded.length).toBe(2 * 6 * 8 * 4);
    // voxel (c=1, z=0, y=0, x=0) of the source lands at (1, 1, 1, 0).
    expect(padded[((1 * 6 + 1) * 8 + 1) * 4 + 0]).toBe(src[1 * 3 * 5 * 4]);
    // Padding is zero and the sum is preserved.
    expect(padded.reduce((a, b) => a + b, 0)).toBe(src.reduce((a, b) => a + b, 0));
    expect(Array.from(unpadArray(padded, p.shape, p.slicer))).toEqual(Array.from(src));
  });
  it('2d patch leaves axis 0 alone; no padding returns the input', () => {
    expect(paddingFor([1, 3, 5, 4], [8, 8]).shape).toEqual([1, 3, 8, 8]);
    const src = new Float32Array(24);
    const p = paddingFor([1, 2, 3, 4], [2, 3, 4]);
    expect(padArray(src, [1, 2, 3, 4], p)).toBe(src);
  });
});

describe('Gaussian importance map (§8 step 4)', () => {
  it('kernel follows scipy (radius int(4σ+0.5), normalised)', () => {
    expect(gaussianRadius(1)).toBe(4);
    expect(gaussianRadius(0.625)).toBe(3);
    expect(gaussianRadius(0.875)).toBe(4);
    const k = gaussianKernel1d(1, 4);
    expect(k.length).toBe(9);
    expect(k.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 15);
    // scipy.ndimage._filters._gaussian_kernel1d(1, 0, 4)[4] = 0.3989422804014327 / 1.0000... (≈ 0.39894346)
    expect(k[4]).toBeCloseTo(0.3989434693560555, 12);
  });
  it('roundToHalf rounds float64 to fp16, ties to even', () => {
    expect(roundToHalf(1 + 2 ** -11)).toBe(1);
    expect(roundToHalf(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(roundToHalf(2 ** -25)).toBe(0); // tie between 0 and the smallest subnormal → 0
    expect(roundToHalf(2 ** -25 * 1.000001)).toBe(2 ** -24);
    expect(roundToHalf(65519)).toBe(65504);
    expect(roundToHalf(65520)).toBe(Infinity);
    expect(roundToHalf(-0.1)).toBe(-0.0999755859375);
  });
  // Reference numbers: Debian numpy 1.24.2 / scipy 1.10:
  //   tmp = zeros(ts); tmp[tuple(i//2 for i in ts)] = 1
  //   g = gaussian_filter(tmp, [i/8 for i in ts], 0, mode='constant', cval=0)
  //   g = (g / g.max() * 10).astype(float16); g[g == 0] = g[g != 0].min()
  it('8×8×8 matches scipy + fp16 (incl. zero replacement)', () => {
    const g = computeGaussian([8, 8, 8]);
    const at = (z: number, y: number, x: number): number => g[(z * 8 + y) * 8 + x];
    expect(at(4, 4, 4)).toBe(10);
    expect(at(0, 0, 0)).toBe(1.7881393432617188e-7); // underflowed to 0 in fp16, replaced by min nonzero
    expect(at(3, 4, 5)).toBe(3.6796875);
    expect(at(7, 7, 7)).toBe(1.3709068298339844e-5);
    expect(at(0, 4, 4)).toBe(0.0033550262451171875);
    expect(at(4, 4, 0)).toBe(0.0033550262451171875);
    expect(at(2, 5, 6)).toBe(0.111083984375);
    let sum = 0;
    for (const v of g) sum += v;
    expect(sum).toBeCloseTo(157.43941819667816, 9);
  });
  it('5×7 matches scipy + fp16 entry by entry', () => {
    const ref = [
      0.00016736984252929688, 0.004383087158203125, 0.031097412109375, 0.05975341796875,
      0.031097412109375, 0.004383087158203125, 0.00016736984252929688, 0.00778961181640625,
      0.2039794921875, 1.447265625, 2.78125, 1.447265625, 0.2039794921875, 0.00778961181640625,
      0.02801513671875, 0.73388671875, 5.203125, 10.0, 5.203125, 0.73388671875, 0.02801513671875,
      0.00778961181640625, 0.2039794921875, 1.447265625, 2.78125, 1.447265625, 0.2039794921875,
      0.00778961181640625, 0.00016736984252929688, 0.004383087158203125, 0.031097412109375,
      0.05975341796875, 0.031097412109375, 0.004383087158203125, 0.00016736984252929688,
    ];
    expect(Array.from(computeGaussian([5, 7]))).toEqual(ref);
    expect(Array.from(computeGaussian([6]))).toEqual([
      0.0033550262451171875, 0.28564453125, 4.109375, 10.0, 4.109375, 0.28564453125,
    ]);
  });
  it('64³: 1189 fp16 zeros replaced by 2^-24; sum as scipy', () => {
    const g = computeGaussian([64, 64, 64]);
    let sum = 0;
    let nMin = 0;
    for (const v of g) {
      sum += v;
      if (v === 2 ** -24) nMin++;
    }
    expect(g[0]).toBe(5.960464477539063e-8);
    expect(g[(32 * 64 + 32) * 64]).toBe(0.0033550262451171875);
    expect(g[(10 * 64 + 20) * 64 + 30]).toBe(0.07171630859375);
    expect(nMin).toBeGreaterThanOrEqual(1189);
    expect(sum).toBeCloseTo(80622.63551056385, 6);
  });
  it('is cached per tile size', () => {
    expect(gaussianImportanceMap([4, 6])).toBe(gaussianImportanceMap([4, 6]));
    expect(gaussianImportanceMap([4, 6])).not.toBe(gaussianImportanceMap([6, 4]));
  });
});

describe('flips', () => {
  it('axis combinations in itertools order', () => {
    expect(axisCombinations([0, 1, 2])).toEqual([[0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]]);
    expect(axisCombinations([])).toEqual([]);
  });
  it('flips a (2, 2, 3) array', () => {
    const a = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(Array.from(flipAxes(a, 2, [2, 3], [1]))).toEqual([2, 1, 0, 5, 4, 3, 8, 7, 6, 11, 10, 9]);
    expect(Array.from(flipAxes(a, 1, [2, 2, 3], [0]))).toEqual([
      6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5,
    ]);
    expect(Array.from(flipAxes(a, 1, [2, 2, 3], [0, 1, 2]))).toEqual([
      11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
    ]);
  });
});

// Fake networks. Pointwise: channel k = x·(k+1) + sum of other input channels (k), so the blended
// result must equal the same function of the whole volume.
function pointwiseNet(C: number, K: number, tileVox: number, calls?: number[]): PredictTiles {
  return async (batch, n) => {
    calls?.push(n);
    const out = new Float32Array(n * K * tileVox);
    for (let t = 0; t < n; t++) {
      for (let k = 0; k < K; k++) {
        for (let v = 0; v < tileVox; v++) {
          let s = batch[t * C * tileVox + v] * (k + 1);
          for (let c = 1; c < C; c++) s += k * batch[(t * C + c) * tileVox + v];
          out[(t * K + k) * tileVox + v] = s;
        }
      }
    }
    return out;
  };
}

function directPointwise(data: Float32Array, C: number, K: number, n: number): Float32Array {
  const out = new Float32Array(K * n);
  for (let k = 0; k < K; k++) {
    for (let v = 0; v < n; v++) {
      let s = data[v] * (k + 1);
      for (let c = 1; c < C; c++) s += k * data[c * n + v];
      out[k * n + v] = s;
    }
  }
  return out;
}

function randomVolume(shape: [number, number, number, number], seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: prod(shape) }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

describe('slidingWindowPredict', () => {
  const cases: { shape: [number, number, number, number]; patch: number[]; batch: number }[] = [
    { shape: [1, 10, 11, 9], patch: [4, 6, 4], batch: 3 },
    { shape: [2, 7, 13, 5], patch: [4, 8, 8], batch: 2 }, // x smaller than the patch
    { shape: [1, 3, 3, 2], patch: [4, 4, 4], batch: 1 }, // whole volume smaller than the patch
    { shape: [2, 3, 9, 10], patch: [4, 6], batch: 5 }, // 2d: every slice tiled
    { shape: [1, 2, 3, 5], patch: [6, 6], batch: 4 }, // 2d, slice smaller than the patch
  ];
  for (const { shape, patch, batch } of cases) {
    it(`pointwise net: tiles == direct, shape ${shape}, patch ${patch}`, async () => {
      const K = 3;
      const [C, Z, Y, X] = shape;
      const data = randomVolume(shape, 7);
      const calls: number[] = [];
      const res = await slidingWindowPredict(
        { data, shape },
        patch,
        K,
        pointwiseNet(C, K, prod(patch), calls),
        { tileBatch: batch },
      );
      expect(res.shape).toEqual([K, Z, Y, X]);
      expect(maxAbsDiff(res.data, directPointwise(data, C, K, Z * Y * X))).toBeLessThan(1e-5);
      expect(Math.max(...calls)).toBeLessThanOrEqual(batch);
    });
  }

  it('mirroring with a pointwise (equivariant) net gives the plain result; 8 calls per batch in 3d', async () => {
    const shape: [number, number, number, number] = [1, 9, 7, 8];
    const patch = [4, 4, 6];
    const data = randomVolume(shape, 3);
    const calls: number[] = [];
    const net = pointwiseNet(1, 2, prod(patch), calls);
    const plain = await slidingWindowPredict({ data, shape }, patch, 2, net, { tileBatch: 4 });
    const nPlain = calls.length;
    calls.length = 0;
    const tta = await slidingWindowPredict({ data, shape }, patch, 2, net, {
      tileBatch: 4,
      mirrorAxes: [0, 1, 2],
    });
    expect(calls.length).toBe(8 * nPlain);
    expect(maxAbsDiff(tta.data, plain.data)).toBeLessThan(1e-5);
  });

  it('mirroring flips outputs back: a net emitting its local coordinates averages to the tile centre', async () => {
    const shape: [number, number, number, number] = [1, 6, 5, 7];
    const patch = [3, 4, 5];
    const coordNet: PredictTiles = async (_batch, n) => {
      const out = new Float32Array(n * prod(patch));
      for (let t = 0; t < n; t++) {
        for (let z = 0; z < 3; z++)
          for (let y = 0; y < 4; y++)
            for (let x = 0; x < 5; x++) {
              out[t * 60 + (z * 4 + y) * 5 + x] = z + 10 * y + 100 * x;
            }
      }
      return out;
    };
    const res = await slidingWindowPredict(
      { data: new Float32Array(prod(shape)), shape },
      patch,
      1,
      coordNet,
      { mirrorAxes: [0, 1, 2], tileBatch: 2 },
    );
    // Each axis term averages over the flip: z → (3-1)/2, y → 10·(4-1)/2, x → 100·(5-1)/2.
    for (const v of res.data) expect(v).toBeCloseTo(1 + 15 + 200, 4);
    // Mirroring only x: the x term becomes 200 everywhere while z and y keep their blended
    // positions, so noMirror − onlyX depends on x alone. Uniform weights (useGaussian false) keep
    // the blend exactly separable (the fp16 Gaussian is separable only to ~1e-3).
    const opts = { useGaussian: false };
    const onlyX = await slidingWindowPredict(
      { data: new Float32Array(prod(shape)), shape },
      patch,
      1,
      coordNet,
      { ...opts, mirrorAxes: [2] },
    );
    const noMirror = await slidingWindowPredict(
      { data: new Float32Array(prod(shape)), shape },
      patch,
      1,
      coordNet,
      opts,
    );
    const d = Array.from(noMirror.data, (v, i) => v - onlyX.data[i]);
    // x tiles at [0, 2] with extent 5: voxel x=0 only sees tile 0 (x_local 0) → 100·(0 − 2).
    expect(d[0]).toBeCloseTo(-200, 4);
    expect(d[6]).toBeCloseTo(200, 4); // x=6 only in tile 2 (x_local 4)
    for (let z = 0; z < 6; z++)
      for (let y = 0; y < 5; y++)
        for (let x = 0; x < 7; x++) {
          expect(d[(z * 5 + y) * 7 + x]).toBeCloseTo(d[x], 4);
        }
    const mid = onlyX.data[(2 * 5 + 2) * 7 + 3];
    expect(mid - 200).not.toBeCloseTo(0, 1); // the z/y part is not averaged away
  });

  it('blends tiles with the Gaussian: a net emitting its tile index matches a naive weighted average', async () => {
    const shape: [number, number, number, number] = [1, 1, 9, 12];
    const patch = [6, 8];
    let tile = 0;
    const idxNet: PredictTiles = async (_b, n) => {
      const out = new Float32Array(n * 48);
      for (let t = 0; t < n; t++) out.fill(tile++, t * 48, (t + 1) * 48);
      return out;
    };
    const res = await slidingWindowPredict(
      { data: new Float32Array(prod(shape)), shape },
      patch,
      1,
      idxNet,
      { tileBatch: 2 },
    );
    expect(tile).toBe(4); // y [0, 3] × x [0, 4]
    const g = computeGaussian(patch);
    const ys = [0, 3];
    const xs = [0, 4];
    for (let y = 0; y < 9; y++)
      for (let x = 0; x < 12; x++) {
        let num = 0;
        let den = 0;
        let t = 0;
        for (const oy of ys)
          for (const ox of xs) {
            if (y >= oy && y < oy + 6 && x >= ox && x < ox + 8) {
              const w = g[(y - oy) * 8 + x - ox];
              num += w * t;
              den += w;
            }
            t++;
          }
        expect(res.data[y * 12 + x]).toBeCloseTo(num / den, 4);
      }
  });

  it('fp16 accumulation: every value fp16, close to fp32 where the blend weight is not tiny', async () => {
    const shape: [number, number, number, number] = [1, 6, 9, 9];
    const patch = [4, 6, 6];
    const data = randomVolume(shape, 11);
    const net = pointwiseNet(1, 2, prod(patch));
    const a = await slidingWindowPredict({ data, shape }, patch, 2, net, {
      fp16Accumulation: true,
    });
    const b = await slidingWindowPredict({ data, shape }, patch, 2, net);
    for (const v of a.data) expect(roundToHalf(v)).toBe(v);
    // Volume corners are covered only by tile corners (weights ~1e-3 at σ = tile/8), where
    // fp16 products lose most digits — as in nnU-Net. The bulk stays within fp16 precision.
    const diffs = Array.from(a.data, (v, i) => Math.abs(v - b.data[i])).sort((x, y) => x - y);
    expect(diffs[Math.floor(diffs.length * 0.8)]).toBeLessThan(2e-3);
    expect(diffs[diffs.length - 1]).toBeGreaterThan(0);
  });

  it('reports progress per tile and honours an AbortSignal', async () => {
    const shape: [number, number, number, number] = [1, 8, 8, 8];
    const patch = [4, 4, 4]; // 3 positions per axis → 27 tiles
    const net = pointwiseNet(1, 1, 64);
    const seen: [number, number][] = [];
    await slidingWindowPredict({ data: new Float32Array(512), shape }, patch, 1, net, {
      tileBatch: 10,
      onProgress: (d, t) => seen.push([d, t]),
    });
    expect(seen).toEqual([
      [10, 27],
      [20, 27],
      [27, 27],
    ]);

    const ac = new AbortController();
    let calls = 0;
    const stopping: PredictTiles = async (b, n) => {
      if (++calls === 2) ac.abort();
      return net(b, n);
    };
    await expect(
      slidingWindowPredict({ data: new Float32Array(512), shape }, patch, 1, stopping, {
        tileBatch: 4,
        signal: ac.signal,
      }),
    ).rejects.toThrow(/abort/i);
    expect(calls).toBe(2);
    const pre = new AbortController();
    pre.abort();
    await expect(
      slidingWindowPredict({ data: new Float32Array(512), shape }, patch, 1, net, {
        signal: pre.signal,
      }),
    ).rejects.toThrow();
  });

  it('rejects a wrong-sized network output', async () => {
    const shape: [number, number, number, number] = [1, 4, 4, 4];
    await expect(
      slidingWindowPredict(
        { data: new Float32Array(64), shape },
        [4, 4, 4],
        2,
        async () => new Float32Array(64),
      ),
    ).rejects.toThrow(/expected/);
  });
});
