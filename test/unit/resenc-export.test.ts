// Export of a ResidualEncoderUNet to nnU-Net's trained-model folder (src/model/nnunet-export.ts):
// the checkpoint's network_weights must be the state_dict dynamic-network-architectures' module
// structure gives (aliases included: `…all_modules.N`, `decoder.encoder.*`), checked against
//  - test/dna-state-dict.ts, a model of the upstream modules written apart from the exporter, itself
//    checked against the real torch checkpoints in test/reference (ResEnc and PlainConvUNet);
//  - the real ResEnc checkpoint (test/reference/resenc): its import exported again is byte-equal;
// and a ResEnc model of ours (model folder) exported and imported again gives identical weights
// and identical predictions, through the library and through the CLI.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readNnUNetFolds } from '../../src/infer/nnunet-folds.ts';
import { nnunetArch } from '../../src/infer/nnunet-model.ts';
import { toPlain } from '../../src/io/pickle.ts';
import { memorySource } from '../../src/io/file-source.ts';
import {
  readNnUNetCheckpoint,
  readTorchCheckpoint,
  type TorchTensor,
} from '../../src/io/torch-checkpoint.ts';
import { concatParts } from '../../src/io/zip-archive.ts';
import { zipBytesSource } from '../../src/io/zip-source.ts';
import { paramSpecs } from '../../src/model/arch.ts';
import {
  decodeModelFolder,
  encodeModelFolder,
  type ModelFolder,
} from '../../src/model/model-folder.ts';
import type { NamedWeights } from '../../src/model/named-weights.ts';
import {
  exportNnUNetModel,
  nnunetExportZip,
  nnunetStateDictKeys,
} from '../../src/model/nnunet-export.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { dnaStateDict, type DnaArchKwargs } from '../dna-state-dict.ts';
import { NNUNET_MODEL, RESENC_MODEL, resultsJson } from '../nnunet-helpers.ts';

const CK = 'fold_0/checkpoint_final.pth';
const { plans, datasetJson } = resultsJson(RESENC_MODEL);
const realResEnc = readNnUNetCheckpoint(new Uint8Array(readFileSync(join(RESENC_MODEL, CK))));

type Arch = { network_class_name: string; arch_kwargs: DnaArchKwargs };
const archOf = (p: { configurations: Record<string, unknown> }) =>
  (p.configurations['3d_fullres'] as { architecture: Arch }).architecture;

/** The ResEnc fixture's plans with arch_kwargs changed. */
function variant(k: Partial<DnaArchKwargs> & { conv_op?: string }): typeof plans {
  const p = structuredClone(plans);
  Object.assign(archOf(p).arch_kwargs, k);
  return p;
}

/**
 * Architectures beside the fixture's (stage 0 keeps the stem's channels; stages 1, 2 stride and
 * project): a stem narrower than stage 0 (skip.0 = projection without pooling), a strided stage
 * that keeps its channels (skip = AvgPool only, no parameters), no conv bias, 2-D, four stages,
 * two decoder convs.
 */
const VARIANTS: Array<[string, Partial<DnaArchKwargs> & { conv_op?: string }]> = [
  ['the fixture', {}],
  [
    'stem 3, a pool-only skip, no conv bias, 2 decoder convs',
    {
      features_per_stage: [4, 4, 8],
      stem_channels: 3,
      n_blocks_per_stage: [2, 1, 3],
      conv_bias: false,
      n_conv_per_stage_decoder: [2, 1],
    },
  ],
  [
    '2-D, 4 stages',
    {
      conv_op: 'torch.nn.modules.conv.Conv2d',
      n_stages: 4,
      features_per_stage: [2, 4, 6, 6],
      kernel_sizes: [
        [3, 3],
        [3, 3],
        [1, 3],
        [3, 3],
      ],
      strides: [
        [1, 1],
        [2, 2],
        [1, 2],
        [2, 2],
      ],
      n_blocks_per_stage: [1, 1, 2, 1],
      n_conv_per_stage_decoder: [1, 2, 1],
    },
  ],
];

