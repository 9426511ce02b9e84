import { describe, expect, it } from 'vitest';
import {
  configureAugmentationGeometry,
  initialPatchSize,
} from '../../src/train/rotation-config.ts';

const deg = (d: number) => (d * Math.PI) / 180;

describe('rotation config and initial patch size (spec §7.5–7.6)', () => {
  it('3D (96,160,160) at ±30° → (191,257,219)', () => {
    expect(initialPatchSize([96, 160, 160], [-deg(30), deg(30)], false)).toEqual([191, 257, 219]);
    const g = configureAugmentationGeometry([96, 160, 160]);
    expect(g.dummy2d).toBe(false);
    expect(g.rotation[1]).toBeCloseTo(deg(30), 12);
    expect(g.mirrorAxes).toEqual([0, 1, 2]);
    expect(g.initialPatchSize).toEqual([191, 257, 219]);
  });

  it('2D (256,224) at ±180° → (301,301); elongated 2D patches rotate ±15°', () => {
    expect(initialPatchSize([256, 224], [-deg(180), deg(180)], false)).toEqual([301, 301]);
    const g = configureAugmentationGeometry([256, 224]);
    expect(g.rotation[1]).toBeCloseTo(Math.PI, 12);
    expect(g.mirrorAxes).toEqual([0, 1]);
    expect(g.initialPatchSize).toEqual([301, 301]);
    const e = configureAugmentationGeometry([512, 256]); // ratio 2 > 1.5
    expect(e.rotation[1]).toBeCloseTo(deg(15), 12);
    // 15°: x' = 512·cos15 + 256·sin15 = 560.81 → /0.85 → 659; y: max(256, |−512 sin15 + 256 cos15|=114.8) → 301
    expect(e.initialPatchSize).toEqual([659, 301]);
  });

  it('dummy-2D when max/patch[0] > 3: ±180°, axis 0 kept', () => {
    const g = configureAugmentationGeometry([20, 192, 160]); // 192/20 = 9.6
    expect(g.dummy2d).toBe(true);
    expect(g.rotation[1]).toBeCloseTo(Math.PI, 12);
    expect(g.initialPatchSize[0]).toBe(20);
    // rotation capped at 90°: in-plane entries become max over permutations of the patch / 0.85
    expect(g.initialPatchSize.slice(1)).toEqual([Math.trunc(192 / 0.85), Math.trunc(192 / 0.85)]);
    // exactly 3 is not anisotropic enough
    expect(configureAugmentationGeometry([64, 192, 192]).dummy2d).toBe(false);
  });
});
