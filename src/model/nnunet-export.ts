// A model folder (trained here, federated, or imported) as nnU-Net v2's own trained-model folder,
// so that `nnUNetv2_predict -d DatasetNNN_Name -c 3d_fullres -f 0` (after
// `nnUNetv2_install_pretrained_model_from_zip`) or `nnUNetv2_predict_from_modelfolder` runs it:
//
//   DatasetNNN_Name/<Trainer>__<Plans>__<configuration>/    (the zip's layout, as
//     plans.json  dataset.json  dataset_fingerprint.json    nnUNetv2_export_model_to_zip writes it)
//     fold_0/checkpoint_final.pth
//
// checkpoint_final.pth is nnUNetTrainer.save_checkpoint's dict with the same keys, written as
// torch.save writes it (src/io/torch-save.ts). nnU-Net loads `network_weights` with a strict
// load_state_dict, so every state_dict name is written, aliases included (`…all_modules.{0,1}.*`
// and `decoder.encoder.*` share the storage of the parameter they alias, as in torch), for
// PlainConvUNet and ResidualEncoderUNet alike.
// Pure: bytes out as parts (Node writes them, the browser makes a Blob of them).
import { PyFloat, PyGlobal, PyReduce, type PyValueOut } from '../io/pickle-write.ts';
import {
  orderedDict,
  torchSave,
  TorchStorageOut,
  TorchTensorOut,
  tuple,
} from '../io/torch-save.ts';
import { storedZip } from '../io/zip-archive.ts';
import { paramSpecs, type UNetArch } from './arch.ts';
import { archFromFolder, type ModelArchitecture, type ModelFolder } from './model-folder.ts';
import { sameShape, type NamedWeights } from './named-weights.ts';
import { prod } from '../util/numeric.ts';

export class NnUNetExportError extends Error {
  override name = 'NnUNetExportError';
}

/** dynamic_network_architectures' module paths, for class names written without one. */
const CLASS_PATHS: Record<string, string> = {
  PlainConvUNet: 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
  ResidualEncoderUNet: 'dynamic_network_architectures.architectures.unet.ResidualEncoderUNet',
};
const KW_REQUIRES_IMPORT = ['conv_op', 'norm_op', 'dropout_op', 'nonlin'];

/** Top-level plans.json keys nnU-Net's PlansManager and predictor read. */
const PLANS_KEYS = [
  'dataset_name',
  'plans_name',
  'original_median_spacing_after_transp',
  'original_median_shape_after_transp',
  'image_reader_writer',
  'transpose_forward',
  'transpose_backward',
  'configurations',
  'experiment_planner_used',
  'label_manager',
  'foreground_intensity_properties_per_channel',
];
/** Configuration keys nnU-Net's ConfigurationManager reads at prediction. */
const CONFIG_KEYS = [
  'data_identifier',
  'preprocessor_name',
  'batch_size',
  'patch_size',
  'median_image_size_in_voxels',
  'spacing',
  'normalization_schemes',
  'use_mask_for_norm',
  'resampling_fn_data',
  'resampling_fn_seg',
  'resampling_fn_data_kwargs',
  'resampling_fn_seg_kwargs',
  'resampling_fn_probabilities',
  'resampling_fn_probabilities_kwargs',
  'batch_dice',
];

/**
 * The state_dict names of the network, in PyTorch's order, each with the unique parameter it
 * holds. dynamic-network-architectures registers every ConvDropoutNormReLU's conv and norm twice
 * (as `conv`/`norm`, then as items 0 and 1 of its `all_modules` Sequential; no dropout here, which
 * archFromPlan refuses), so each block lists conv.*, norm.*, then the same tensors as
 * all_modules.0.* / all_modules.1.*. That holds for PlainConvUNet's `convs.N` and for
 * ResidualEncoderUNet's stem (`encoder.stem.convs.0`) and BasicBlockD `conv1`, `conv2` and skip
 * projection (`skip.0`, or `skip.1` behind the parameterless AvgPool). The decoder keeps a reference
 * to the encoder, registered before its own modules, so it lists the whole encoder again
 * (decoder.encoder.*) before its stages, transpconvs and seg_layers.
 */