/** nnunetStateDictKeys with each key's shape: [key, shape, the unique parameter it holds]. */
function exporterStateDict(p: typeof plans): Array<[string, number[], string]> {
  const arch = nnunetArch(p, '3d_fullres', datasetJson);
  const shapes = new Map(paramSpecs(arch).map((s) => [s.name, s.shape]));
  return nnunetStateDictKeys(arch).map(([k, param]) => [k, shapes.get(param)!, param]);
}

const bytesOf = (t: { data: ArrayBufferView }) =>
  Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

describe('the module model of dynamic-network-architectures (test/dna-state-dict.ts)', () => {
  it('gives the real torch checkpoints’ state_dict: keys in order, shapes, and which keys share a tensor', () => {
    for (const [dir, ck] of [
      [RESENC_MODEL, realResEnc],
      [NNUNET_MODEL, readNnUNetCheckpoint(new Uint8Array(readFileSync(join(NNUNET_MODEL, CK))))],
    ] as const) {
      const r = resultsJson(dir);
      const want = dnaStateDict(archOf(r.plans), 1, 3);
      expect(want.map(([k, s]) => [k, s])).toEqual(
        [...ck.networkWeights].map(([k, t]) => [k, t.shape]),
      );
      // torch wrote each alias as a view of its parameter's storage: the reader gives one array
      for (const [k, , param] of want)
        expect(ck.networkWeights.get(k)!.data).toBe(ck.networkWeights.get(param)!.data);
    }
    expect(realResEnc.networkWeights.size).toBe(224);
    // the fixture has a strided projecting skip (AvgPool at 0, the 1×1 conv block at 1)
    expect(
      realResEnc.networkWeights.has('decoder.encoder.stages.1.blocks.0.skip.1.all_modules.1.bias'),
    ).toBe(true);
  });
});

describe('nnunetStateDictKeys for ResidualEncoderUNet', () => {
  for (const [name, k] of VARIANTS)
    it(`equals the upstream module structure's state_dict: ${name}`, () => {
      const p = variant(k);
      const want = dnaStateDict(archOf(p), 1, 3);
      expect(exporterStateDict(p)).toEqual(want);
    });

  it('covers every kind of BasicBlockD skip across the variants', () => {
    const keys = VARIANTS.flatMap(([, k]) => dnaStateDict(archOf(variant(k)), 1, 3)).map(
      ([key]) => key,
    );
    // projection without pooling (stem 3 → stage 0 of 4), projection behind the AvgPool
    expect(keys).toContain('encoder.stages.0.blocks.0.skip.0.all_modules.0.weight');
    expect(keys).toContain('decoder.encoder.stages.1.blocks.0.skip.1.all_modules.1.weight');
    // a strided block that keeps its channels has an AvgPool only: no skip parameters
    const v1 = dnaStateDict(archOf(variant(VARIANTS[1][1])), 1, 3).map(([key]) => key);
    expect(v1.some((key) => key.startsWith('encoder.stages.1.blocks.0.skip'))).toBe(false);
  });
});

