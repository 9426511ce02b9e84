import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'fflate';
import { readNpy, writeNpy, type NpyArray } from '../../src/io/npy.ts';
import { REFERENCE } from '../paths.ts';

const PRE = `${REFERENCE}/preprocessed`;

describe('npy', () => {
  it('round-trips every supported dtype, plain and gzipped', () => {
    const arrays: NpyArray[] = [
      Float32Array.from([1.5, -2, 3e-8, 7, 8, 9]),
      Float64Array.from([Math.PI, -1, 0, 1e300, 5, 6]),
      Int8Array.from([-128, 127, 0, 1, 2, 3]),
      Uint8Array.from([0, 255, 1, 2, 3, 4]),
      Int16Array.from([-32768, 32767, 0, 1, 2, 3]),
      Uint16Array.from([65535, 0, 1, 2, 3, 4]),
      Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 0, 1, 2, 3]),
    ];
    for (const a of arrays) {
      for (const gzip of [false, true]) {
        const bytes = writeNpy(a, [2, 3], { gzip });
        if (!gzip) expect((bytes[8] | (bytes[9] << 8)) + 10 + a.byteLength).toBe(bytes.length);
        if (!gzip) expect(((bytes[8] | (bytes[9] << 8)) + 10) % 64).toBe(0);
        const r = readNpy(bytes);
        expect(r.shape).toEqual([2, 3]);
        expect(r.data.constructor).toBe(a.constructor);
        expect(Array.from(r.data)).toEqual(Array.from(a));
      }
    }
    expect(readNpy(writeNpy(Float32Array.of(4), [1])).shape).toEqual([1]);
    expect(readNpy(writeNpy(Float32Array.of(4), [])).shape).toEqual([]);
  });

  it('reads the reference arrays (shape, dtype, and the stored summary statistics)', () => {
    const props = JSON.parse(
      readFileSync(`${PRE}/Dataset801_PhantomMR/3d_fullres/mrA_000_properties.json`, 'utf8'),
    );
    const d = readNpy(readFileSync(`${PRE}/Dataset801_PhantomMR/3d_fullres/mrA_000_data.npy.gz`));
    const s = readNpy(readFileSync(`${PRE}/Dataset801_PhantomMR/3d_fullres/mrA_000_seg.npy.gz`));
    expect(d.descr).toBe('<f4');
    expect(s.descr).toBe('|i1');
    expect(d.shape).toEqual(props._reference_notes.data.shape);
    expect(s.shape).toEqual(props._reference_notes.seg.shape);
    let mn = Infinity,
      mx = -Infinity;
    for (const v of d.data) {
      mn = Math.min(mn, v);
      mx = Math.max(mx, v);
    }
    expect(mn).toBe(props._reference_notes.data.min);
    expect(mx).toBe(props._reference_notes.data.max);
    const counts: Record<string, number> = {};
    for (const v of s.data) counts[v] = (counts[v] ?? 0) + 1;
    expect(counts).toEqual(props._reference_notes.seg_value_counts);
  });

  it('gives clear errors', () => {
    const ok = writeNpy(Float32Array.of(1, 2, 3, 4), [4]);
    const patch = (from: string, to: string) => {
      const txt = new TextDecoder('latin1').decode(ok);
      return Uint8Array.from(txt.replace(from, to), (ch) => ch.charCodeAt(0));
    };
    expect(() => readNpy(patch("'fortran_order': False", "'fortran_order': True "))).toThrow(
      /fortran_order/,
    );
    expect(() => readNpy(patch("'<f4'", "'>f4'"))).toThrow(/unsupported dtype descr '>f4'/);
    expect(() => readNpy(ok.subarray(0, ok.length - 2))).toThrow(/truncated data/);
    expect(() => readNpy(gzipSync(ok.subarray(0, 20)))).toThrow(/truncated header/);
    expect(() => readNpy(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11))).toThrow(/bad magic/);
    expect(() => writeNpy(Float32Array.of(1, 2), [3])).toThrow(/does not match/);
  });
});
