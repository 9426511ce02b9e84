// The global model as quantised deltas (issue 18): relay and site advance the same reference by the
// same dequantised delta, error feedback keeps the gap to the exact global within one step, and a
// delta that does not fit what a site holds is refused rather than applied.
import { describe, expect, it } from 'vitest';
import {
  applyGlobalDelta,
  encodeGlobalDelta,
  INT8_BLOCK,
  modelChecksum,
} from '../../src/fed/global-delta.ts';
import { DecodeError } from '../../src/model/weights-codec.ts';
import type { NamedWeights } from '../../src/model/named-weights.ts';
import { randomArray } from '../../src/util/rng.ts';

const layout: Array<[string, number[]]> = [
  ['enc.w', [16, 8, 3, 3]], // 1152 values: two int8 blocks, the second partial
  ['enc.b', [16]],
  ['dec.w', [5, 7]],
];

function model(seed: number, amp = 1): NamedWeights {
  return new Map(
    layout.map(([name, shape], i) => [
      name,
      {
        shape,
        data: randomArray(
          shape.reduce((a, b) => a * b, 1),
          seed * 10 + i,
          -amp,
          amp,
        ),
      },
    ]),
  );
}

function plus(a: NamedWeights, b: NamedWeights): NamedWeights {
  return new Map(
    [...a].map(([k, t]) => [
      k,
      { shape: t.shape, data: t.data.map((v, i) => v + b.get(k)!.data[i]) },
    ]),
  );
}

function sameBits(a: NamedWeights, b: NamedWeights): boolean {
  return [...a].every(([k, t]) => {
    const u = b.get(k)!.data;
    return t.data.every((v, i) => Object.is(v, u[i]));
  });
}

describe('global model deltas', () => {
  for (const enc of ['fp16', 'int8'] as const) {
    it(`${enc}: the site's applied delta is bit-identical to the relay's next reference, close to the target`, () => {
      const ref = model(1);
      const target = plus(ref, model(2, 1e-2));
      const d = encodeGlobalDelta(target, ref, enc);
      const site = applyGlobalDelta(ref, d.entries, d.payload);
      expect(sameBits(site, d.next)).toBe(true);
      expect(modelChecksum(site)).toBe(modelChecksum(d.next));
      // Within half a quantisation step of the target (int8: the block max / 254; fp16: 2^-11 relative).
      for (const [k, t] of target) {
        const got = d.next.get(k)!.data;
        const max = t.data.reduce((m, v, i) => Math.max(m, Math.abs(v - ref.get(k)!.data[i])), 0);
        const tol = enc === 'int8' ? max / 254 + 1e-6 : max * 2 ** -11 + 1e-6;
        t.data.forEach((v, i) => expect(Math.abs(got[i] - v)).toBeLessThanOrEqual(tol));
      }
      // The reference is not modified; the payload is a quarter (int8) or half (fp16) of fp32.
      expect(sameBits(ref, model(1))).toBe(true);
      const values = layout.reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
      expect(d.payload.length / (4 * values)).toBeLessThan(enc === 'int8' ? 0.26 : 0.51);
    });
  }

  it('int8 with error feedback: the gap to the exact global stays within one step over many rounds, unlike quantising each increment', () => {
    let global = model(1);
    let ref = global; // what sites hold (the first round sends it whole)
    let naive = global; // no feedback: the quantised increment is all a site ever gets
    let worstFeedback = 0;
    for (let round = 0; round < 40; round++) {
      // A drifting global: a small step with a consistent bias, the shape of a training run.
      const step = model(100 + round, 1e-3);
      for (const t of step.values()) for (let i = 0; i < t.data.length; i++) t.data[i] += 4e-4;
      global = plus(global, step);
      const d = encodeGlobalDelta(global, ref, 'int8');
      ref = d.next;
      naive = encodeGlobalDelta(plus(naive, step), naive, 'int8').next;
      for (const [k, t] of global) {
        const r = ref.get(k)!.data;
        // One int8 step of this round's largest block delta bounds every coordinate's gap.
        let maxDelta = 0;
        for (let i = 0; i < t.data.length; i++)
          maxDelta = Math.max(maxDelta, Math.abs(t.data[i] - r[i]));
        worstFeedback = Math.max(worstFeedback, maxDelta);
      }
    }
    // Bounded by half a step of the per-round delta (~1.4e-3 / 254 ≈ 6e-6), not growing with rounds.
    expect(worstFeedback).toBeLessThan(1e-5);
    let naiveGap = 0;
    for (const [k, t] of global) {
      const r = naive.get(k)!.data;
      for (let i = 0; i < t.data.length; i++)
        naiveGap = Math.max(naiveGap, Math.abs(t.data[i] - r[i]));
    }
    expect(naiveGap).toBeGreaterThan(5 * worstFeedback);
  });

  it('a zero delta is all-zero blocks and leaves the model bit-identical', () => {
    const ref = model(3);
    const d = encodeGlobalDelta(ref, ref, 'int8');
    expect(sameBits(d.next, ref)).toBe(true);
    expect(modelChecksum(d.next)).toBe(modelChecksum(ref));
  });

  it('refuses a delta that does not fit the held model, is corrupted, or has a bad scale', () => {
    const ref = model(1);
    const d = encodeGlobalDelta(plus(ref, model(2, 1e-2)), ref, 'int8');
    // Another model layout.
    const other = new Map([...ref].slice(0, 2));
    expect(() => applyGlobalDelta(other, d.entries, d.payload)).toThrow(DecodeError);
    const reshaped = new Map(ref);
    reshaped.set('dec.w', { shape: [7, 5], data: ref.get('dec.w')!.data });
    expect(() => applyGlobalDelta(reshaped, d.entries, d.payload)).toThrow(/shape/);
    // A flipped byte.
    const bad = d.payload.slice();
    bad[d.entries[0].offset + 4 * 2 + 5] ^= 1;
    expect(() => applyGlobalDelta(ref, d.entries, bad)).toThrow(/checksum/);
    // Truncated, and a wrong byte count.
    expect(() => applyGlobalDelta(ref, d.entries, d.payload.subarray(0, 100))).toThrow(/truncated/);
    const wrongLen = d.entries.map((e, i) =>
      i === 1 ? { ...e, byteLength: e.byteLength + 1 } : e,
    );
    expect(() => applyGlobalDelta(ref, wrongLen, d.payload)).toThrow(/do not fit/);
    // fp32 is not a delta encoding.
    const fp32 = d.entries.map((e) => ({ ...e, encoding: 'fp32' as const }));
    expect(() => applyGlobalDelta(ref, fp32, d.payload)).toThrow(/not a delta encoding/);
    expect(INT8_BLOCK).toBeGreaterThan(0);
  });

  it('the checksum tells apart models that differ in one bit or in tensor names', () => {
    const a = model(1);
    const b = model(1);
    expect(modelChecksum(a)).toBe(modelChecksum(b));
    const u = new Uint32Array(b.get('enc.b')!.data.buffer);
    u[3] ^= 1;
    expect(modelChecksum(a)).not.toBe(modelChecksum(b));
    const renamed = new Map([...a].map(([k, t]) => [k === 'enc.b' ? 'enc.c' : k, t]));
    expect(modelChecksum(renamed)).not.toBe(modelChecksum(a));
  });
});
