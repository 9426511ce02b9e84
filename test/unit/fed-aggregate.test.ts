import { describe, expect, it } from 'vitest';
import {
  addDelta,
  applyShared,
  l2Norm,
  pick,
  sharedSpec,
  StreamingMean,
  subtract,
  UpdateRejected,
  validateUpdate,
} from '../../src/fed/aggregate.ts';
import { specOf, type NamedWeights } from '../../src/model/named-weights.ts';
import { randomArray } from '../../src/util/rng.ts';

function weights(entries: Array<[string, number[]]>, seed: number): NamedWeights {
  return new Map(
    entries.map(([name, shape], i) => [
      name,
      {
        shape,
        data: randomArray(
          shape.reduce((a, b) => a * b, 1),
          seed * 100 + i,
        ),
      },
    ]),
  );
}

describe('AsymFedAvg key matching', () => {
  it('keeps only names present at every site with an identical shape', () => {
    const a = specOf(
      weights(
        [
          ['enc.0.w', [8, 1, 3, 3, 3]],
          ['enc.1.w', [16, 8, 3, 3, 3]],
          ['seg.w', [3, 8, 1, 1, 1]],
        ],
        1,
      ),
    );
    const b = specOf(
      weights(
        [
          ['enc.0.w', [8, 1, 1, 3, 3]],
          ['enc.1.w', [16, 8, 3, 3, 3]],
          ['seg.w', [3, 8, 1, 1, 1]],
          ['enc.2.w', [32, 16, 3, 3, 3]],
        ],
        2,
      ),
    );
    const c = specOf(
      weights(
        [
          ['enc.1.w', [16, 8, 3, 3, 3]],
          ['seg.w', [3, 8, 1, 1, 1]],
        ],
        3,
      ),
    );
    expect(sharedSpec([a, b, c]).map((e) => e.name)).toEqual(['enc.1.w', 'seg.w']);
    expect(sharedSpec([a, b]).map((e) => e.name)).toEqual(['enc.1.w', 'seg.w']);
    expect(sharedSpec([a]).length).toBe(3);
    expect(sharedSpec([])).toEqual([]);
  });
});

describe('StreamingMean', () => {
  const layout: Array<[string, number[]]> = [
    ['a', [4, 3]],
    ['b', [5]],
  ];
  const sites = [weights(layout, 1), weights(layout, 2), weights(layout, 3)];
  const spec = specOf(sites[0]);

  it('uniform weighting equals the element-wise mean of the stack (FednnU-Net)', () => {
    const m = new StreamingMean(spec);
    for (const s of sites) m.add(s);
    const r = m.result();
    for (const [name, t] of r) {
      for (let i = 0; i < t.data.length; i++) {
        const ref =
          (sites[0].get(name)!.data[i] +
            sites[1].get(name)!.data[i] +
            sites[2].get(name)!.data[i]) /
          3;
        expect(t.data[i]).toBeCloseTo(ref, 6);
      }
    }
    expect(m.contributors).toBe(3);
  });

  it('case weighting gives sum(n_k v_k) / sum(n_k)', () => {
    const m = new StreamingMean(spec);
    [5, 4, 1].forEach((n, k) => m.add(sites[k], n));
    const t = m.result().get('b')!;
    const ref =
      (5 * sites[0].get('b')!.data[2] +
        4 * sites[1].get('b')!.data[2] +
        sites[2].get('b')!.data[2]) /
      10;
    expect(t.data[2]).toBeCloseTo(ref, 6);
  });

  it('averaging deltas against the global and adding them back equals averaging the weights', () => {
    const global = weights(layout, 9);
    const direct = new StreamingMean(spec);
    const viaDelta = new StreamingMean(spec);
    for (const s of sites) {
      direct.add(s);
      viaDelta.add(subtract(s, global));
    }
    const a = direct.result();
    const b = addDelta(global, viaDelta.result());
    for (const [name, t] of a)
      t.data.forEach((v, i) => expect(b.get(name)!.data[i]).toBeCloseTo(v, 5));
  });

  it('rejects NaN, wrong shapes, missing or extra tensors, and bad weights', () => {
    const m = new StreamingMean(spec);
    const nan = weights(layout, 4);
    nan.get('a')!.data[3] = NaN;
    expect(() => m.add(nan)).toThrow(/NaN/);
    const wrong = weights(
      [
        ['a', [3, 4]],
        ['b', [5]],
      ],
      5,
    );
    expect(() => m.add(wrong)).toThrow(/shape/);
    expect(() => validateUpdate(weights([['a', [4, 3]]], 6), spec)).toThrow(UpdateRejected);
    expect(() =>
      validateUpdate(
        weights(
          [
            ['a', [4, 3]],
            ['c', [5]],
          ],
          6,
        ),
        spec,
      ),
    ).toThrow(/missing tensor 'b'/);
    expect(() => m.add(sites[0], 0)).toThrow(/weight/);
    expect(() => m.result()).toThrow(/no update/);
  });
});

describe('applying the aggregate at a site', () => {
  it('overwrites shared keys and keeps local ones untouched', () => {
    const local = weights(
      [
        ['shared', [2, 2]],
        ['mine', [3]],
      ],
      1,
    );
    const before = Float32Array.from(local.get('mine')!.data);
    const agg = weights([['shared', [2, 2]]], 2);
    const r = applyShared(local, agg);
    expect(r).toEqual({ replaced: ['shared'], kept: ['mine'] });
    expect([...local.get('shared')!.data]).toEqual([...agg.get('shared')!.data]);
    expect([...local.get('mine')!.data]).toEqual([...before]);
    expect(pick(local, [{ name: 'mine', shape: [3] }]).size).toBe(1);
    expect(l2Norm(new Map([['x', { shape: [2], data: Float32Array.from([3, 4]) }]]))).toBe(5);
  });
});
