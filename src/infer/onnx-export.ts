// PlainConvUNet → ONNX bytes (spec §6, inference form: deep supervision off), built directly
// with onnx-proto, no PyTorch involved.
//
// Graph: input `input` [N, C, (D,) H, W] float32 (NCDHW, PyTorch/ONNX layout; N and the spatial
// sizes are symbolic), output `logits` [N, K, (D,) H, W] from the highest-resolution seg head.
// Ops (opset 17): Conv (pads (k−1)//2 on both sides, the plan's stride), InstanceNormalization
// (eps from the plan, 1e-5), LeakyRelu (0.01), Concat (upsampled first, then the skip), Add, and
// for the transposed convs Shape/Concat/Mul/Reshape/Transpose on int64 shape tensors.
//
// Transposed conv. nnU-Net's ConvTranspose has kernel = stride s and no padding, so output
// blocks do not overlap: out[n, o, d·sd+a, h·sh+b, w·sw+c] = bias[o] + Σ_i x[n, i, d, h, w]·W[i, o, a, b, c].
// ORT-web's WebGPU EP has no 3-D ConvTranspose, so it is exported as
//   1. a 1×1(×1) Conv to O·∏s channels, channel index ((o·sd + a)·sh + b)·sw + c, no bias;
//   2. depth-to-space: Reshape to [N, O, sd, sh, sw, D, H, W], Transpose to
//      [N, O, D, sd, H, sh, W, sw], Reshape to [N, O, D·sd, H·sh, W·sw];
//   3. Add of the bias, shaped [O, 1, 1, 1] to broadcast over the channel axis.
// 2-D configurations use the same construction (one axis fewer).
//
// Initializer names. Every tensor that feeds a node keeps its nnU-Net state_dict name, shape and
// values, except the transposed convs':
//   decoder.transpconvs.{j}.weight.pointwise  [O·∏s, I, 1, 1(, 1)] — W permuted [I, O, ...s] → [O, ...s, I]
//   decoder.transpconvs.{j}.bias              [O, 1, 1(, 1)]       — the same values as [O]
// and the int64 shape constants `decoder.transpconvs.{j}.d2s.*`. Seg heads other than the
// highest-resolution one are not used without deep supervision and are not exported.
// The architecture (UNetArch JSON) is stored in the model's metadata_props under `fednnunet.arch`,
// so a session knows its channels, classes and dimensionality, and readOnnxWeights can undo the
// rearrangement.
import onnxProto from 'onnx-proto';
import { residualSkip, type UNetArch } from '../model/arch.ts';
import { permute, type NamedWeights } from '../model/named-weights.ts';
import { prod } from '../util/numeric.ts';
import type { PlainConvUNet } from '../model/unet.ts';
import { errorMessage } from '../util/errors.ts';

const { onnx } = onnxProto;
type INodeProto = onnxProto.onnx.INodeProto;
type ITensorProto = onnxProto.onnx.ITensorProto;
type IAttributeProto = onnxProto.onnx.IAttributeProto;

export const ONNX_OPSET = 17;
/** IR version 8 goes with opsets up to 18 (ONNX 1.10–1.13). */
export const ONNX_IR_VERSION = 8;
export const ONNX_INPUT = 'input';
export const ONNX_OUTPUT = 'logits';
export const ARCH_METADATA_KEY = 'fednnunet.arch';

export interface OnnxExportOptions {
  /** Value of ModelProto.doc_string. */
  docString?: string;
  /** Extra metadata_props (string values). */
  metadata?: Record<string, string>;
}

/** Name of the pointwise-conv form of transposed conv j's weight. */
export function pointwiseWeightName(j: number): string {
  return `decoder.transpconvs.${j}.weight.pointwise`;
}

/**
 * Transposed-conv weight [I, O, ...s] (PyTorch layout) → the 1×1 conv weight [O·∏s, I, 1, ...]
 * whose output channel ((o·sd + a)·sh + b)·sw + c holds W[:, o, a, b, c].
 */
export function transposedToPointwise(
  w: Float32Array,
  shape: readonly number[],
): { data: Float32Array; shape: number[] } {
  const [cin, cout, ...s] = shape;
  const perm = [1, ...s.map((_, i) => i + 2), 0]; // [O, ...s, I]
  const p = permute(w, shape, perm);
  return { data: p.data, shape: [cout * prod(s), cin, ...s.map(() => 1)] };
}