describe('export of a ResidualEncoderUNet to nnU-Net', () => {
  it('the imported fixture exported again is the real checkpoint’s network_weights, byte for byte', async () => {
    let m: ModelFolder | undefined;
    for await (const f of readNnUNetFolds(fsSource(RESENC_MODEL))) m = f.model;
    const ex = exportNnUNetModel(m!);
    expect(ex.modelDir).toBe('nnUNetTrainer__nnUNetResEncUNetPlans__3d_fullres');
    const pth = concatParts(ex.files.find((f) => f.path === CK)!.parts);
    const ck = readNnUNetCheckpoint(pth);
    expect([...ck.networkWeights.keys()]).toEqual([...realResEnc.networkWeights.keys()]);
    for (const [k, t] of realResEnc.networkWeights) {
      const got = ck.networkWeights.get(k)!;
      expect([k, got.shape, got.dtype]).toEqual([k, t.shape, t.dtype]);
      expect(bytesOf(got).equals(bytesOf(t))).toBe(true);
    }
    // aliases are views of one storage, as torch writes them
    const w = ck.networkWeights;
    expect(w.get('decoder.encoder.stages.2.blocks.0.skip.1.all_modules.0.weight')!.data).toBe(
      w.get('encoder.stages.2.blocks.0.skip.1.conv.weight')!.data,
    );
    // the optimizer lists the unique parameters, the plans keep the ResEnc architecture block
    const root = readTorchCheckpoint(pth).root as Map<string, unknown>;
    const optim = toPlain(root.get('optimizer_state') as never) as {
      param_groups: Array<{ params: number[] }>;
    };
    expect(optim.param_groups[0].params.length).toBe(m!.weights.size);
    const outPlans = JSON.parse(
      new TextDecoder().decode(concatParts(ex.files.find((f) => f.path === 'plans.json')!.parts)),
    );
    expect(archOf(outPlans)).toEqual(archOf(plans));
  });

  it('a ResEnc model of ours → model folder → nnU-Net export → import: identical weights and predictions', async () => {
    await useBackend('cpu');
    const p = variant(VARIANTS[1][1]);
    const arch = nnunetArch(p, '3d_fullres', datasetJson);
    const net = new PlainConvUNet(arch, { seed: 11, deepSupervision: false });
    let back: PlainConvUNet | undefined;
    try {
      // every tensor distinct and non-trivial (no zero biases, no unit norms), so a misrouted
      // alias or parameter would show in the values or the logits
      const weights: NamedWeights = await net.namedWeights();
      let s = 12345;
      for (const t of weights.values())
        for (let i = 0; i < t.data.length; i++) {
          s = (Math.imul(s, 1103515245) + 12345) >>> 0;
          t.data[i] = (s / 2 ** 32 - 0.5) * 0.8 + (t.shape.length === 1 ? 0.1 : 0);
        }
      net.loadNamedWeights(weights);
      const folder = await decodeModelFolder(
        memorySource(
          'resenc-model',
          encodeModelFolder({
            plans: p as never,
            datasetJson,
            configuration: '3d_fullres',
            weights,
            architecture: archOf(p) as never,
            provenance: { trained_by: 'test' },
            meta: { inference_allowed_mirroring_axes: [0, 1, 2] },
          }),
        ),
      );
      const ex = exportNnUNetModel(folder, { fold: 2 });
      const zip = concatParts(nnunetExportZip(ex));
      // the key set nnU-Net's ResidualEncoderUNet has, with its shapes
      const pth = concatParts(
        ex.files.find((f) => f.path === 'fold_2/checkpoint_final.pth')!.parts,
      );
      const nw = readNnUNetCheckpoint(pth).networkWeights;
      expect([...nw].map(([k, t]: [string, TorchTensor]) => [k, t.shape])).toEqual(
        dnaStateDict(archOf(p), 1, 3).map(([k, shape]) => [k, shape]),
      );
      // our nnU-Net importer reads the export zip back
      const folds = [];
      for await (const f of readNnUNetFolds(zipBytesSource('export.zip', zip))) folds.push(f);
      expect(folds.map((f) => f.fold)).toEqual([2]);
      const got = folds[0].model.weights;
      expect([...got.keys()]).toEqual([...weights.keys()]);
      for (const [k, t] of weights) {
        expect(got.get(k)!.shape).toEqual(t.shape);
        expect(bytesOf(got.get(k)!).equals(bytesOf(t))).toBe(true);
      }
      expect(folds[0].model.meta).toEqual({ inference_allowed_mirroring_axes: [0, 1, 2] });
      back = new PlainConvUNet(
        nnunetArch(folds[0].model.plans as never, '3d_fullres', datasetJson),
        {
          deepSupervision: false,
        },
      );
      back.loadNamedWeights(got);
      const x = Float32Array.from({ length: 2 * 8 * 16 * 16 }, (_, i) => Math.sin(i * 0.37) * 2);
      const ya = await net.predictLogits(x, 2, [8, 16, 16]);
      const yb = await back.predictLogits(x, 2, [8, 16, 16]);
      expect(ya.length).toBe(2 * 3 * 8 * 16 * 16);
      expect(new Set(ya).size).toBeGreaterThan(100); // a real output, not a constant
      expect(Array.from(yb)).toEqual(Array.from(ya));
    } finally {
      net.dispose();
      back?.dispose();
    }
  });
});

