// The relay's one-pass path for plain updates (issue 18): checked and decoded straight from the wire
// bytes into the running sum. It must give exactly what decoding, validating and adding gave, and
// refuse every bad update before anything reaches the sum.
import * as zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import {
  l2Norm,
  RobustMean,
  StreamingMean,
  UpdateRejected,
  validateUpdate,
  type UpdateAggregator,
} from '../../src/fed/aggregate.ts';
import { checkEncodedUpdate } from '../../src/fed/encoded-update.ts';
import {
  decodeWeights,
  encodeWeights,
  type EncodedWeights,
  type Encoding,
} from '../../src/model/weights-codec.ts';
import { specOf, type NamedWeights } from '../../src/model/named-weights.ts';
import { crc32, crc32Js, setCrc32Impl } from '../../src/util/crc32.ts';
import { randomArray } from '../../src/util/rng.ts';

const layout: Array<[string, number[]]> = [
  ['enc.w', [8, 3, 3, 3]],
  ['enc.b', [8]],
  ['seg.w', [3, 8]],
  ['odd', [7]],
  // Longer than the check's and the batched add's block (16 Ki values): a bad value or byte past
  // the first block must be caught too.
  ['big', [20011]],
];
function weights(seed: number, amp = 1): NamedWeights {
  return new Map(
    layout.map(([name, shape], i) => [
      name,
      {
        shape,
        data: randomArray(
          shape.reduce((a, b) => a * b, 1),
          seed * 100 + i,
          -amp,
          amp,
        ),
      },
    ]),
  );
}
const spec = specOf(weights(1));

function sameBits(a: NamedWeights, b: NamedWeights): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [name, t] of a) {
    const u = b.get(name)!.data;
    expect(u.length).toBe(t.data.length);
    for (let i = 0; i < u.length; i++)
      if (!Object.is(u[i], t.data[i])) throw new Error(`'${name}'[${i}]: ${u[i]} vs ${t.data[i]}`);
  }
}

/** The update with value `index` of tensor `name` overwritten in its encoded bytes, its CRC made to match. */
function poke(
  u: EncodedWeights,
  name: string,
  index: number,
  write: (view: DataView, at: number) => void,
): EncodedWeights {
  const payload = u.payload.slice();
  const entries = u.entries.map((e) => ({ ...e, shape: [...e.shape] }));
  const e = entries.find((x) => x.name === name)!;
  const size = { fp32: 4, fp16: 2, int8: 1 }[e.encoding];
  write(new DataView(payload.buffer), e.offset + index * size);
  e.crc32 = crc32(payload.subarray(e.offset, e.offset + e.byteLength));
  return { entries, payload };
}

