// U-Net topology from an nnU-Net plan configuration (spec §6): PlainConvUNet, or
// ResidualEncoderUNet (dynamic-network-architectures: a stem conv block, then per stage
// BasicBlockD residual blocks, the same UNetDecoder), and the list of its unique parameters with
// PyTorch state_dict names and shapes (spec §3.2: the aliases `…all_modules.*` and
// `decoder.encoder.*` are left out).

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
      n_conv_per_stage?: number[];
      /** ResidualEncoderUNet: BasicBlockD blocks per encoder stage. */
      n_blocks_per_stage?: number[];
      n_conv_per_stage_decoder: number[];
      /** ResidualEncoderUNet: stem width (default features_per_stage[0]). */
      stem_channels?: number | null;
      block?: string | null;
      bottleneck_channels?: unknown;
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
  /**
   * ResidualEncoderUNet's encoder (absent: PlainConvUNet). nConvPerStage then counts the convs of
   * each stage's main path (2 per BasicBlockD), for memory estimates only.
   */
  residual?: ResidualEncoderSpec;
}

export interface ResidualEncoderSpec {
  /** BasicBlockD blocks per stage (the first one of a stage carries the stride). */
  nBlocksPerStage: number[];
  /** Channels of the stem conv block (stride 1, kernel of stage 0). */
  stemChannels: number;
}

export const PLAIN_CONV_UNET = 'dynamic_network_architectures.architectures.unet.PlainConvUNet';
export const RESIDUAL_ENCODER_UNET =
  'dynamic_network_architectures.architectures.unet.ResidualEncoderUNet';

/** 'plain', 'residual' or null (a class that is not built here) for a plans network_class_name. */
export function networkKind(className: string | undefined): 'plain' | 'residual' | null {
  const short = (className ?? 'PlainConvUNet').split('.').pop();
  if (short === 'PlainConvUNet') return 'plain';
  if (short === 'ResidualEncoderUNet') return 'residual';
  return null;
}

export function archFromPlan(
  config: PlanConfigurationLike,
  inputChannels: number,
  numClasses: number,
): UNetArch {
  const k = config.architecture.arch_kwargs;
  const name = config.architecture.network_class_name;
  const kind = networkKind(name);
  if (!kind)
    throw new Error(
      `unsupported network ${name} (only PlainConvUNet and ResidualEncoderUNet are built here)`,
    );
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
  let residual: ResidualEncoderSpec | undefined;
  let nConvPerStage = k.n_conv_per_stage;
  if (kind === 'residual') {
    if (k.block && !/BasicBlockD$/.test(k.block))
      throw new Error(`ResidualEncoderUNet block ${k.block} is not supported (only BasicBlockD)`);
    if (k.bottleneck_channels != null)
      throw new Error('ResidualEncoderUNet bottleneck_channels are not supported');
    const blocks = k.n_blocks_per_stage;
    if (!Array.isArray(blocks))
      throw new Error('ResidualEncoderUNet needs arch_kwargs.n_blocks_per_stage (one per stage)');
    if (blocks.length !== k.n_stages)
      throw new Error(`n_blocks_per_stage: ${blocks.length} entries, expected ${k.n_stages}`);
    residual = {
      nBlocksPerStage: [...blocks],
      stemChannels: k.stem_channels ?? k.features_per_stage[0],
    };
    nConvPerStage = blocks.map((b) => 2 * b);
  } else if (!Array.isArray(nConvPerStage)) {
    throw new Error('PlainConvUNet needs arch_kwargs.n_conv_per_stage (one per stage)');
  }
  const arch: UNetArch = {
    dims,
    inputChannels,
    numClasses,
    nStages: k.n_stages,
    features: [...k.features_per_stage],
    kernelSizes: k.kernel_sizes.map((v) => [...v]),
    strides: k.strides.map((v) => [...v]),
    nConvPerStage: [...nConvPerStage],
    nConvPerStageDecoder: [...k.n_conv_per_stage_decoder],
    convBias: k.conv_bias,
    normEps: k.norm_op_kwargs?.eps ?? 1e-5,
    // nnU-Net passes only {inplace: true}, so torch's default slope 0.01 applies.
    negativeSlope: slope ?? 0.01,
  };
  if (residual) arch.residual = residual;
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
  const r = a.residual;
  if (r) {
    if (r.nBlocksPerStage.length !== n)
      throw new Error(`nBlocksPerStage: ${r.nBlocksPerStage.length} entries, expected ${n}`);
    if (r.nBlocksPerStage.some((b) => !Number.isInteger(b) || b < 1))
      throw new Error('every residual stage needs at least one block');
    if (!Number.isInteger(r.stemChannels) || r.stemChannels < 1)
      throw new Error(`bad stem channels ${r.stemChannels}`);
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

/** One ConvDropoutNormReLU without conv bias (BasicBlockD's 1×1 skip projection). */
function noBias(a: UNetArch): UNetArch {
  return { ...a, convBias: false };
}

/**
 * ResidualEncoder parameters in state_dict order: stem, then per stage and block conv1, conv2 and
 * the skip projection (`skip.1` after an avg-pool when the block strides, else `skip.0`), which
 * BasicBlockD registers after conv1, conv2.
 */
function residualEncoderParams(a: UNetArch, r: ResidualEncoderSpec): ParamSpec[] {
  const specs = blockParams(
    'encoder.stem.convs.0',
    a,
    a.inputChannels,
    r.stemChannels,
    a.kernelSizes[0],
  );
  let cin = r.stemChannels;
  const ones = new Array<number>(a.dims).fill(1);
  for (let s = 0; s < a.nStages; s++) {
    const f = a.features[s];
    for (let b = 0; b < r.nBlocksPerStage[s]; b++) {
      const p = `encoder.stages.${s}.blocks.${b}`;
      const from = b === 0 ? cin : f;
      specs.push(...blockParams(`${p}.conv1`, a, from, f, a.kernelSizes[s]));
      specs.push(...blockParams(`${p}.conv2`, a, f, f, a.kernelSizes[s]));
      const strided = b === 0 && a.strides[s].some((v) => v !== 1);
      if (from !== f) {
        specs.push(...blockParams(`${p}.skip.${strided ? 1 : 0}`, noBias(a), from, f, ones));
      }
    }
    cin = f;
  }
  return specs;
}

/** Whether BasicBlockD `b` of stage `s` has an avg-pool and/or a 1×1 projection on its skip. */
export function residualSkip(
  a: UNetArch,
  s: number,
  b: number,
): { pool: boolean; project: boolean; cin: number } {
  const r = a.residual!;
  const cin = b > 0 ? a.features[s] : s === 0 ? r.stemChannels : a.features[s - 1];
  return {
    pool: b === 0 && a.strides[s].some((v) => v !== 1),
    project: cin !== a.features[s],
    cin,
  };
}

/**
 * Unique parameters in PyTorch's state_dict order: encoder stages, then decoder stages,
 * transpconvs, seg_layers (the decoder's `encoder` alias would come first in PyTorch).
 */
export function paramSpecs(a: UNetArch): ParamSpec[] {
  const specs: ParamSpec[] = a.residual ? residualEncoderParams(a, a.residual) : [];
  let cin = a.inputChannels;
  for (let s = 0; s < a.nStages && !a.residual; s++) {
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
