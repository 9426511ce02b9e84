import { beforeAll, describe, expect, it } from 'vitest';
import { useBackend, tf } from '../../src/model/tf-backend.ts';
import type { UNetArch } from '../../src/model/arch.ts';
import { kaimingStd } from '../../src/model/init.ts';
import { invertPerm, permute } from '../../src/model/named-weights.ts';
import { PlainConvUNet, ptToTfPerm } from '../../src/model/unet.ts';
import { randomArray } from '../../src/util/rng.ts';
import { relL2 } from '../../src/util/compare.ts';
import { refUNet, type Img, type RefWeights } from './model-ref.ts';
import { prod } from '../../src/util/numeric.ts';

beforeAll(async () => {
  await useBackend('cpu');
});

function tiny(dims: 2 | 3, over: Partial<UNetArch> = {}): UNetArch {
  const k = new Array(dims).fill(3);
  const one = new Array(dims).fill(1);
  const two = new Array(dims).fill(2);
  return {
    dims,
    inputChannels: 1,
    numClasses: 3,
    nStages: 3,
    features: [4, 8, 16],
    kernelSizes: [k, k, k],
    strides: [one, two, two],
    nConvPerStage: [2, 2, 2],
    nConvPerStageDecoder: [2, 2],
    convBias: true,
    normEps: 1e-5,
    negativeSlope: 0.01,
    ...over,
  };
}

describe('PlainConvUNet forward', () => {
  it('3-D, 16³: deep-supervision heads at full and half resolution; DS off gives the full one', () => {
    const net = new PlainConvUNet(tiny(3), { seed: 1 });
    const x = tf.tensor(randomArray(2 * 16 ** 3, 2), [2, 16, 16, 16, 1]);
    expect(tf.tidy(() => net.forward(x).map((t) => t.shape))).toEqual([
      [2, 16, 16, 16, 3],
      [2, 8, 8, 8, 3],
    ]);
    net.deepSupervision = false;
    expect(tf.tidy(() => net.forward(x).map((t) => t.shape))).toEqual([[2, 16, 16, 16, 3]]);
    net.dispose();
  });

  it('2-D and anisotropic 3-D shapes; inputs not divisible by the strides are rejected', () => {
    const n2 = new PlainConvUNet(
      tiny(2, {
        nStages: 4,
        features: [4, 8, 16, 16],
        kernelSizes: Array(4).fill([3, 3]),
        strides: [
          [1, 1],
          [2, 2],
          [2, 2],
          [2, 2],
        ],
        nConvPerStage: [2, 2, 2, 2],
        nConvPerStageDecoder: [1, 2, 2],
      }),
    );
    const x2 = tf.zeros([1, 16, 24, 1]);
    expect(tf.tidy(() => n2.forward(x2).map((t) => t.shape))).toEqual([
      [1, 16, 24, 3],
      [1, 8, 12, 3],
      [1, 4, 6, 3],
    ]);
    expect(() => n2.forward(tf.zeros([1, 16, 20, 1]))).toThrow(/divisible/);
    const aniso = new PlainConvUNet(
      tiny(3, {
        kernelSizes: [
          [1, 3, 3],
          [1, 3, 3],
          [3, 3, 3],
        ],
        strides: [
          [1, 1, 1],
          [1, 2, 2],
          [2, 2, 2],
        ],
      }),
    );
    expect(tf.tidy(() => aniso.forward(tf.zeros([1, 4, 16, 12, 1])).map((t) => t.shape))).toEqual([
      [1, 4, 16, 12, 3],
      [1, 4, 8, 6, 3],
    ]);
    n2.dispose();
    aniso.dispose();
  });

  for (const [what, arch, xShape] of [
    ['3-D', tiny(3), [2, 8, 8, 8, 1]],
    [
      '3-D anisotropic',
      tiny(3, {
        kernelSizes: [
          [1, 3, 3],
          [3, 3, 3],
          [3, 3, 3],
        ],
        strides: [
          [1, 1, 1],
          [1, 2, 2],
          [2, 2, 2],
        ],
        inputChannels: 2,
      }),
      [1, 4, 8, 8, 2],
    ],
    ['2-D', tiny(2, { numClasses: 2 }), [2, 8, 12, 1]],
  ] as Array<[string, UNetArch, number[]]>) {
    it(`${what}: equals a float64 reference forward built from the exported PyTorch-layout weights`, async () => {
      const net = new PlainConvUNet(arch, { seed: 3 });
      // Non-trivial norm/bias values so that every parameter matters.
      const named = await net.namedWeights();
      for (const [name, t] of named) {
        if (name.endsWith('.bias')) t.data.set(randomArray(t.data.length, name.length, -0.2, 0.2));
        else if (name.endsWith('norm.weight'))
          t.data.set(randomArray(t.data.length, name.length + 100, 0.5, 1.5));
      }
      net.loadNamedWeights(named);
      const x = randomArray(prod(xShape), 4);
      const outs = tf.tidy(() => net.forward(tf.tensor(x, xShape)));
      const img: Img['shape'] = (
        xShape.length === 4 ? [xShape[0], 1, ...xShape.slice(1)] : xShape
      ) as Img['shape'];
      const ref = refUNet(named, arch, { data: x, shape: img });
      expect(outs.length).toBe(ref.length);
      for (let i = 0; i < outs.length; i++) {
        expect(prod(outs[i].shape)).toBe(ref[i].data.length);
        expect(relL2(await outs[i].data(), ref[i].data)).toBeLessThan(1e-5);
      }
      net.dispose();
    });
  }
});