describe('checkEncodedUpdate + addChecked', () => {
  for (const enc of ['fp32', 'fp16', 'int8'] as Encoding[]) {
    it(`${enc}: the same norm and bit-for-bit the same mean as decode + validate + add, weighted and clipped`, () => {
      const fused = new StreamingMean(spec);
      const decoded = new StreamingMean(spec);
      const robustF = new RobustMean(spec, 'trimmed-mean', 4);
      const robustD = new RobustMean(spec, 'trimmed-mean', 4);
      for (let s = 0; s < 4; s++) {
        const u = encodeWeights(weights(s + 1, 0.1 * (s + 1)), enc);
        const w = decodeWeights(u.entries, u.payload);
        validateUpdate(w, spec);
        const c = checkEncodedUpdate(u.entries, u.payload, spec);
        // Four running sums instead of one: the same norm up to float64 rounding.
        expect(Math.abs(c.norm - l2Norm(w))).toBeLessThanOrEqual(1e-12 * l2Norm(w));
        const scale = c.norm > 2 ? 2 / c.norm : 1;
        fused.addChecked(c, s + 1, scale);
        decoded.add(w, s + 1, scale);
        robustF.addChecked(c, 1, scale);
        robustD.add(w, 1, scale);
      }
      sameBits(decoded.result(), fused.result());
      sameBits(robustD.result(), robustF.result());
    });
  }

  it('batched adds (any batch size, mixed encodings, add() in between) give the bits of adding one at a time', () => {
    const encs: Encoding[] = ['fp16', 'int8', 'fp32', 'fp16', 'int8', 'fp16', 'fp32'];
    // Magnitudes 1e-3..1e3 and factors with full 53-bit mantissas, so the float64 sums round and a
    // different order of adding would change their bits.
    const us = encs.map((enc, s) => encodeWeights(weights(s + 7, 10 ** (s - 3)), enc));
    const w = (s: number) => 1 + 0.37 * s;
    const c = (s: number) => 0.3 + 0.1 * s;
    const one = new StreamingMean(spec);
    us.forEach((u, s) => one.add(decodeWeights(u.entries, u.payload), w(s), c(s)));
    const want = one.result();
    for (const batch of [1, 2, 3, 4, 5, 8]) {
      const mean = new StreamingMean(spec, batch);
      us.forEach((u, s) => {
        // Every third update through add(): the held ones must reach the sums before it.
        if (s % 3 === 2) mean.add(decodeWeights(u.entries, u.payload), w(s), c(s));
        else mean.addChecked(checkEncodedUpdate(u.entries, u.payload, spec), w(s), c(s));
      });
      expect(mean.contributors).toBe(us.length);
      sameBits(want, mean.result());
      mean.release();
    }
    expect(() => new StreamingMean(spec, 0)).toThrow(/positive integer/);
  });

  it('keeps the order of adds within a batch (cancellation makes a different order visible)', () => {
    // small, then +big and −big with a weight of 1e15: adding the small one first loses it in the
    // float64 sum, adding it last keeps it, so the mean tells the order apart.
    const big = weights(10);
    const neg: NamedWeights = new Map(
      [...big].map(([n, t]) => [n, { shape: t.shape, data: t.data.map((x) => -x) }]),
    );
    const seq: Array<[EncodedWeights, number]> = [
      [encodeWeights(weights(9, 1e-3), 'fp32'), 1],
      [encodeWeights(big, 'fp32'), 1e15],
      [encodeWeights(neg, 'fp32'), 1e15],
    ];
    const inOrder = (list: Array<[EncodedWeights, number]>) => {
      const m = new StreamingMean(spec);
      for (const [u, w] of list) m.add(decodeWeights(u.entries, u.payload), w);
      return m.result();
    };
    const want = inOrder(seq);
    const reversed = inOrder([...seq].reverse());
    expect([...want.get('big')!.data].some((x, i) => x !== reversed.get('big')!.data[i])).toBe(
      true,
    );
    for (const batch of [1, 2, 3, 4]) {
      const mean = new StreamingMean(spec, batch);
      for (const [u, w] of seq) mean.addChecked(checkEncodedUpdate(u.entries, u.payload, spec), w);
      sameBits(want, mean.result());
      // ±big held, then the small one through add(): it must come after them, as given.
      const mixed = new StreamingMean(spec, batch);
      for (const [u, w] of seq.slice(1))
        mixed.addChecked(checkEncodedUpdate(u.entries, u.payload, spec), w);
      mixed.add(decodeWeights(seq[0][0].entries, seq[0][0].payload), 1);
      sameBits(inOrder([seq[1], seq[2], seq[0]]), mixed.result());
    }
  });

  it('refuses a weight or scale that is not a positive number, before holding anything', () => {
    const u = encodeWeights(weights(2), 'fp16');
    const c = checkEncodedUpdate(u.entries, u.payload, spec);
    const mean = new StreamingMean(spec);
    expect(() => mean.addChecked(c, 0)).toThrow(/weight must be a positive number/);
    expect(() => mean.addChecked(c, 1, NaN)).toThrow(/scale must be a positive number/);
    expect(mean.contributors).toBe(0);
    expect(() => mean.result()).toThrow(/no update/);
  });

  it('reads a payload that sits at an odd offset of a frame (unaligned views are copied)', () => {
    const u = encodeWeights(weights(3), 'fp32');
    const frame = new Uint8Array(u.payload.length + 3);
    frame.set(u.payload, 3);
    const a = new StreamingMean(spec);
    a.addChecked(checkEncodedUpdate(u.entries, frame.subarray(3), spec));
    const b = new StreamingMean(spec);
    b.add(decodeWeights(u.entries, u.payload));
    sameBits(b.result(), a.result());
  });
});

