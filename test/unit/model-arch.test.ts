import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { archFromPlan, paramSpecs, type PlanConfigurationLike } from '../../src/model/arch.ts';
import { REFERENCE } from '../paths.ts';

function plan(dataset: string, config: string): PlanConfigurationLike {
  const p = JSON.parse(readFileSync(join(REFERENCE, 'plans', dataset, 'nnUNetPlans.json'), 'utf8'));
  return p.configurations[config];
}

// An independent model of how PyTorch names parameters: a module tree in registration order,
// with the same tensor objects reachable under several paths (ConvDropoutNormReLU.all_modules,
// UNetDecoder.encoder). state_dict() lists every path; named_parameters() keeps the first path
// of each tensor. The tree follows dynamic-network-architectures' constructors.
type Param = { shape: number[] };
type Mod = { params: Array<[string, Param]>; children: Array<[string, Mod]> };
const mod = (params: Array<[string, Param]> = [], children: Array<[string, Mod]> = []): Mod => ({
  params,
  children,
});

function convMod(cout: number, cin: number, k: number[], bias: boolean): Mod {
  const p: Array<[string, Param]> = [['weight', { shape: [cout, cin, ...k] }]];
  if (bias) p.push(['bias', { shape: [cout] }]);
  return mod(p);
}
function cdnr(cin: number, cout: number, k: number[]): Mod {
  const conv = convMod(cout, cin, k, true);
  const norm = mod([
    ['weight', { shape: [cout] }],
    ['bias', { shape: [cout] }],
  ]);
  const nonlin = mod();
  // self.conv, self.norm, self.nonlin, then self.all_modules = Sequential(conv, norm, nonlin)
  return mod(
    [],
    [
      ['conv', conv],
      ['norm', norm],
      ['nonlin', nonlin],
      [
        'all_modules',
        mod(
          [],
          [
            ['0', conv],
            ['1', norm],
            ['2', nonlin],
          ],
        ),
      ],
    ],
  );
}
function stacked(n: number, cin: number, cout: number, k: number[]): Mod {
  const convs: Array<[string, Mod]> = [];
  for (let i = 0; i < n; i++) convs.push([String(i), cdnr(i === 0 ? cin : cout, cout, k)]);
  return mod([], [['convs', mod([], convs)]]);
}
function torchLikeUNet(cfg: PlanConfigurationLike, cin: number, classes: number): Mod {
  const a = cfg.architecture.arch_kwargs;
  const stages: Array<[string, Mod]> = [];
  let c = cin;
  a.features_per_stage.forEach((f, s) => {
    stages.push([
      String(s),
      mod([], [['0', stacked(a.n_conv_per_stage![s], c, f, a.kernel_sizes[s])]]),
    ]);
    c = f;
  });
  const encoder = mod([], [['stages', mod([], stages)]]);
  const dst: Array<[string, Mod]> = [];
  const tcs: Array<[string, Mod]> = [];
  const segs: Array<[string, Mod]> = [];
  const F = a.features_per_stage;
  const n = F.length;
  for (let s = 1; s < n; s++) {
    const below = F[n - s];
    const skip = F[n - s - 1];
    const st = a.strides[n - s];
    // ConvTranspose weight is [in, out, ...k]
    tcs.push([
      String(s - 1),
      mod([
        ['weight', { shape: [below, skip, ...st] }],
        ['bias', { shape: [skip] }],
      ]),
    ]);
    dst.push([
      String(s - 1),
      stacked(a.n_conv_per_stage_decoder[s - 1], 2 * skip, skip, a.kernel_sizes[n - s - 1]),
    ]);
    segs.push([
      String(s - 1),
      convMod(
        classes,
        skip,
        st.map(() => 1),
        true,
      ),
    ]);
  }
  const decoder = mod(
    [],
    [
      ['encoder', encoder],
      ['stages', mod([], dst)],
      ['transpconvs', mod([], tcs)],
      ['seg_layers', mod([], segs)],
    ],
  );
  return mod(
    [],
    [
      ['encoder', encoder],
      ['decoder', decoder],
    ],
  );
}
function stateDict(m: Mod, prefix = ''): Array<[string, Param]> {
  const out: Array<[string, Param]> = m.params.map(([n, p]) => [prefix + n, p]);
  for (const [n, ch] of m.children) out.push(...stateDict(ch, `${prefix}${n}.`));
  return out;
}
function uniqueParams(m: Mod): Array<{ name: string; shape: number[] }> {
  const seen = new Set<Param>();
  const out: Array<{ name: string; shape: number[] }> = [];
  for (const [name, p] of stateDict(m)) {
    if (seen.has(p)) continue;
    seen.add(p);
    out.push({ name, shape: p.shape });
  }
  return out;
}
const count = (l: Array<{ shape: number[] }>) =>
  l.reduce((s, e) => s + e.shape.reduce((a, b) => a * b, 1), 0);