describe('PlainConvUNet weights', () => {
  it('init: seeded, He-normal convs (torch fan_in), zero biases, unit norm weights', async () => {
    const a = await new PlainConvUNet(tiny(3), { seed: 7 }).namedWeights();
    const b = await new PlainConvUNet(tiny(3), { seed: 7 }).namedWeights();
    const c = await new PlainConvUNet(tiny(3), { seed: 8 }).namedWeights();
    const w = 'encoder.stages.2.0.convs.1.conv.weight';
    expect(a.get(w)!.data).toEqual(b.get(w)!.data);
    expect(a.get(w)!.data).not.toEqual(c.get(w)!.data);
    const std = (d: Float32Array) => Math.sqrt(d.reduce((s, v) => s + v * v, 0) / d.length);
    // conv [16, 16, 3, 3, 3]: fan_in 432 → std = sqrt(2 / 1.0001) / sqrt(432) ≈ 0.0680
    expect(kaimingStd([16, 16, 3, 3, 3])).toBeCloseTo(Math.sqrt(2 / 1.0001 / 432), 12);
    expect(std(a.get(w)!.data) / kaimingStd([16, 16, 3, 3, 3])).toBeGreaterThan(0.95);
    expect(std(a.get(w)!.data) / kaimingStd([16, 16, 3, 3, 3])).toBeLessThan(1.05);
    // ConvTranspose [16, 8, 2, 2, 2]: torch's fan_in is dim 1 · kernel = 8 · 8 = 64 → std ≈ 0.177
    const t = a.get('decoder.transpconvs.0.weight')!;
    expect(t.shape).toEqual([16, 8, 2, 2, 2]);
    expect(std(t.data) / Math.sqrt(2 / 1.0001 / 64)).toBeGreaterThan(0.9);
    expect(std(t.data) / Math.sqrt(2 / 1.0001 / 64)).toBeLessThan(1.1);
    expect([...a.get('decoder.transpconvs.0.bias')!.data].every((v) => v === 0)).toBe(true);
    expect([...a.get('encoder.stages.0.0.convs.0.norm.weight')!.data].every((v) => v === 1)).toBe(
      true,
    );
    expect([...a.get('decoder.seg_layers.1.bias')!.data].every((v) => v === 0)).toBe(true);
  });

  it('named weights round-trip; strict load rejects mismatches; non-strict loads the matching subset', async () => {
    const a = new PlainConvUNet(tiny(3), { seed: 1 });
    const b = new PlainConvUNet(tiny(3), { seed: 2 });
    const wa = await a.namedWeights();
    expect([...wa.keys()]).toEqual(a.specs.map((s) => s.name));
    expect(b.loadNamedWeights(wa).length).toBe(a.specs.length);
    const wb = await b.namedWeights();
    for (const [n, t] of wa) expect(wb.get(n)!.data).toEqual(t.data);
    const x = tf.tensor(randomArray(8 ** 3, 5), [1, 8, 8, 8, 1]);
    expect(relL2(await b.forward(x)[0].data(), await a.forward(x)[0].data())).toBe(0);

    // A deeper net (AsymFedAvg): same names where the topology agrees, other shapes elsewhere.
    const deep = new PlainConvUNet(
      tiny(3, {
        nStages: 4,
        features: [4, 8, 16, 32],
        kernelSizes: Array(4).fill([3, 3, 3]),
        strides: [
          [1, 1, 1],
          [2, 2, 2],
          [2, 2, 2],
          [2, 2, 2],
        ],
        nConvPerStage: [2, 2, 2, 2],
        nConvPerStageDecoder: [2, 2, 2],
      }),
    );
    expect(() => deep.loadNamedWeights(wa)).toThrow();
    const loaded = deep.loadNamedWeights(wa, { strict: false });
    expect(loaded).toContain('encoder.stages.2.0.convs.1.conv.weight');
    expect(loaded).not.toContain('decoder.transpconvs.0.weight'); // [32,16,…] vs [16,8,…]
    expect(loaded.length).toBeGreaterThan(20);
    const extra = new Map(wa);
    extra.set(
      'decoder.encoder.stages.0.0.convs.0.conv.weight',
      wa.get('encoder.stages.0.0.convs.0.conv.weight')!,
    );
    expect(() => a.loadNamedWeights(extra)).toThrow(/unexpected/);
    [a, b, deep].forEach((n) => n.dispose());
  });

  it('parameterCount counts the unique tensors', () => {
    const net = new PlainConvUNet(tiny(3));
    // enc: (108+12)+(432+12) + (864+24)+(1728+24) + (3456+48)+(6912+48) = 564 + 2640 + 10464 = 13668
    // dec j0: (16·8·8+8) + (8·16·27+24) + (8·8·27+24) + (3·8+3) = 1032 + 3480 + 1752 + 27 = 6291
    // dec j1: (8·4·8+4) + (4·8·27+12) + (4·4·27+12) + (3·4+3) = 260 + 876 + 444 + 15 = 1595
    expect(net.parameterCount()).toBe(13668 + 6291 + 1595);
    net.dispose();
  });
});