/** Inverse of transposedToPointwise, given the stride. */
export function pointwiseToTransposed(
  w: Float32Array,
  shape: readonly number[],
  stride: readonly number[],
): { data: Float32Array; shape: number[] } {
  const [cs, cin] = shape;
  const cout = cs / prod(stride);
  const mid = [cout, ...stride, cin];
  const perm = [mid.length - 1, 0, ...stride.map((_, i) => i + 1)]; // [I, O, ...s]
  return permute(w, mid, perm);
}

function floatTensor(name: string, shape: readonly number[], data: Float32Array): ITensorProto {
  if (prod(shape) !== data.length)
    throw new Error(`tensor ${name}: ${data.length} values for shape ${shape}`);
  // Raw data is little-endian by the ONNX spec; every platform we run on is little-endian.
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  return { name, dims: [...shape], dataType: onnx.TensorProto.DataType.FLOAT, rawData: bytes };
}

function int64Tensor(name: string, values: readonly number[]): ITensorProto {
  const b = BigInt64Array.from(values.map((v) => BigInt(v)));
  return {
    name,
    dims: [values.length],
    dataType: onnx.TensorProto.DataType.INT64,
    rawData: new Uint8Array(b.buffer),
  };
}

const ints = (name: string, v: readonly number[]): IAttributeProto => ({
  name,
  ints: [...v],
  type: onnx.AttributeProto.AttributeType.INTS,
});
const int = (name: string, v: number): IAttributeProto => ({
  name,
  i: v,
  type: onnx.AttributeProto.AttributeType.INT,
});
const float = (name: string, v: number): IAttributeProto => ({
  name,
  f: v,
  type: onnx.AttributeProto.AttributeType.FLOAT,
});

class GraphBuilder {
  readonly nodes: INodeProto[] = [];
  readonly initializers: ITensorProto[] = [];

  node(
    opType: string,
    inputs: string[],
    output: string,
    attribute: IAttributeProto[] = [],
  ): string {
    this.nodes.push({ opType, input: inputs, output: [output], name: output, attribute });
    return output;
  }

  init(t: ITensorProto): string {
    this.initializers.push(t);
    return t.name as string;
  }
}

/**
 * Builds the ONNX model from an architecture and PyTorch-layout weights (names as paramSpecs).
 * Throws if a needed weight is missing or misshapen.
 */