export function nnunetStateDictKeys(arch: UNetArch): Array<[key: string, param: string]> {
  const withAliases = (names: string[]): Array<[string, string]> => {
    const out: Array<[string, string]> = [];
    let block: string | null = null;
    let pending: Array<[string, string]> = [];
    const flush = () => {
      out.push(...pending);
      pending = [];
    };
    for (const n of names) {
      // conv/norm of a ConvDropoutNormReLU (transpconvs and seg_layers are bare convs)
      const m = /^(.*)\.(conv|norm)\.(weight|bias)$/.exec(n);
      if (!m || m[1] !== block) flush();
      block = m ? m[1] : null;
      out.push([n, n]);
      if (m) pending.push([`${m[1]}.all_modules.${m[2] === 'conv' ? 0 : 1}.${m[3]}`, n]);
    }
    flush();
    return out;
  };
  const names = paramSpecs(arch).map((s) => s.name);
  const enc = withAliases(names.filter((n) => n.startsWith('encoder.')));
  const dec = withAliases(names.filter((n) => !n.startsWith('encoder.')));
  return [...enc, ...enc.map(([k, p]): [string, string] => [`decoder.${k}`, p]), ...dec];
}

/** What a checkpoint needs beside the weights. */
export interface NnUNetCheckpointInput {
  arch: UNetArch;
  /** Unique parameters by nnU-Net name, PyTorch layout (a model folder's weights). */
  weights: NamedWeights;
  plans: object;
  datasetJson: object;
  configuration: string;
  fold: number;
  /** Default: every spatial axis (nnU-Net's default for 2-D and 3-D). */
  mirrorAxes?: readonly number[];
  trainerName?: string;
}

/** nnUNetTrainer's checkpoint dict (keys in its order), ready for torchSave. */
export function nnunetCheckpoint(c: NnUNetCheckpointInput): PyValueOut {
  const specs = paramSpecs(c.arch);
  const storages = new Map<string, TorchStorageOut>();
  for (const s of specs) {
    const w = c.weights.get(s.name);
    if (!w) throw new NnUNetExportError(`weights lack '${s.name}' [${s.shape}]`);
    if (!sameShape(w.shape, s.shape) || w.data.length !== prod(s.shape))
      throw new NnUNetExportError(
        `weight '${s.name}' has shape [${w.shape}], the network needs [${s.shape}]`,
      );
    storages.set(s.name, new TorchStorageOut('float32', w.data));
  }
  const extra = [...c.weights.keys()].filter((k) => !storages.has(k));
  if (extra.length)
    throw new NnUNetExportError(`weights the network does not have: ${extra.join(', ')}`);
  const shapes = new Map(specs.map((s) => [s.name, s.shape]));
  const networkWeights = orderedDict(
    nnunetStateDictKeys(c.arch).map(([key, p]) => [
      key,
      new TorchTensorOut(storages.get(p)!, shapes.get(p)!),
    ]),
  );
  // nnU-Net's SGD (momentum 0.99, Nesterov) over named_parameters() order. No momentum buffers:
  // none were kept here; nnU-Net recomputes lr from the epoch at the start of every epoch.
  const optimizerState = new Map<PyValueOut, PyValueOut>([
    ['state', new Map()],
    [
      'param_groups',
      [
        new Map<PyValueOut, PyValueOut>([
          ['lr', new PyFloat(0.01)],
          ['momentum', new PyFloat(0.99)],
          ['dampening', 0],
          ['weight_decay', new PyFloat(3e-5)],
          ['nesterov', true],
          ['maximize', false],
          ['foreach', null],
          ['differentiable', false],
          ['initial_lr', new PyFloat(0.01)],
          ['params', specs.map((_, i) => i)],
        ]),
      ],
    ],
  ]);
  // nnU-Net's logger indexes its lists by epoch; there is no per-epoch log to put there, so the
  // checkpoint says epoch 0 with empty lists (nnUNetv2_train --c would then fine-tune from here).
  const logging = new Map<PyValueOut, PyValueOut>(
    [
      'mean_fg_dice',
      'ema_fg_dice',
      'dice_per_class_or_region',
      'train_losses',
      'val_losses',
      'lrs',
      'epoch_start_timestamps',
      'epoch_end_timestamps',
    ].map((k) => [k, []]),
  );
  const axes = c.mirrorAxes ?? Array.from({ length: c.arch.dims }, (_, i) => i);
  return new Map<PyValueOut, PyValueOut>([
    ['network_weights', networkWeights],
    ['optimizer_state', optimizerState],
    ['grad_scaler_state', null], // what nnU-Net writes when trained without CUDA AMP
    ['logging', logging],
    ['_best_ema', null],
    ['current_epoch', 0],
    [
      'init_args',
      new Map<PyValueOut, PyValueOut>([
        ['plans', c.plans as PyValueOut],
        ['configuration', c.configuration],
        ['fold', c.fold],
        ['dataset_json', c.datasetJson as PyValueOut],
        ['device', new PyReduce(new PyGlobal('torch', 'device'), ['cpu'])],
      ]),
    ],
    ['trainer_name', c.trainerName ?? 'nnUNetTrainer'],
    ['inference_allowed_mirroring_axes', tuple(...axes)],
  ]);
}

