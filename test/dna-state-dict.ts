// The state_dict PyTorch would write for dynamic-network-architectures' PlainConvUNet and
// ResidualEncoderUNet, derived from the upstream module structure (architectures/unet.py,
// building_blocks/{simple_conv_blocks,plain_conv_encoder,residual,residual_encoders,unet_decoder}.py
// at d35f85c), for tests. Written independently of src/: no name or shape comes from arch.ts's
// paramSpecs or the exporter's alias list. Modules are registered in the order the upstream
// constructors assign them; a module registered twice is one object reached by two paths.
//
// torch's Module.state_dict walks _parameters (registration order), then _buffers, then each child
// in _modules order, with no memo, so a module reachable by two paths is written twice (the
// `…all_modules.N` Sequential holding the block's own conv/norm, the decoder's `encoder`).
// named_parameters() keeps the first path of each Parameter object: the unique tensors.

/** A Parameter: identity matters (aliases are the same object), shape is torch's. */
export class Param {
  constructor(readonly shape: number[]) {}
}

class Mod {
  readonly params: Array<[string, Param]> = [];
  readonly children: Array<[string, Mod]> = [];
  param(name: string, shape: number[]): this {
    this.params.push([name, new Param(shape)]);
    return this;
  }
  add(name: string, m: Mod): Mod {
    this.children.push([name, m]);
    return m;
  }
}

/** nn.Sequential / nn.ModuleList: children named 0, 1, …. */
function sequential(...mods: Mod[]): Mod {
  const s = new Mod();
  mods.forEach((m, i) => s.add(String(i), m));
  return s;
}

/** Parameterless modules (LeakyReLU, AvgPoolNd): they still take an index in a Sequential. */
const noParams = () => new Mod();

/** nn.ConvNd(cin, cout, k, bias): weight [cout, cin, ...k]. */
function conv(cin: number, cout: number, k: number[], bias: boolean): Mod {
  const m = new Mod().param('weight', [cout, cin, ...k]);
  return bias ? m.param('bias', [cout]) : m;
}

/** nn.ConvTransposeNd(cin, cout, k): weight [cin, cout, ...k]. */
function convTranspose(cin: number, cout: number, k: number[], bias: boolean): Mod {
  const m = new Mod().param('weight', [cin, cout, ...k]);
  return bias ? m.param('bias', [cout]) : m;
}

/** InstanceNormNd(c, affine=True): weight, bias; track_running_stats=False registers no buffers. */
const instanceNorm = (c: number) => new Mod().param('weight', [c]).param('bias', [c]);

/**
 * ConvDropoutNormReLU (no dropout): self.conv, self.norm, self.nonlin (when given), then
 * self.all_modules = Sequential(conv, norm[, nonlin]) holding the same module objects.
 */
function convDropoutNormReLU(
  cin: number,
  cout: number,
  k: number[],
  bias: boolean,
  nonlin: boolean,
): Mod {
  const m = new Mod();
  const ops = [m.add('conv', conv(cin, cout, k, bias)), m.add('norm', instanceNorm(cout))];
  if (nonlin) ops.push(m.add('nonlin', noParams()));
  m.add('all_modules', sequential(...ops));
  return m;
}

/** StackedConvBlocks: self.convs = Sequential of ConvDropoutNormReLU (cin → cout, then cout → cout). */
function stackedConvBlocks(n: number, cin: number, cout: number, k: number[], bias: boolean): Mod {
  const m = new Mod();
  const blocks = Array.from({ length: n }, (_, i) =>
    convDropoutNormReLU(i === 0 ? cin : cout, cout, k, bias, true),
  );
  m.add('convs', sequential(...blocks));
  return m;
}

/**
 * BasicBlockD: conv1 (with nonlin), conv2 (no nonlin), nonlin2, then self.skip = Sequential(
 * [AvgPool when strided], [ConvDropoutNormReLU 1×1 without bias or nonlin when the channels
 * change]) only when either is needed (else a lambda, not a module).
 */
function basicBlockD(cin: number, cout: number, k: number[], stride: number[], bias: boolean): Mod {
  const m = new Mod();
  m.add('conv1', convDropoutNormReLU(cin, cout, k, bias, true));
  m.add('conv2', convDropoutNormReLU(cout, cout, k, bias, false));
  m.add('nonlin2', noParams());
  const hasStride = stride.some((s) => s !== 1);
  const project = cin !== cout;
  if (hasStride || project) {
    const ops: Mod[] = [];
    if (hasStride) ops.push(noParams());
    if (project)
      ops.push(
        convDropoutNormReLU(
          cin,
          cout,
          k.map(() => 1),
          false,
          false,
        ),
      );
    m.add('skip', sequential(...ops));
  }
  return m;
}