describe('PlainConvUNet gradients', () => {
  it('tf.variableGrads equals central differences of the float64 reference on a handful of parameters', async () => {
    const arch = tiny(3);
    const net = new PlainConvUNet(arch, { seed: 11 });
    const xShape: Img['shape'] = [2, 8, 8, 8, 1];
    const x = randomArray(prod(xShape), 12);
    const rs = [randomArray(2 * 8 ** 3 * 3, 13), randomArray(2 * 4 ** 3 * 3, 14)];
    const named = await net.namedWeights();
    const w64: RefWeights = new Map(
      [...named].map(([n, t]) => [n, { shape: t.shape, data: Float64Array.from(t.data) }]),
    );
    const loss64 = (w: RefWeights) =>
      refUNet(w, arch, { data: x, shape: xShape }).reduce((s, o, k) => {
        for (let i = 0; i < o.data.length; i++) s += o.data[i] * rs[k][i];
        return s;
      }, 0);

    const { grads } = tf.variableGrads(() => {
      const outs = net.forward(tf.tensor(x, xShape));
      return tf.addN(outs.map((o, k) => tf.sum(tf.mul(o, tf.tensor(rs[k], o.shape))))) as tf.Scalar;
    });
    const picks: Array<[string, number]> = [
      ['encoder.stages.0.0.convs.0.conv.weight', 5],
      ['encoder.stages.1.0.convs.1.conv.weight', 100],
      ['encoder.stages.1.0.convs.1.norm.weight', 2],
      ['encoder.stages.2.0.convs.0.norm.bias', 7],
      ['decoder.transpconvs.0.weight', 37],
      ['decoder.transpconvs.1.bias', 1],
      ['decoder.stages.0.convs.0.conv.weight', 500],
      ['decoder.stages.1.convs.1.norm.weight', 3],
      ['decoder.seg_layers.0.weight', 4],
      ['decoder.seg_layers.1.bias', 2],
    ];
    for (const [name, i] of picks) {
      const v = net.variable(name);
      const g = grads[v.name];
      const gPt = permute(
        (await g.data()) as Float32Array,
        g.shape,
        invertPerm(ptToTfPerm(named.get(name)!.shape.length)),
      );
      const h = 1e-6;
      const t = w64.get(name)!.data as Float64Array;
      const orig = t[i];
      t[i] = orig + h;
      const up = loss64(w64);
      t[i] = orig - h;
      const dn = loss64(w64);
      t[i] = orig;
      const fd = (up - dn) / (2 * h);
      expect(
        Math.abs(gPt.data[i] - fd),
        `${name}[${i}]: tfjs ${gPt.data[i]} vs fd ${fd}`,
      ).toBeLessThan(1e-3 * Math.max(1, Math.abs(fd)));
    }
    net.dispose();
  });
});
