import { describe, expect, it } from 'vitest';
import {
  argmaxChannels,
  linearResampleLogits,
  logitsToSegmentation,
  regionsToSegmentation,
  transpose3,
  type ResampleLogits,
} from '../../src/infer/export.ts';

const identity = { transposeForward: [0, 1, 2], transposeBackward: [0, 1, 2] };

describe('argmax and regions', () => {
  it('ties go to the lowest index, NaN wins as in numpy', () => {
    // (K=3, N=4): voxel 0 all equal → 0; voxel 1 tie between 1 and 2 → 1; voxel 2 → 2; voxel 3 NaN at k=1 → 1.
    const l = Float32Array.from([0, 0, 1, 5, /**/ 0, 2, 1, NaN, /**/ 0, 2, 3, 9]);
    expect(Array.from(argmaxChannels(l, 3, 4))).toEqual([0, 1, 2, 1]);
  });
  it('regions: later regions overwrite, sigmoid(x) > 0.5 strictly', () => {
    // regions_class_order [1, 2]: channel 0 → label 1, channel 1 → label 2.
    const l = Float32Array.from([1, 1, -1, 0, 1e-9, /**/ -1, 2, 3, 0, 0]);
    expect(Array.from(regionsToSegmentation(l, [1, 2], 5))).toEqual([1, 2, 2, 0, 0]);
  });
});

describe('transpose3', () => {
  it('matches numpy transpose', () => {
    // a = arange(24).reshape(2,3,4); a.transpose(2,0,1)[3,1,2] == a[1,2,3] == 23; [1,0,2] == a[0,2,1] == 9
    const a = Uint8Array.from({ length: 24 }, (_, i) => i);
    const t = transpose3(a, [2, 3, 4], [2, 0, 1]);
    expect(t.shape).toEqual([4, 2, 3]);
    expect(t.data[(3 * 2 + 1) * 3 + 2]).toBe(23);
    expect(t.data[(1 * 2 + 0) * 3 + 2]).toBe(9);
    // The inverse permutation restores the original.
    const back = transpose3(t.data, t.shape, [1, 2, 0]);
    expect(Array.from(back.data)).toEqual(Array.from(a));
  });
});