/** One file of the export: path relative to the trained-model folder, bytes in parts. */
export interface NnUNetExportFile {
  path: string;
  parts: Uint8Array[];
}

export interface NnUNetExport {
  /** `DatasetNNN_Name`. */
  datasetName: string;
  /** `<Trainer>__<Plans>__<configuration>`. */
  modelDir: string;
  configuration: string;
  fold: number;
  files: NnUNetExportFile[];
}

export interface NnUNetExportOptions {
  /** `DatasetNNN_Name`; default nnunetDatasetName(plans). */
  datasetName?: string;
  fold?: number;
  /** dataset_fingerprint.json as nnU-Net wrote it; default: a summary made from the plans. */
  fingerprint?: object;
}

const DATASET_NAME = /^Dataset\d{3,}_[A-Za-z0-9_.-]+$/;

/**
 * The plans' dataset_name when nnU-Net can use it (DatasetNNN_Name), else `Dataset999_<name>`
 * (nnU-Net finds datasets by that prefix; 999 keeps clear of the numbers public datasets use).
 */
export function nnunetDatasetName(plans: object): string {
  const name = String((plans as { dataset_name?: unknown }).dataset_name ?? '');
  if (DATASET_NAME.test(name)) return name;
  const clean = name.replace(/^Dataset\d*_?/, '').replace(/[^A-Za-z0-9_.-]+/g, '_');
  return `Dataset999_${clean.replace(/^_+|_+$/g, '') || 'fednnunet'}`;
}