/** The plans' arch_kwargs this needs (as nnU-Net writes them), plus channels and classes. */
export interface DnaArchKwargs {
  n_stages: number;
  features_per_stage: number[];
  kernel_sizes: number[][];
  strides: number[][];
  n_conv_per_stage?: number[];
  n_blocks_per_stage?: number[];
  n_conv_per_stage_decoder: number[];
  conv_bias: boolean;
  stem_channels?: number | null;
}

/** The upstream network as a module tree (PlainConvUNet or ResidualEncoderUNet, pool 'conv'). */
export function dnaNetwork(
  className: string,
  k: DnaArchKwargs,
  inputChannels: number,
  numClasses: number,
): Mod {
  const residual = className.endsWith('ResidualEncoderUNet');
  if (!residual && !className.endsWith('PlainConvUNet'))
    throw new Error(`not modelled: ${className}`);
  const net = new Mod();
  const encoder = net.add('encoder', new Mod());
  let cin = inputChannels;
  const stages: Mod[] = [];
  if (residual) {
    // ResidualEncoder: self.stem = StackedConvBlocks(1, …, stride 1), then self.stages
    const stem = k.stem_channels ?? k.features_per_stage[0];
    encoder.add('stem', stackedConvBlocks(1, cin, stem, k.kernel_sizes[0], k.conv_bias));
    cin = stem;
    for (let s = 0; s < k.n_stages; s++) {
      // StackedResidualBlocks: self.blocks = Sequential(BasicBlockD(stride), BasicBlockD(1), …)
      const f = k.features_per_stage[s];
      const blocks = Array.from({ length: k.n_blocks_per_stage![s] }, (_, b) =>
        basicBlockD(
          b === 0 ? cin : f,
          f,
          k.kernel_sizes[s],
          b === 0 ? k.strides[s] : k.strides[s].map(() => 1),
          k.conv_bias,
        ),
      );
      const stage = new Mod();
      stage.add('blocks', sequential(...blocks));
      stages.push(stage);
      cin = f;
    }
  } else {
    // PlainConvEncoder: each stage is Sequential(StackedConvBlocks) (no pooling module with 'conv')
    for (let s = 0; s < k.n_stages; s++) {
      const f = k.features_per_stage[s];
      stages.push(
        sequential(
          stackedConvBlocks(k.n_conv_per_stage![s], cin, f, k.kernel_sizes[s], k.conv_bias),
        ),
      );
      cin = f;
    }
  }
  encoder.add('stages', sequential(...stages));
  // UNetDecoder: self.encoder = encoder first, then stages, transpconvs, seg_layers (ModuleLists)
  const decoder = net.add('decoder', new Mod());
  decoder.add('encoder', encoder);
  const n = k.n_stages;
  const dStages: Mod[] = [];
  const tconvs: Mod[] = [];
  const segs: Mod[] = [];
  for (let s = 1; s < n; s++) {
    const below = k.features_per_stage[n - s];
    const skip = k.features_per_stage[n - s - 1];
    const stride = k.strides[n - s];
    tconvs.push(convTranspose(below, skip, stride, k.conv_bias));
    dStages.push(
      stackedConvBlocks(
        k.n_conv_per_stage_decoder[s - 1],
        2 * skip,
        skip,
        k.kernel_sizes[n - s - 1],
        k.conv_bias,
      ),
    );
    segs.push(
      conv(
        skip,
        numClasses,
        stride.map(() => 1),
        true,
      ),
    );
  }
  decoder.add('stages', sequential(...dStages));
  decoder.add('transpconvs', sequential(...tconvs));
  decoder.add('seg_layers', sequential(...segs));
  return net;
}

/** Module.state_dict(): every path to every parameter, in torch's order. */
export function stateDict(m: Mod, prefix = ''): Array<[key: string, p: Param]> {
  const out: Array<[string, Param]> = m.params.map(([n, p]) => [prefix + n, p]);
  for (const [n, c] of m.children) out.push(...stateDict(c, `${prefix}${n}.`));
  return out;
}

/** named_parameters(): the first path of each Parameter object, in torch's order. */
export function namedParameters(m: Mod): Array<[name: string, p: Param]> {
  const seen = new Set<Param>();
  return stateDict(m).filter(([, p]) => !seen.has(p) && seen.add(p));
}

/**
 * The state_dict as [key, shape, the named_parameters name it aliases (itself when unique)], for
 * the plans' architecture block.
 */
export function dnaStateDict(
  architecture: { network_class_name: string; arch_kwargs: DnaArchKwargs },
  inputChannels: number,
  numClasses: number,
): Array<[key: string, shape: number[], param: string]> {
  const net = dnaNetwork(
    architecture.network_class_name,
    architecture.arch_kwargs,
    inputChannels,
    numClasses,
  );
  const first = new Map<Param, string>();
  for (const [n, p] of namedParameters(net)) first.set(p, n);
  return stateDict(net).map(([key, p]) => [key, p.shape, first.get(p)!]);
}
