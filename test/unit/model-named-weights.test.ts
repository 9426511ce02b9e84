import { describe, expect, it } from 'vitest';
import { invertPerm, paramCount, permute } from '../../src/model/named-weights.ts';

describe('named weights helpers', () => {
  it('permute moves axes like numpy.transpose, and invertPerm undoes it', () => {
    // shape [2, 3, 4], value = 100a + 10b + c
    const shape = [2, 3, 4];
    const data = new Float32Array(24);
    for (let a = 0; a < 2; a++)
      for (let b = 0; b < 3; b++)
        for (let c = 0; c < 4; c++) data[(a * 3 + b) * 4 + c] = 100 * a + 10 * b + c;
    const perm = [2, 0, 1];
    const p = permute(data, shape, perm);
    expect(p.shape).toEqual([4, 2, 3]);
    for (let c = 0; c < 4; c++)
      for (let a = 0; a < 2; a++)
        for (let b = 0; b < 3; b++) {
          expect(p.data[(c * 2 + a) * 3 + b]).toBe(100 * a + 10 * b + c);
        }
    const back = permute(p.data, p.shape, invertPerm(perm));
    expect(back.shape).toEqual(shape);
    expect(back.data).toEqual(data);
    expect(() => permute(data, [2, 3, 5], perm)).toThrow();
  });

  it('paramCount sums the elements', () => {
    const w = new Map([
      ['a', { shape: [2, 3], data: new Float32Array(6) }],
      ['b', { shape: [4], data: new Float32Array(4) }],
    ]);
    expect(paramCount(w)).toBe(10);
  });
});