describe('logitsToSegmentation', () => {
  it('inserts the argmax into the bbox of a background array', () => {
    // Crop (1, 2, 2) at z 1, y [1,3), x [0,2) of a (3, 4, 3) image; K = 3.
    const logits = Float32Array.from([
      5,
      0,
      0,
      0, // k0
      0,
      5,
      0,
      1, // k1
      0,
      0,
      5,
      1, // k2 (voxel 3: tie 1 vs 2 → 1)
    ]);
    const seg = logitsToSegmentation(
      logits,
      [3, 1, 2, 2],
      {
        spacing: [1, 1, 1],
        shape_before_cropping: [3, 4, 3],
        bbox_used_for_cropping: [
          [1, 2],
          [1, 3],
          [0, 2],
        ],
        shape_after_cropping_and_before_resampling: [1, 2, 2],
      },
      { ...identity, configSpacing: [1, 1, 1] },
    );
    expect(seg.shape).toEqual([3, 4, 3]);
    expect(seg.data).toBeInstanceOf(Uint8Array);
    const expected = new Array(36).fill(0);
    expected[(1 * 4 + 1) * 3 + 0] = 0;
    expected[(1 * 4 + 1) * 3 + 1] = 1;
    expected[(1 * 4 + 2) * 3 + 0] = 2;
    expected[(1 * 4 + 2) * 3 + 1] = 1;
    expect(Array.from(seg.data)).toEqual(expected);
  });

  it('transposes back with transpose_backward and resamples with the target spacing', () => {
    // Original image (numpy order) shape (4, 2, 3) with spacing (2, 1, 3); transpose_forward [2, 0, 1]
    // puts it in the frame (3, 4, 2) with spacing (3, 2, 1); transpose_backward [1, 2, 0].
    // Logits come at a config spacing that halves axis 0: (1, 4, 2) → resample to (3, 4, 2).
    const calls: unknown[][] = [];
    const resample: ResampleLogits = (l, from, to, fs, ts) => {
      calls.push([from, to, fs, ts]);
      return linearResampleLogits(l, from, to, fs, ts);
    };
    // K = 2; label 1 where (y + x) odd in the transposed frame.
    const logits = new Float32Array(2 * 8);
    for (let y = 0; y < 4; y++)
      for (let x = 0; x < 2; x++) logits[8 + y * 2 + x] = (y + x) % 2 ? 1 : -1;
    const seg = logitsToSegmentation(
      logits,
      [2, 1, 4, 2],
      {
        spacing: [2, 1, 3],
        shape_before_cropping: [3, 4, 2],
        bbox_used_for_cropping: [
          [0, 3],
          [0, 4],
          [0, 2],
        ],
        shape_after_cropping_and_before_resampling: [3, 4, 2],
      },
      {
        configSpacing: [9, 2, 1],
        transposeForward: [2, 0, 1],
        transposeBackward: [1, 2, 0],
        resample,
      },
    );
    expect(calls).toEqual([
      [
        [2, 1, 4, 2],
        [3, 4, 2],
        [9, 2, 1],
        [3, 2, 1],
      ],
    ]);
    expect(seg.shape).toEqual([4, 2, 3]);
    // Transposed-frame voxel (a, b, c) = original (b, c, a): label = (b + c) % 2 for every a.
    for (let z = 0; z < 4; z++)
      for (let y = 0; y < 2; y++)
        for (let x = 0; x < 3; x++) {
          expect(seg.data[(z * 2 + y) * 3 + x]).toBe((z + y) % 2);
        }
  });

  it('2d: the current spacing of axis 0 is the case spacing (transposed)', () => {
    const spacings: number[][] = [];
    const resample: ResampleLogits = (l, from, to, fs) => {
      spacings.push([...fs]);
      return linearResampleLogits(l, from, to, fs, fs);
    };
    logitsToSegmentation(
      new Float32Array(2 * 2 * 3 * 3),
      [2, 2, 3, 3],
      {
        spacing: [5, 0.7, 0.8],
        shape_before_cropping: [2, 4, 4],
        bbox_used_for_cropping: [
          [0, 2],
          [0, 4],
          [0, 4],
        ],
        shape_after_cropping_and_before_resampling: [2, 4, 4],
      },
      { ...identity, configSpacing: [0.5, 0.5], resample },
    );
    expect(spacings).toEqual([[5, 0.5, 0.5]]);
  });

  it('uses uint16 when a label ≥ 255 is present, uint8 otherwise', () => {
    const props = {
      spacing: [1, 1, 1],
      shape_before_cropping: [1, 1, 2],
      bbox_used_for_cropping: [
        [0, 1],
        [0, 1],
        [0, 2],
      ] as [number, number][],
      shape_after_cropping_and_before_resampling: [1, 1, 2],
    };
    // Regions with a label 300: uint16.
    const r = logitsToSegmentation(Float32Array.from([1, -1]), [1, 1, 1, 2], props, {
      ...identity,
      configSpacing: [1, 1, 1],
      regionsClassOrder: [300],
    });
    expect(r.data).toBeInstanceOf(Uint16Array);
    expect(Array.from(r.data)).toEqual([300, 0]);
    const s = logitsToSegmentation(Float32Array.from([1, -1, 0, 0]), [2, 1, 1, 2], props, {
      ...identity,
      configSpacing: [1, 1, 1],
    });
    expect(s.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(s.data)).toEqual([0, 1]);
  });

  it('rejects a bbox that does not match the crop', () => {
    expect(() =>
      logitsToSegmentation(
        new Float32Array(4),
        [1, 1, 2, 2],
        {
          spacing: [1, 1, 1],
          shape_before_cropping: [2, 2, 2],
          bbox_used_for_cropping: [
            [0, 1],
            [0, 2],
            [1, 3],
          ],
          shape_after_cropping_and_before_resampling: [1, 2, 2],
        },
        { ...identity, configSpacing: [1, 1, 1] },
      ),
    ).toThrow(/bbox/);
  });
});

describe('linearResampleLogits (test stand-in)', () => {
  it('keeps constants, interpolates pixel centres, and is identity at equal shape', () => {
    const c = linearResampleLogits(
      new Float32Array(8).fill(3),
      [1, 2, 2, 2],
      [3, 5, 4],
      [1, 1, 1],
      [1, 1, 1],
    );
    expect(Array.from(c).every((v) => v === 3)).toBe(true);
    // 1-D ramp [0, 2] on x upsampled 2 → 4: centres at -0.25, 0.25, 0.75, 1.25 → clamp → 0, 0.5, 1.5, 2.
    const r = linearResampleLogits(
      Float32Array.from([0, 2]),
      [1, 1, 1, 2],
      [1, 1, 4],
      [1, 1, 1],
      [1, 1, 1],
    );
    expect(Array.from(r)).toEqual([0, 0.5, 1.5, 2]);
    const x = Float32Array.from([1, 2, 3, 4, 5, 6]);
    expect(
      Array.from(linearResampleLogits(x, [1, 1, 2, 3], [1, 2, 3], [1, 1, 1], [1, 1, 1])),
    ).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
