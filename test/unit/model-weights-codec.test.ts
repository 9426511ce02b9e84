import { describe, expect, it } from 'vitest';
import { decodeWeights, encodeWeights } from '../../src/model/weights-codec.ts';
import type { NamedWeights } from '../../src/model/named-weights.ts';
import { randomArray } from '../../src/util/rng.ts';

const w: NamedWeights = new Map([
  [
    'encoder.stages.0.0.convs.0.conv.weight',
    { shape: [4, 1, 3, 3, 3], data: randomArray(108, 1, -0.3, 0.3) },
  ],
  ['encoder.stages.0.0.convs.0.norm.bias', { shape: [3], data: randomArray(3, 2) }], // odd byte length in fp16/int8
  ['zeros', { shape: [2], data: new Float32Array(2) }],
]);

describe('weight codec', () => {
  it('fp32 is exact', () => {
    const e = encodeWeights(w, 'fp32');
    const d = decodeWeights(e.entries, e.payload);
    for (const [k, t] of w) expect([...d.get(k)!.data]).toEqual([...t.data]);
  });
  it('fp16 halves the bytes with relative error ≤ 2^-11', () => {
    const e32 = encodeWeights(w, 'fp32');
    const e = encodeWeights(w, 'fp16');
    expect(e.entries.reduce((s, x) => s + x.byteLength, 0) * 2).toBe(
      e32.entries.reduce((s, x) => s + x.byteLength, 0),
    );
    const d = decodeWeights(e.entries, e.payload);
    for (const [k, t] of w)
      t.data.forEach((v, i) =>
        expect(Math.abs(d.get(k)!.data[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 1e-7),
      );
  });
  it('int8 quarters the bytes with error ≤ scale/2 per tensor', () => {
    const e = encodeWeights(w, 'int8');
    const d = decodeWeights(e.entries, e.payload);
    for (const entry of e.entries) {
      const t = w.get(entry.name)!;
      t.data.forEach((v, i) =>
        expect(Math.abs(d.get(entry.name)!.data[i] - v)).toBeLessThanOrEqual(
          entry.scale! / 2 + 1e-7,
        ),
      );
    }
    expect(e.entries[0].byteLength).toBe(108);
  });
  it('detects corruption, truncation and refuses NaN', () => {
    const e = encodeWeights(w, 'fp16');
    const bad = e.payload.slice();
    bad[5] ^= 0x40;
    expect(() => decodeWeights(e.entries, bad)).toThrow(/checksum/);
    expect(() => decodeWeights(e.entries, e.payload.subarray(0, 10))).toThrow(/truncated/);
    expect(() => decodeWeights([{ ...e.entries[0], shape: [5] }], e.payload)).toThrow(/do not fit/);
    const nan: NamedWeights = new Map([['x', { shape: [1], data: Float32Array.from([NaN]) }]]);
    expect(() => encodeWeights(nan)).toThrow(/NaN/);
  });
});
