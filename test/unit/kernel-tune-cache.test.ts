// The conv3d autotune's pure parts: the per-pass choice from timings, the cache key, and the
// Node cache file (src/node/tune-file.ts). The measuring itself runs on WebGPU in
// kernels-node.test.ts.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fastestChoice, fastestReduce, KERNEL_VERSION } from '../../src/model/kernels/autotune.ts';
import {
  PASS_VARIANTS,
  convVariants,
  parseConvVariant,
  setConvVariants,
} from '../../src/model/kernels/conv-variants.ts';
import { tuneKey } from '../../src/gpu/tune-store.ts';
import { defaultTuneFile, fileTuneStore } from '../../src/node/tune-file.ts';

describe('conv3d autotune', () => {
  it('picks the fastest variant per pass; a tie keeps the default (regblock)', () => {
    expect(
      fastestChoice({
        forward: { regblock: 10, tiled: 4 },
        dx: { regblock: 3, tiled: 9 },
        dw: { regblock: 5, tiled: 5 },
      }),
    ).toEqual({ forward: 'tiled', dx: 'regblock', dw: 'regblock' });
  });

  it("dw's subgroup variant wins where it measured fastest; a pass without a timing keeps the default", () => {
    expect(
      fastestChoice({
        forward: { regblock: 10, tiled: 4 },
        dx: { regblock: 3, tiled: 9 },
        dw: { regblock: 5, tiled: 4, subgroup: 2 },
      }),
    ).toEqual({ forward: 'tiled', dx: 'regblock', dw: 'subgroup' });
    // No `subgroups` on the device: the variant is not timed at all.
    expect(fastestChoice({ forward: {}, dx: { tiled: 1 }, dw: { regblock: 5, tiled: 6 } })).toEqual(
      { forward: 'regblock', dx: 'tiled', dw: 'regblock' },
    );
  });

  it('a variant name sets the passes that have it; a pass given one it lacks is refused', () => {
    const before = convVariants();
    try {
      expect(PASS_VARIANTS.dw).toContain('subgroup');
      expect(PASS_VARIANTS.forward).not.toContain('subgroup');
      setConvVariants('subgroup');
      expect(convVariants()).toEqual({ forward: 'regblock', dx: 'regblock', dw: 'subgroup' });
      setConvVariants('tiled');
      expect(convVariants()).toEqual({ forward: 'tiled', dx: 'tiled', dw: 'tiled' });
      expect(() => setConvVariants({ forward: 'subgroup' })).toThrow(/forward has no 'subgroup'/);
      expect(convVariants()).toEqual({ forward: 'tiled', dx: 'tiled', dw: 'tiled' });
    } finally {
      setConvVariants(before);
    }
  });

  it('picks the subgroup long sum only when it measured faster', () => {
    expect(fastestReduce({ serial: 5, subgroup: 2 })).toBe('subgroup');
    expect(fastestReduce({ serial: 2, subgroup: 5 })).toBe('serial');
    expect(fastestReduce({ serial: 3, subgroup: 3 })).toBe('serial');
    expect(fastestReduce({ serial: 3, subgroup: NaN })).toBe('serial');
    expect(fastestReduce(undefined)).toBe('serial');
  });

  it('keys the cache by every adapter field and the kernel version', () => {
    const a = { vendor: 'nvidia', architecture: 'hopper', device: 'H200', description: 'x' };
    const k = tuneKey(a, KERNEL_VERSION);
    for (const v of Object.values(a)) expect(k).toContain(v);
    expect(tuneKey({ ...a, device: 'H100' }, KERNEL_VERSION)).not.toBe(k);
    expect(tuneKey(a, KERNEL_VERSION + 1)).not.toBe(k);
  });

  it('refuses an unknown forced variant with the valid names', () => {
    expect(parseConvVariant('tiled')).toBe('tiled');
    expect(parseConvVariant('')).toBeUndefined();
    expect(parseConvVariant('subgroup')).toBe('subgroup');
    expect(() => parseConvVariant('warp')).toThrow(/regblock, tiled, subgroup, auto/);
  });

  it('Node cache file: missing or corrupt reads as empty, put then get round-trips, env overrides the path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tune-'));
    const path = join(dir, 'sub', 'kernel-tune.json');
    expect(defaultTuneFile({ FEDNNUNET_KERNEL_TUNE_CACHE: path })).toBe(path);
    expect(defaultTuneFile({ XDG_CACHE_HOME: dir })).toBe(
      join(dir, 'fednnunet', 'kernel-tune.json'),
    );
    const store = fileTuneStore(path);
    expect(await store.get('k')).toBeUndefined();
    const rec = {
      choice: { forward: 'tiled', dx: 'regblock', dw: 'tiled' },
      ms: { forward: { regblock: 2, tiled: 1 } },
      at: '2026-12-02T00:00:00Z',
    };
    await store.put('k', rec);
    await store.put('other', { ...rec, at: 'later' });
    expect(await fileTuneStore(path).get('k')).toEqual(rec);
    writeFileSync(path, '{not json');
    expect(await store.get('k')).toBeUndefined();
  });
});