/** The export of a model folder (throws saying why when nnU-Net could not load the result). */
export function exportNnUNetModel(
  m: ModelFolder<object>,
  opts: NnUNetExportOptions = {},
): NnUNetExport {
  const plans = structuredClone(m.plans) as Record<string, unknown> & {
    configurations?: Record<string, Record<string, unknown>>;
  };
  const datasetName = opts.datasetName ?? nnunetDatasetName(plans);
  if (!DATASET_NAME.test(datasetName))
    throw new NnUNetExportError(
      `nnU-Net needs a dataset name like Dataset123_Name (letters, digits, _ . -); got '${datasetName}'`,
    );
  const fold = opts.fold ?? 0;
  if (!Number.isInteger(fold) || fold < 0) throw new NnUNetExportError(`bad fold ${fold}`);
  const cfg = plans.configurations?.[m.configuration];
  if (!cfg) throw new NnUNetExportError(`plans.json has no configuration '${m.configuration}'`);
  const arch = archFromFolder(m); // refuses architectures this build cannot check
  const a: ModelArchitecture = structuredClone(
    m.architecture ?? (cfg.architecture as ModelArchitecture),
  );
  const cls = a.network_class_name;
  a.network_class_name = cls.includes('.') ? cls : (CLASS_PATHS[cls] ?? cls);
  a._kw_requires_import ??= KW_REQUIRES_IMPORT;
  cfg.architecture = a;
  // A configuration that inherits (3d_cascade_fullres) gets the keys of its parents written out.
  let parent = cfg.inherits_from as string | undefined;
  for (let i = 0; parent && i < 8; i++) {
    const p = plans.configurations![parent];
    if (!p) break;
    for (const [k, v] of Object.entries(p)) if (!(k in cfg)) cfg[k] = structuredClone(v);
    parent = p.inherits_from as string | undefined;
  }
  plans.dataset_name = datasetName;
  const missing = [
    ...PLANS_KEYS.filter((k) => !(k in plans)),
    ...CONFIG_KEYS.filter((k) => !(k in cfg)).map((k) => `configurations.${m.configuration}.${k}`),
  ];
  if (missing.length)
    throw new NnUNetExportError(`plans.json lacks what nnU-Net reads: ${missing.join(', ')}`);
  const plansName = String(plans.plans_name);
  const trainer = 'nnUNetTrainer';
  const mirrorAxes = (m.meta as { inference_allowed_mirroring_axes?: number[] } | undefined)
    ?.inference_allowed_mirroring_axes;
  const ckpt = nnunetCheckpoint({
    arch,
    weights: m.weights,
    plans,
    datasetJson: m.datasetJson,
    configuration: m.configuration,
    fold,
    mirrorAxes,
    trainerName: trainer,
  });
  const json = (x: unknown) => [new TextEncoder().encode(`${JSON.stringify(x, null, 4)}\n`)];
  const files: NnUNetExportFile[] = [
    { path: 'plans.json', parts: json(plans) },
    { path: 'dataset.json', parts: json(m.datasetJson) },
    {
      path: 'dataset_fingerprint.json',
      parts: json(opts.fingerprint ?? summaryFingerprint(plans)),
    },
    {
      path: `fold_${fold}/checkpoint_final.pth`,
      parts: torchSave(ckpt, 'checkpoint_final'),
    },
  ];
  if (m.provenance)
    files.push({ path: 'fednnunet_provenance.json', parts: json({ provenance: m.provenance }) });
  return {
    datasetName,
    modelDir: `${trainer}__${plansName}__${m.configuration}`,
    configuration: m.configuration,
    fold,
    files,
  };
}

/**
 * dataset_fingerprint.json when the per-case fingerprints are not at hand: one summary "case" with
 * the plans' median spacing and shape (back in the images' axis order) and the plans' intensity
 * statistics. nnU-Net does not read the fingerprint to predict. It says what it is; planning
 * again needs the real one (`fednnunet fingerprint`, given with --fingerprint).
 */
function summaryFingerprint(plans: Record<string, unknown>): object {
  const back = (plans.transpose_backward as number[] | undefined) ?? [0, 1, 2];
  const unT = (v: unknown) =>
    Array.isArray(v) && v.length === back.length ? back.map((i) => v[i] as number) : v;
  return {
    foreground_intensity_properties_per_channel: plans.foreground_intensity_properties_per_channel,
    shapes_after_crop: [unT(plans.original_median_shape_after_transp)],
    spacings: [unT(plans.original_median_spacing_after_transp)],
    fednnunet_note:
      'summary written by fednnunet export-nnunet: one entry with the plans medians, not per-case values',
  };
}

/** The export as one zip: entries `DatasetNNN_Name/<modelDir>/…`, as nnUNetv2_export_model_to_zip. */
export function nnunetExportZip(ex: NnUNetExport): Uint8Array[] {
  return storedZip(
    ex.files.map((f) => ({ name: `${ex.datasetName}/${ex.modelDir}/${f.path}`, parts: f.parts })),
    1,
  );
}
