// The egress test's search for image windows inside payloads (test/browser/voxel-index.ts).
import { expect, it } from 'vitest';
import { VoxelIndex } from '../browser/voxel-index.ts';
it('finds windows at any offset', () => {
  const img = new Uint8Array(4096).map((_, i) => (i * 7919 + (i >> 3)) & 255);
  const ix = new VoxelIndex(64);
  ix.add(img);
  expect(ix.size).toBeGreaterThan(0); // repeated windows are indexed once
  const noise = new Uint8Array(1000).map((_, i) => (i * 31 + 5) % 251);
  expect(ix.find(noise)).toBe(-1);
  for (const off of [0, 1, 37, 500]) {
    const p = noise.slice();
    p.set(img.subarray(1000 + 13, 1000 + 13 + 130), off); // contains the window at 1024..1088
    expect(ix.find(p)).toBeGreaterThanOrEqual(0);
  }
  const p = noise.slice();
  p.set(img.subarray(1025, 1025 + 126), 100); // no whole stride window
  expect(ix.find(p)).toBe(-1);
  expect(ix.find(new Uint8Array(2000))).toBe(-1);
});
