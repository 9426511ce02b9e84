// PlainConvUNet topology from an nnU-Net plan configuration (spec §6), and the list of its
// unique parameters with PyTorch state_dict names and shapes (spec §3.2: the aliases
// `…all_modules.*` and `decoder.encoder.*` are left out).

export type SpatialDims = 2 | 3;

/** The subset of a plans.json configuration that the network needs. */
export interface PlanConfigurationLike {
  architecture: {
    network_class_name?: string;
    arch_kwargs: {
      n_stages: number;
      features_per_stage: number[];
      conv_op?: string;
      kernel_sizes: number[][];
      strides: number[][];
      n_conv_per_stage: number[];
      n_conv_per_stage_decoder: number[];
      conv_bias: boolean;
      norm_op?: string | null;
      norm_op_kwargs?: { eps?: number; affine?: boolean } | null;
      dropout_op?: string | null;
      nonlin?: string | null;
      nonlin_kwargs?: { negative_slope?: number } | Record<string, unknown> | null;
    };
  };
}

export interface UNetArch {
  dims: SpatialDims;
  inputChannels: number;
  numClasses: number;
  nStages: number;
  features: number[];
  kernelSizes: number[][];
  strides: number[][];
  nConvPerStage: number[];
  nConvPerStageDecoder: number[];
  convBias: boolean;
  normEps: number;
  negativeSlope: number;
}

export function archFromPlan(
  config: PlanConfigurationLike,
  inputChannels: number,
  numClasses: number,
): UNetArch {
  const k = config.architecture.arch_kwargs;
  const name = config.architecture.network_class_name;
  if (name && !name.endsWith('PlainConvUNet')) throw new Error(`unsupported network ${name}`);
  if (k.dropout_op) throw new Error('dropout is not supported (nnU-Net default: none)');
  if (k.norm_op && !/InstanceNorm/.test(k.norm_op))
    throw new Error(`unsupported norm ${k.norm_op}`);
  if (k.norm_op_kwargs && k.norm_op_kwargs.affine === false)
    throw new Error('non-affine norm unsupported');
  if (k.nonlin && !/LeakyReLU/.test(k.nonlin)) throw new Error(`unsupported nonlin ${k.nonlin}`);
  const dims = k.kernel_sizes[0].length;
  if (dims !== 2 && dims !== 3) throw new Error(`unsupported dimensionality ${dims}`);
  if (k.conv_op && !k.conv_op.endsWith(`Conv${dims}d`))
    throw new Error(`conv_op ${k.conv_op} vs ${dims}-D kernels`);
  const slope = (k.nonlin_kwargs as { negative_slope?: number } | null)?.negative_slope;
  const arch: UNetArch = {
    dims,
    inputChannels,
    numClasses,
    nStages: k.n_stages,
    features: [...k.features_per_stage],
    kernelSizes: k.kernel_sizes.map((v) => [...v]),
    strides: k.strides.map((v) => [...v]),
    nConvPerStage: [...k.n_conv_per_stage],
    nConvPerStageDecoder: [...k.n_conv_per_stage_decoder],
    convBias: k.conv_bias,
    normEps: k.norm_op_kwargs?.eps ?? 1e-5,
    // nnU-Net passes only {inplace: true}, so torch's default slope 0.01 applies.
    negativeSlope: slope ?? 0.01,
  };
  validateArch(arch);
  return arch;
}

export function validateArch(a: UNetArch): void {
  const n = a.nStages;
  const lens: Array<[string, number, number]> = [
    ['features', a.features.length, n],
    ['kernelSizes', a.kernelSizes.length, n],
    ['strides', a.strides.length, n],
    ['nConvPerStage', a.nConvPerStage.length, n],
    ['nConvPerStageDecoder', a.nConvPerStageDecoder.length, n - 1],
  ];
  for (const [what, got, want] of lens) {
    if (got !== want) throw new Error(`${what}: ${got} entries, expected ${want}`);
  }
  if (n < 2) throw new Error('a U-Net needs at least 2 stages');
  for (const v of [...a.kernelSizes, ...a.strides]) {
    if (v.length !== a.dims) throw new Error(`kernel/stride ${v} is not ${a.dims}-D`);
  }
  if (a.nConvPerStage.some((c) => c < 1) || a.nConvPerStageDecoder.some((c) => c < 1)) {
    throw new Error('every stage needs at least one conv');
  }
}

export type ParamKind = 'conv' | 'convTranspose' | 'bias' | 'normWeight' | 'normBias';

export interface ParamSpec {
  name: string;
  /** PyTorch shape. */
  shape: number[];
  kind: ParamKind;
}

/** One ConvDropoutNormReLU block's parameters, in state_dict order. */
function blockParams(
  prefix: string,
  a: UNetArch,
  cin: number,
  cout: number,
  k: number[],
): ParamSpec[] {
  const out: ParamSpec[] = [
    { name: `${prefix}.conv.weight`, shape: [cout, cin, ...k], kind: 'conv' },
  ];
  if (a.convBias) out.push({ name: `${prefix}.conv.bias`, shape: [cout], kind: 'bias' });
  out.push({ name: `${prefix}.norm.weight`, shape: [cout], kind: 'normWeight' });
  out.push({ name: `${prefix}.norm.bias`, shape: [cout], kind: 'normBias' });
  return out;
}

/**
 * Unique parameters in PyTorch's state_dict order: encoder stages, then decoder stages,
 * transpconvs, seg_layers (the decoder's `encoder` alias would come first in PyTorch).
 */
export function paramSpecs(a: UNetArch): ParamSpec[] {
  const specs: ParamSpec[] = [];
  let cin = a.inputChannels;
  for (let s = 0; s < a.nStages; s++) {
    for (let c = 0; c < a.nConvPerStage[s]; c++) {
      const from = c === 0 ? cin : a.features[s];
      specs.push(
        ...blockParams(
          `encoder.stages.${s}.0.convs.${c}`,
          a,
          from,
          a.features[s],
          a.kernelSizes[s],
        ),
      );
    }
    cin = a.features[s];
  }
  const n = a.nStages;
  const tconv: ParamSpec[] = [];
  const seg: ParamSpec[] = [];
  for (let j = 0; j < n - 1; j++) {
    const below = a.features[n - 1 - j];
    const skip = a.features[n - 2 - j];
    const st = a.strides[n - 1 - j];
    tconv.push({
      name: `decoder.transpconvs.${j}.weight`,
      shape: [below, skip, ...st],
      kind: 'convTranspose',
    });
    if (a.convBias)
      tconv.push({ name: `decoder.transpconvs.${j}.bias`, shape: [skip], kind: 'bias' });
    for (let c = 0; c < a.nConvPerStageDecoder[j]; c++) {
      const from = c === 0 ? 2 * skip : skip;
      specs.push(
        ...blockParams(`decoder.stages.${j}.convs.${c}`, a, from, skip, a.kernelSizes[n - 2 - j]),
      );
    }
    const ones = new Array<number>(a.dims).fill(1);
    // Seg heads always carry a bias, whatever conv_bias says.
    seg.push({
      name: `decoder.seg_layers.${j}.weight`,
      shape: [a.numClasses, skip, ...ones],
      kind: 'conv',
    });
    seg.push({ name: `decoder.seg_layers.${j}.bias`, shape: [a.numClasses], kind: 'bias' });
  }
  return [...specs, ...tconv, ...seg];
}