describe('a refused update leaves the running mean untouched', () => {
  const good = [encodeWeights(weights(1), 'fp16'), encodeWeights(weights(2), 'int8')];
  const reference = new StreamingMean(spec);
  for (const u of good) reference.add(decodeWeights(u.entries, u.payload));
  const fp32 = encodeWeights(weights(5), 'fp32');
  const fp16 = encodeWeights(weights(5), 'fp16');
  const int8 = encodeWeights(weights(5), 'int8');
  const flipped = fp16.payload.slice();
  flipped[fp16.entries[2].offset + 1] ^= 0x10;
  const withEntry = (u: EncodedWeights, i: number, change: object): EncodedWeights => ({
    payload: u.payload,
    entries: u.entries.map((e, k) => (k === i ? { ...e, ...change } : e)),
  });
  const bad: Array<[string, EncodedWeights, RegExp]> = [
    ['a corrupted byte (CRC-32)', { entries: fp16.entries, payload: flipped }, /checksum mismatch/],
    ['NaN in fp32', poke(fp32, 'seg.w', 5, (v, at) => v.setFloat32(at, NaN, true)), /NaN or Inf/],
    [
      '+Inf in fp32',
      poke(fp32, 'odd', 6, (v, at) => v.setFloat32(at, Infinity, true)),
      /NaN or Inf/,
    ],
    ['NaN in fp16', poke(fp16, 'enc.b', 0, (v, at) => v.setUint16(at, 0x7e00, true)), /NaN or Inf/],
    [
      'NaN in fp16 past the first check block',
      poke(fp16, 'big', 17003, (v, at) => v.setUint16(at, 0x7e00, true)),
      /'big' contains NaN or Inf/,
    ],
    [
      '-Inf in fp32 at the last value of a long tensor',
      poke(fp32, 'big', 20010, (v, at) => v.setFloat32(at, -Infinity, true)),
      /'big' contains NaN or Inf/,
    ],
    [
      'a corrupted byte past the first check block',
      (() => {
        const p = fp16.payload.slice();
        p[fp16.entries[4].offset + 2 * 18000] ^= 0x01;
        return { entries: fp16.entries, payload: p };
      })(),
      /'big': checksum mismatch/,
    ],
    [
      '-Inf in fp16',
      poke(fp16, 'enc.w', 100, (v, at) => v.setUint16(at, 0xfc00, true)),
      /NaN or Inf/,
    ],
    [
      'an int8 scale whose values overflow float32',
      withEntry(int8, 1, { scale: 3e38 }),
      /NaN or Inf/,
    ],
    [
      'an int8 scale that is not a positive number',
      withEntry(int8, 0, { scale: -1 }),
      /valid scale/,
    ],
    [
      'a byte length that does not fit the shape',
      withEntry(fp16, 3, { byteLength: 12 }),
      /do not fit/,
    ],
    [
      'a shape other than the spec',
      withEntry(fp16, 2, { shape: [8, 3], byteLength: 48 }),
      /expected \[3,8\]/,
    ],
    [
      'a truncated payload',
      { entries: fp16.entries, payload: fp16.payload.subarray(0, fp16.payload.length - 8) },
      /truncated/,
    ],
    [
      'a missing tensor',
      { entries: fp16.entries.slice(1), payload: fp16.payload },
      /expected 5 tensors/,
    ],
    [
      'a tensor twice',
      { entries: [...fp16.entries.slice(0, 3), { ...fp16.entries[0] }], payload: fp16.payload },
      /appears twice/,
    ],
    ['a tensor the spec lacks', withEntry(fp16, 1, { name: 'other' }), /missing tensor 'enc.b'/],
  ];
  for (const [what, u, reason] of bad) {
    it(`${what}: refused, and the mean of the accepted updates is unchanged`, () => {
      // batch 1: the first update is already in the sums when the bad one comes; batch 4: it is
      // still held. Either way nothing accepted may be lost.
      for (const mean of [
        new StreamingMean(spec, 1),
        new StreamingMean(spec, 4),
        new RobustMean(spec, 'median', 3),
      ] as UpdateAggregator[]) {
        const offer = (x: EncodedWeights): void =>
          mean.addChecked(checkEncodedUpdate(x.entries, x.payload, spec));
        offer(good[0]);
        expect(() => offer(u)).toThrow(UpdateRejected);
        expect(() => offer(u)).toThrow(reason);
        offer(good[1]);
        expect(mean.contributors).toBe(2);
        if (mean instanceof StreamingMean) sameBits(reference.result(), mean.result());
      }
    });
  }
});

describe('CRC-32', () => {
  afterEach(() => setCrc32Impl(undefined));
  const bytes = new Uint8Array(1037).map((_, i) => (i * 2654435761) >>> 13);
  // The byte-wise definition the slice-by-8 must match.
  function reference(b: Uint8Array, seed = 0): number {
    let c = ~seed;
    for (const x of b) {
      c ^= x;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    return ~c >>> 0;
  }

  it('slice-by-8 JS equals the byte-wise definition and zlib, at every length and alignment, with a seed', () => {
    expect(crc32Js(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    for (let start = 0; start < 8; start++) {
      for (const n of [0, 1, 7, 8, 9, 15, 16, 17, 100, 1029]) {
        const b = bytes.subarray(start, start + n);
        expect(crc32Js(b)).toBe(reference(b));
        expect(crc32Js(b, 0x1234abcd)).toBe(reference(b, 0x1234abcd));
        expect(crc32Js(b)).toBe(zlib.crc32(b));
      }
    }
    expect(crc32Js(bytes.subarray(500), crc32Js(bytes.subarray(0, 500)))).toBe(crc32Js(bytes));
  });

  it('an installed implementation is used, and undefined restores the JS one', () => {
    setCrc32Impl(() => 42);
    expect(crc32(bytes)).toBe(42);
    setCrc32Impl(undefined);
    expect(crc32(bytes)).toBe(reference(bytes));
  });
});
