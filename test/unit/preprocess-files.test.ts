import { describe, expect, it } from 'vitest';
import { compactJson, decodePreprocessed, encodePreprocessed } from '../../src/preprocess/files.ts';
import type { PreprocessedCase } from '../../src/preprocess/preprocess.ts';
import { mulberry32 } from '../../src/util/rng.ts';

describe('preprocessed case files', () => {
  it('round-trip bit-exact (int16 seg, region keys, empty class), with the affine as nibabel_stuff', () => {
    const r = mulberry32(3);
    const n = 2 * 3 * 4 * 5;
    const pc: PreprocessedCase = {
      data: Float32Array.from({ length: n }, () => (r() - 0.5) * 1e3),
      seg: Int16Array.from({ length: n / 2 }, () => Math.floor(r() * 300) - 1),
      shape: [2, 3, 4, 5],
      properties: {
        spacing: [1.2000000476837158, 0.800000011920929, 0.800000011920929],
        shape_before_cropping: [4, 6, 5],
        bbox_used_for_cropping: [
          [1, 4],
          [0, 4],
          [0, 5],
        ],
        shape_after_cropping_and_before_resampling: [3, 4, 5],
        class_locations: {
          '(1, 2)': Int32Array.of(0, 1, 2, 3, 0, 2, 3, 4),
          '3': new Int32Array(0),
        },
      },
    };
    const affine = [
      -0.800000011920929, 0, 0, 104.37999725341797, 0, -0.8, 0, -36.38, 0, 0, 4, -47.26, 0, 0, 0, 1,
    ];
    const files = encodePreprocessed(pc, { affine });
    const props = JSON.parse(files.properties);
    expect(props.class_locations).toEqual({
      '(1, 2)': [
        [0, 1, 2, 3],
        [0, 2, 3, 4],
      ],
      '3': [],
    });
    expect(props.nibabel_stuff.original_affine[0]).toEqual(affine.slice(0, 4));
    const back = decodePreprocessed(files);
    expect(back.shape).toEqual(pc.shape);
    expect(back.seg).toBeInstanceOf(Int16Array);
    expect(Array.from(back.data)).toEqual(Array.from(pc.data));
    expect(Array.from(back.seg)).toEqual(Array.from(pc.seg));
    expect(back.properties).toEqual(pc.properties);
  });

  it('rejects arrays of the wrong kind', () => {
    const pc: PreprocessedCase = {
      data: new Float32Array(8),
      seg: new Int8Array(8),
      shape: [1, 2, 2, 2],
      properties: {
        spacing: [1, 1, 1],
        shape_before_cropping: [2, 2, 2],
        bbox_used_for_cropping: [
          [0, 2],
          [0, 2],
          [0, 2],
        ],
        shape_after_cropping_and_before_resampling: [2, 2, 2],
      },
    };
    const f = encodePreprocessed(pc);
    expect(() => decodePreprocessed({ ...f, seg: f.data })).toThrow(/seg must be int8\/int16/);
    expect(() => decodePreprocessed({ ...f, data: f.seg })).toThrow(/data must be float32/);
  });

  it('compactJson keeps number lists on one line', () => {
    expect(
      compactJson({
        a: [
          [0, 1],
          [2, -3.5e-7],
        ],
        b: 'x',
      }),
    ).toBe('{\n "a": [\n  [0, 1],\n  [2, -3.5e-7]\n ],\n "b": "x"\n}');
  });
});