export function buildOnnxModel(
  arch: UNetArch,
  weights: NamedWeights,
  opts: OnnxExportOptions = {},
): Uint8Array {
  const a = arch;
  const dims = a.dims;
  const n = a.nStages;
  const g = new GraphBuilder();
  const used = new Set<string>();
  const param = (name: string, shape?: readonly number[]): string => {
    const w = weights.get(name);
    if (!w) throw new Error(`onnx export: missing weight '${name}'`);
    if (prod(w.shape) !== w.data.length)
      throw new Error(`onnx export: '${name}' has ${w.data.length} values for shape ${w.shape}`);
    if (!used.has(name)) {
      used.add(name);
      g.init(floatTensor(name, shape ?? w.shape, w.data));
    }
    return name;
  };

  const block = (
    x: string,
    prefix: string,
    kernel: number[],
    stride: number[],
    o: { bias?: boolean; act?: boolean } = {},
  ): string => {
    const inputs = [x, param(`${prefix}.conv.weight`)];
    if (o.bias ?? a.convBias) inputs.push(param(`${prefix}.conv.bias`));
    const pads = kernel.map((k) => Math.floor((k - 1) / 2));
    const conv = g.node('Conv', inputs, `${prefix}.conv`, [
      ints('kernel_shape', kernel),
      ints('strides', stride),
      ints('pads', [...pads, ...pads]),
      ints(
        'dilations',
        kernel.map(() => 1),
      ),
      int('group', 1),
    ]);
    const norm = g.node(
      'InstanceNormalization',
      [conv, param(`${prefix}.norm.weight`), param(`${prefix}.norm.bias`)],
      `${prefix}.norm`,
      [float('epsilon', a.normEps)],
    );
    if (o.act === false) return norm;
    return g.node('LeakyRelu', [norm], `${prefix}.nonlin`, [float('alpha', a.negativeSlope)]);
  };

  const ones = new Array<number>(dims).fill(1);
  let h = ONNX_INPUT;
  const skips: string[] = [];
  if (a.residual) {
    // ResidualEncoderUNet: stem, then BasicBlockD blocks (see src/model/unet.ts)
    h = block(h, 'encoder.stem.convs.0', a.kernelSizes[0], ones);
    for (let s = 0; s < n; s++) {
      for (let b = 0; b < a.residual.nBlocksPerStage[s]; b++) {
        const p = `encoder.stages.${s}.blocks.${b}`;
        const { pool, project } = residualSkip(a, s, b);
        let res = h;
        if (pool) {
          const st = a.strides[s];
          res = g.node('AveragePool', [res], `${p}.skip.0`, [
            ints('kernel_shape', st),
            ints('strides', st),
            ints(
              'pads',
              [...st, ...st].map(() => 0),
            ),
          ]);
        }
        if (project) {
          res = block(res, `${p}.skip.${pool ? 1 : 0}`, ones, ones, { bias: false, act: false });
        }
        const y1 = block(h, `${p}.conv1`, a.kernelSizes[s], b === 0 ? a.strides[s] : ones);
        const y2 = block(y1, `${p}.conv2`, a.kernelSizes[s], ones, { act: false });
        const sum = g.node('Add', [y2, res], `${p}.add`);
        h = g.node('LeakyRelu', [sum], `${p}.nonlin2`, [float('alpha', a.negativeSlope)]);
      }
      skips.push(h);
    }
  }
  for (let s = 0; s < n && !a.residual; s++) {
    for (let c = 0; c < a.nConvPerStage[s]; c++) {
      h = block(
        h,
        `encoder.stages.${s}.0.convs.${c}`,
        a.kernelSizes[s],
        c === 0 ? a.strides[s] : ones,
      );
    }
    skips.push(h);
  }

  let lres = skips[n - 1];
  for (let j = 0; j < n - 1; j++) {
    const st = a.strides[n - 1 - j];
    const cout = a.features[n - 2 - j];
    const p = `decoder.transpconvs.${j}`;
    const tw = weights.get(`${p}.weight`);
    if (!tw) throw new Error(`onnx export: missing weight '${p}.weight'`);
    const pw = transposedToPointwise(tw.data, tw.shape);
    g.init(floatTensor(pointwiseWeightName(j), pw.shape, pw.data));
    const y = g.node('Conv', [lres, pointwiseWeightName(j)], `${p}.pointwise`, [
      ints('kernel_shape', ones),
      ints('strides', ones),
      ints(
        'pads',
        [...ones, ...ones].map(() => 0),
      ),
      ints('dilations', ones),
      int('group', 1),
    ]);
    // Depth-to-space with symbolic sizes: Reshape's 0 copies N; spatial sizes come from Shape.
    const sp = g.node('Shape', [lres], `${p}.d2s.in_spatial`, [int('start', 2)]);
    const head1 = g.init(int64Tensor(`${p}.d2s.split_head`, [0, cout, ...st]));
    const shape1 = g.node('Concat', [head1, sp], `${p}.d2s.split_shape`, [int('axis', 0)]);
    const split = g.node('Reshape', [y, shape1], `${p}.d2s.split`);
    // [N, O, s_0..s_{d-1}, X_0..X_{d-1}] → [N, O, X_0, s_0, X_1, s_1, ...]
    const perm = [0, 1];
    for (let i = 0; i < dims; i++) perm.push(2 + dims + i, 2 + i);
    const tr = g.node('Transpose', [split], `${p}.d2s.interleave`, [ints('perm', perm)]);
    const up = g.node(
      'Mul',
      [sp, g.init(int64Tensor(`${p}.d2s.stride`, st))],
      `${p}.d2s.out_spatial`,
    );
    const shape2 = g.node(
      'Concat',
      [g.init(int64Tensor(`${p}.d2s.merge_head`, [0, cout])), up],
      `${p}.d2s.merge_shape`,
      [int('axis', 0)],
    );
    let upsampled = g.node('Reshape', [tr, shape2], `${p}.d2s`);
    if (a.convBias) {
      upsampled = g.node('Add', [upsampled, param(`${p}.bias`, [cout, ...ones])], p);
    }
    let x = g.node('Concat', [upsampled, skips[n - 2 - j]], `decoder.stages.${j}.concat`, [
      int('axis', 1),
    ]);
    for (let c = 0; c < a.nConvPerStageDecoder[j]; c++) {
      x = block(x, `decoder.stages.${j}.convs.${c}`, a.kernelSizes[n - 2 - j], ones);
    }
    lres = x;
  }
  const last = n - 2;
  g.node(
    'Conv',
    [lres, param(`decoder.seg_layers.${last}.weight`), param(`decoder.seg_layers.${last}.bias`)],
    ONNX_OUTPUT,
    [
      ints('kernel_shape', ones),
      ints('strides', ones),
      ints(
        'pads',
        [...ones, ...ones].map(() => 0),
      ),
      ints('dilations', ones),
      int('group', 1),
    ],
  );

  const spatialNames = dims === 3 ? ['D', 'H', 'W'] : ['H', 'W'];
  const valueInfo = (name: string, ch: number) => ({
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: {
          dim: [{ dimParam: 'N' }, { dimValue: ch }, ...spatialNames.map((d) => ({ dimParam: d }))],
        },
      },
    },
  });
  const model = onnx.ModelProto.create({
    irVersion: ONNX_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'fednnunet-web',
    producerVersion: '1',
    docString:
      opts.docString ??
      `nnU-Net ${a.residual ? 'ResidualEncoderUNet' : 'PlainConvUNet'} (deep supervision off)`,
    graph: {
      name: a.residual ? 'ResidualEncoderUNet' : 'PlainConvUNet',
      node: g.nodes,
      initializer: g.initializers,
      input: [valueInfo(ONNX_INPUT, a.inputChannels)],
      output: [valueInfo(ONNX_OUTPUT, a.numClasses)],
    },
    metadataProps: [
      { key: ARCH_METADATA_KEY, value: JSON.stringify(arch) },
      ...Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
    ],
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Exports a model (its current weights; deep supervision is irrelevant: the export has one head). */
export async function exportOnnx(
  model: PlainConvUNet,
  opts: OnnxExportOptions = {},
): Promise<Uint8Array> {
  return buildOnnxModel(model.arch, await model.namedWeights(), opts);
}

export interface OnnxModelInfo {
  arch: UNetArch | null;
  opset: number;
  inputs: string[];
  outputs: string[];
  /** Initializer name → shape, in graph order. */
  initializers: Array<{ name: string; shape: number[]; dataType: number }>;
  opTypes: string[];
  metadata: Record<string, string>;
}

function decode(bytes: Uint8Array): onnxProto.onnx.ModelProto {
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new Error(`not an ONNX model: ${errorMessage(e)}`);
  }
}

const num = (v: number | { toNumber(): number }): number =>
  typeof v === 'number' ? v : v.toNumber();

/** Reads an exported model's structure (no weights). */
export function inspectOnnx(bytes: Uint8Array): OnnxModelInfo {
  const m = decode(bytes);
  const g = m.graph;
  if (!g) throw new Error('ONNX model has no graph');
  const metadata: Record<string, string> = {};
  for (const p of m.metadataProps ?? []) if (p.key) metadata[p.key] = p.value ?? '';
  const arch = metadata[ARCH_METADATA_KEY]
    ? (JSON.parse(metadata[ARCH_METADATA_KEY]) as UNetArch)
    : null;
  return {
    arch,
    opset: num((m.opsetImport ?? []).find((o) => !o.domain)?.version ?? 0),
    inputs: (g.input ?? []).map((i) => i.name ?? ''),
    outputs: (g.output ?? []).map((o) => o.name ?? ''),
    initializers: (g.initializer ?? []).map((t) => ({
      name: t.name ?? '',
      shape: (t.dims ?? []).map(num),
      dataType: t.dataType ?? 0,
    })),
    opTypes: [...new Set((g.node ?? []).map((nd) => nd.opType ?? ''))],
    metadata,
  };
}

/**
 * The float weights of an exported model back in nnU-Net names, shapes and PyTorch layout
 * (transposed convs un-rearranged). Needs the `fednnunet.arch` metadata.
 */
export function readOnnxWeights(bytes: Uint8Array): NamedWeights {
  const m = decode(bytes);
  const info = inspectOnnx(bytes);
  if (!info.arch) throw new Error(`ONNX model lacks the ${ARCH_METADATA_KEY} metadata`);
  const arch = info.arch;
  const out: NamedWeights = new Map();
  for (const t of m.graph?.initializer ?? []) {
    if (t.dataType !== onnx.TensorProto.DataType.FLOAT) continue;
    const raw = t.rawData as Uint8Array;
    // Copy into a fresh buffer: protobufjs may hand out a view into a pooled Node Buffer.
    const copy = new Uint8Array(raw.byteLength);
    copy.set(raw);
    const data = new Float32Array(copy.buffer);
    const shape = (t.dims ?? []).map(num);
    const name = t.name ?? '';
    const pw = /^decoder\.transpconvs\.(\d+)\.weight\.pointwise$/.exec(name);
    const tb = /^decoder\.transpconvs\.(\d+)\.bias$/.exec(name);
    if (pw) {
      const j = Number(pw[1]);
      const back = pointwiseToTransposed(data, shape, arch.strides[arch.nStages - 1 - j]);
      out.set(`decoder.transpconvs.${j}.weight`, back);
    } else if (tb) {
      out.set(name, { shape: [shape[0]], data });
    } else {
      out.set(name, { shape, data });
    }
  }
  return out;
}
