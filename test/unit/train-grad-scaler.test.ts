import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { GradScaler, unscaleAndCheck } from '../../src/train/grad-scaler.ts';

describe('GradScaler (torch.amp.GradScaler semantics)', () => {
  it('starts at 2^16 and backs off by half on every overflow, resetting the growth count', () => {
    const s = new GradScaler();
    expect(s.scale).toBe(65536);
    expect(s.update(false)).toBe(true);
    expect(s.update(false)).toBe(true);
    expect(s.state).toEqual({ scale: 65536, growthTracker: 2 });
    expect(s.update(true)).toBe(false); // step skipped
    expect(s.state).toEqual({ scale: 32768, growthTracker: 0 });
    expect(s.update(true)).toBe(false);
    expect(s.state).toEqual({ scale: 16384, growthTracker: 0 });
  });

  it('doubles after exactly 2000 consecutive finite steps, and not at 1999', () => {
    const s = new GradScaler();
    for (let i = 0; i < 1999; i++) expect(s.update(false)).toBe(true);
    expect(s.state).toEqual({ scale: 65536, growthTracker: 1999 });
    s.update(false);
    expect(s.state).toEqual({ scale: 131072, growthTracker: 0 });
    // An overflow at 1999 of the next run restarts the count from 0.
    for (let i = 0; i < 1999; i++) s.update(false);
    s.update(true);
    expect(s.state).toEqual({ scale: 65536, growthTracker: 0 });
    for (let i = 0; i < 1999; i++) s.update(false);
    expect(s.scale).toBe(65536);
    s.update(false);
    expect(s.scale).toBe(131072);
  });

  it('follows a hand-computed sequence with a short interval', () => {
    // interval 3: F F F → ×2; I → ×½; F F I → ×½; F F F → ×2
    const s = new GradScaler({ initScale: 8, growthInterval: 3 });
    const seq = [false, false, false, true, false, false, true, false, false, false];
    const scales = seq.map((inf) => (s.update(inf), s.scale));
    expect(scales).toEqual([8, 8, 16, 8, 8, 8, 4, 4, 4, 8]);
  });

  it('keeps the scale when growing would overflow fp32, and stays a power of two', () => {
    const s = new GradScaler({ initScale: 2 ** 127, growthInterval: 1 });
    s.update(false);
    expect(s.scale).toBe(2 ** 127);
    expect(s.invScale).toBe(2 ** -127);
  });

  it('rejects bad options and states with a clear error', () => {
    expect(() => new GradScaler({ initScale: 0 })).toThrow(/initScale/);
    expect(() => new GradScaler({ growthFactor: 1 })).toThrow(/growthFactor/);
    expect(() => new GradScaler({ backoffFactor: 1 })).toThrow(/backoffFactor/);
    expect(() => new GradScaler({ growthInterval: 0.5 })).toThrow(/growthInterval/);
    const s = new GradScaler();
    expect(() => (s.state = { scale: NaN, growthTracker: 0 })).toThrow(/scale/);
    expect(() => (s.state = { scale: 1, growthTracker: -1 })).toThrow(/growthTracker/);
    s.state = { scale: 1024, growthTracker: 7 };
    expect(s.state).toEqual({ scale: 1024, growthTracker: 7 });
  });
});

describe('unscaleAndCheck', () => {
  it('divides by the scale exactly; the probe is NaN when any element is NaN/Inf, else 0', async () => {
    await tf.setBackend('cpu');
    const ok = new Map<string, tf.Tensor>([
      ['a', tf.tensor1d([65536, -3 * 65536, 0.5])],
      ['b', tf.tensor2d([[1, 2]])],
    ]);
    const r = unscaleAndCheck(tf, ok, 2 ** -16);
    expect(Array.from(await r.grads.get('a')!.data())).toEqual([1, -3, 2 ** -17]);
    expect((await r.probe.data())[0]).toBe(0);
    for (const bad of [NaN, Infinity, -Infinity]) {
      const g = new Map<string, tf.Tensor>([
        ['a', tf.tensor1d([1, 2])],
        ['b', tf.tensor1d([5, bad, 1])],
      ]);
      const q = unscaleAndCheck(tf, g, 0.5);
      expect((await q.probe.data())[0], String(bad)).toBeNaN();
    }
  });
});