describe('fednnunet import-nnunet → export-nnunet with a ResidualEncoderUNet', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'fednnunet-resenc-export-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['bin/fednnunet.js', ...args], { encoding: 'utf8' });

  it('writes the real checkpoint’s network_weights again', () => {
    const dir = join(tmp, 'imported');
    let r = cli('import-nnunet', RESENC_MODEL, '-o', dir);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = join(tmp, 'exported');
    r = cli('export-nnunet', '--model', dir, '-o', out);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const nw = readNnUNetCheckpoint(new Uint8Array(readFileSync(join(out, CK)))).networkWeights;
    expect([...nw.keys()]).toEqual([...realResEnc.networkWeights.keys()]);
    for (const [k, t] of realResEnc.networkWeights)
      expect(bytesOf(nw.get(k)!).equals(bytesOf(t))).toBe(true);
  }, 120_000);
});

// torch.load of the exported ResEnc checkpoint with Debian's python3-torch, when it is installed
// (as nnunet-export.test.ts does for PlainConvUNet): torch itself must read the aliases as views
// of one storage and the optimizer state as loadable for the unique parameters.
const PY = '/usr/bin/python3';
const torchProbe = spawnSync(PY, ['-c', 'import torch; print(torch.__version__)'], {
  encoding: 'utf8',
});
const torchVersion = torchProbe.status === 0 ? torchProbe.stdout.trim() : null;
if (!torchVersion)
  console.log(
    `resenc-export: skipping the torch.load check: ${PY} cannot import torch (apt-get install python3-torch)`,
  );

describe.skipIf(!torchVersion)(
  `torch.load of a ResEnc export (${torchVersion ?? 'absent'})`,
  () => {
    it('reads the real checkpoint’s tensors, aliases sharing storage, and a loadable optimizer state', async () => {
      let m: ModelFolder | undefined;
      for await (const f of readNnUNetFolds(fsSource(RESENC_MODEL))) m = f.model;
      const ex = exportNnUNetModel(m!);
      const dir = mkdtempSync(join(tmpdir(), 'resenc-torch-'));
      try {
        const pth = join(dir, 'checkpoint_final.pth');
        writeFileSync(pth, concatParts(ex.files.find((f) => f.path === CK)!.parts));
        const script = `
import hashlib, json, sys, torch
ck = torch.load(sys.argv[1], map_location='cpu')
sd = ck['network_weights']
params = [torch.nn.Parameter(sd[k].clone()) for k in json.loads(sys.argv[2])]
opt = torch.optim.SGD(params, lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
opt.load_state_dict(ck['optimizer_state'])
ptr = lambda k: sd[k].data_ptr()
print(json.dumps({
  'tensors': {k: [list(v.shape), str(v.dtype), hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()] for k, v in sd.items()},
  'stem_alias': ptr('encoder.stem.convs.0.conv.weight') == ptr('encoder.stem.convs.0.all_modules.0.weight'),
  'decoder_alias': ptr('encoder.stages.2.blocks.0.skip.1.conv.weight') == ptr('decoder.encoder.stages.2.blocks.0.skip.1.all_modules.0.weight'),
  'groups': len(opt.param_groups[0]['params']),
}))
`;
        const out = JSON.parse(
          execFileSync(PY, ['-c', script, pth, JSON.stringify([...m!.weights.keys()])], {
            encoding: 'utf8',
          }),
        );
        expect(out.stem_alias).toBe(true);
        expect(out.decoder_alias).toBe(true);
        expect(out.groups).toBe(m!.weights.size);
        expect(Object.keys(out.tensors)).toEqual([...realResEnc.networkWeights.keys()]);
        for (const [k, t] of realResEnc.networkWeights) {
          const sha = createHash('sha256').update(bytesOf(t)).digest('hex');
          expect(out.tensors[k]).toEqual([t.shape, 'torch.float32', sha]);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 120_000);
  },
);