describe('PlainConvUNet parameter list', () => {
  it('the PyTorch-like model reproduces the spec: 6 stages → 292 state_dict keys, 108 unique', () => {
    const six: PlanConfigurationLike = {
      architecture: {
        arch_kwargs: {
          n_stages: 6,
          features_per_stage: [32, 64, 128, 256, 512, 512],
          kernel_sizes: Array(6).fill([3, 3]),
          strides: [[1, 1], ...Array(5).fill([2, 2])],
          n_conv_per_stage: Array(6).fill(2),
          n_conv_per_stage_decoder: Array(5).fill(2),
          conv_bias: true,
        },
      },
    };
    const m = torchLikeUNet(six, 1, 3);
    expect(stateDict(m).length).toBe(292);
    expect(uniqueParams(m).length).toBe(108);
    const ours = paramSpecs(archFromPlan(six, 1, 3));
    expect(ours.map((s) => [s.name, s.shape])).toEqual(
      uniqueParams(m).map((e) => [e.name, e.shape]),
    );
  });

  const cases: Array<[string, string, number, number, number]> = [
    // Literals from the arithmetic below (801 3d) or the same per-block formula.
    ['Dataset801_PhantomMR', '3d_fullres', 1, 3, 16_548_076],
    ['Dataset801_PhantomMR', '2d', 1, 3, 7_766_828],
    ['Dataset802_PhantomCTaniso', '3d_fullres', 1, 2, 16_100_552],
    ['Dataset802_PhantomCTaniso', '2d', 1, 2, 7_766_344],
  ];
  for (const [ds, cfg, cin, classes, total] of cases) {
    it(`${ds} ${cfg}: names, shapes and count match dynamic-network-architectures`, () => {
      const c = plan(ds, cfg);
      const ours = paramSpecs(archFromPlan(c, cin, classes));
      const want = uniqueParams(torchLikeUNet(c, cin, classes));
      expect(ours.map((s) => [s.name, s.shape])).toEqual(want.map((e) => [e.name, e.shape]));
      expect(ours.length).toBe(88); // 5 stages: 5·2·4 encoder + 4·(2 + 2·4 + 2) decoder
      expect(count(ours)).toBe(total);
      expect(count(want)).toBe(total);
    });
  }

  it('801 3d_fullres total, by hand', () => {
    // Block (cin→cout, k³=27): cout·cin·27 + cout (bias) + 2·cout (norm).
    // Encoder, F = 32, 64, 128, 256, 320, input 1 channel:
    //  s0: (32·1·27 + 96) + (32·32·27 + 96)     =     960 +   27744 =   28704
    //  s1: (64·32·27 + 192) + (64·64·27 + 192)  =   55488 +  110784 =  166272
    //  s2: (128·64·27 + 384) + (128·128·27 + 384)=  221568 +  442752 =  664320
    //  s3: (256·128·27 + 768) + (256·256·27 + 768)= 885504 + 1770240 = 2655744
    //  s4: (320·256·27 + 960) + (320·320·27 + 960)=2212800 + 2765760 = 4978560   → 8493600
    // Decoder level (below→F): transp below·F·8 + F; blocks (2F→F), (F→F); seg 3·F + 3:
    //  j0 320→256: 655616 + 3539712 + 1770240 + 771 = 5966339
    //  j1 256→128: 262272 +  885120 +  442752 + 387 = 1590531
    //  j2 128→64:   65600 +  221376 +  110784 + 195 =  397955
    //  j3  64→32:   16416 +   55392 +   27744 +  99 =   99651                    → 8054476
    expect(8493600 + 8054476).toBe(16_548_076);
    const ours = paramSpecs(archFromPlan(plan('Dataset801_PhantomMR', '3d_fullres'), 1, 3));
    const enc = ours.filter((s) => s.name.startsWith('encoder.'));
    expect(count(enc)).toBe(8_493_600);
  });

  it('802 3d_fullres keeps the anisotropic [1,3,3] kernels and [1,2,2] strides', () => {
    const ours = new Map(
      paramSpecs(archFromPlan(plan('Dataset802_PhantomCTaniso', '3d_fullres'), 1, 2)).map((s) => [
        s.name,
        s.shape,
      ]),
    );
    expect(ours.get('encoder.stages.0.0.convs.0.conv.weight')).toEqual([32, 1, 1, 3, 3]);
    expect(ours.get('encoder.stages.1.0.convs.1.conv.weight')).toEqual([64, 64, 1, 3, 3]);
    expect(ours.get('encoder.stages.2.0.convs.0.conv.weight')).toEqual([128, 64, 3, 3, 3]);
    expect(ours.get('decoder.transpconvs.0.weight')).toEqual([320, 256, 2, 2, 2]);
    expect(ours.get('decoder.transpconvs.3.weight')).toEqual([64, 32, 1, 2, 2]);
    expect(ours.get('decoder.stages.3.convs.0.conv.weight')).toEqual([32, 64, 1, 3, 3]);
    expect(ours.get('decoder.seg_layers.3.weight')).toEqual([2, 32, 1, 1, 1]);
  });

  it('archFromPlan reads the plan and rejects what it cannot build', () => {
    const c = plan('Dataset801_PhantomMR', '2d');
    const a = archFromPlan(c, 1, 3);
    expect(a).toMatchObject({
      dims: 2,
      nStages: 5,
      normEps: 1e-5,
      negativeSlope: 0.01,
      convBias: true,
    });
    const bad = structuredClone(c);
    bad.architecture.arch_kwargs.dropout_op = 'torch.nn.Dropout2d';
    expect(() => archFromPlan(bad, 1, 3)).toThrow(/dropout/);
    const short = structuredClone(c);
    short.architecture.arch_kwargs.strides.pop();
    expect(() => archFromPlan(short, 1, 3)).toThrow(/strides/);
  });
});
