// Export to nnU-Net (torch.save writer, checkpoint dict, folder/zip layout) and import back, fold by
// fold; torch.load of the written checkpoint where /usr/bin/python3 has torch.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PyTuple, toPlain, unpickle } from '../../src/io/pickle.ts';
import { pickle, PyFloat, PyGlobal, PyReduce } from '../../src/io/pickle-write.ts';
import {
  readNnUNetCheckpoint,
  readTorchCheckpoint,
  type TorchTensor,
} from '../../src/io/torch-checkpoint.ts';
import {
  orderedDict,
  torchSave,
  TorchStorageOut,
  TorchTensorOut,
} from '../../src/io/torch-save.ts';
import { concatParts, openZipBytes, storedZip } from '../../src/io/zip-archive.ts';
import { memorySource } from '../../src/io/file-source.ts';
import { readNnUNetFolds } from '../../src/infer/nnunet-folds.ts';
import { zipBytesSource, zipSource } from '../../src/io/zip-source.ts';
import { nnunetArch } from '../../src/infer/nnunet-model.ts';
import type { ModelFolder } from '../../src/model/model-folder.ts';
import {
  exportNnUNetModel,
  nnunetExportZip,
  nnunetStateDictKeys,
} from '../../src/model/nnunet-export.ts';
import { useBackend } from '../../src/model/tf-backend.ts';
import { PlainConvUNet } from '../../src/model/unet.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { NNUNET_DS as DS, NNUNET_MODEL as MODEL } from '../nnunet-helpers.ts';

const layout = JSON.parse(readFileSync(`${DS}/checkpoint_layout.json`, 'utf8'));
const enc = (s: string) => new TextEncoder().encode(s);

/** Fold 0 of the reference nnU-Net model as a model folder (the import under test). */
async function referenceFold(fold = 0): Promise<ModelFolder> {
  for await (const f of readNnUNetFolds(fsSource(MODEL), { folds: [fold] })) return f.model;
  throw new Error('no fold');
}

/** Reads the files of an export into a memory FileSource rooted at the trained-model folder. */
function exportSource(ex: ReturnType<typeof exportNnUNetModel>) {
  const files: Record<string, Uint8Array> = {};
  for (const f of ex.files) files[f.path] = concatParts(f.parts);
  return memorySource(ex.modelDir, files);
}

describe('pickle writer', () => {
  it('writes what the allow-list reader reads back: ints of every width, floats, str, containers, globals', () => {
    const od = new PyGlobal('collections', 'OrderedDict');
    const shared = [1, 2];
    const v = new Map<unknown, unknown>([
      ['ints', [0, 255, 256, 65535, 65536, -1, -(2 ** 31), 2 ** 31, 2 ** 40, -(2 ** 40)]],
      ['big', 2n ** 70n],
      ['floats', [0.5, new PyFloat(1), -0, 1e-300, Infinity]],
      ['str', 'ünïcødé ✓'],
      ['tuple', Object.assign(new PyTuple(), [1, 'a', null, true, false])],
      ['list', Array.from({ length: 2500 }, (_, i) => i)],
      ['od', new PyReduce(od, [], { items: [['k', 1]] })],
      ['a', shared],
      ['b', shared],
    ]);
    const bytes = pickle(v as never);
    expect(bytes[0]).toBe(0x80);
    expect(bytes[1]).toBe(2);
    const back = unpickle(bytes, {
      globals: { 'collections OrderedDict': { call: () => new Map() } },
    }) as Map<string, unknown>;
    expect(back.get('ints')).toEqual([
      0,
      255,
      256,
      65535,
      65536,
      -1,
      -(2 ** 31),
      2 ** 31,
      2 ** 40,
      -(2 ** 40),
    ]);
    expect(back.get('big')).toBe(2n ** 70n);
    expect(back.get('floats')).toEqual([0.5, 1, -0, 1e-300, Infinity]);
    expect(back.get('str')).toBe('ünïcødé ✓');
    expect(back.get('tuple')).toBeInstanceOf(PyTuple);
    expect([...(back.get('tuple') as PyTuple)]).toEqual([1, 'a', null, true, false]);
    expect((back.get('list') as number[]).length).toBe(2500);
    expect(back.get('od')).toEqual(new Map([['k', 1]]));
    // a shared object is written once and referenced (memo), as Python's pickler does
    expect(back.get('a')).toBe(back.get('b'));
  });

  it('refuses what it cannot write', () => {
    expect(() => pickle(new Date() as never)).toThrow(/cannot pickle a Date/);
    expect(() => pickle(new PyGlobal('os', 'sys tem'))).toThrow(/bad global/);
  });
});

describe('torch.save writer', () => {
  it('zip of STORED entries, data 64-byte aligned, under the file-named folder; read back exactly', () => {
    const a = new TorchStorageOut(
      'float32',
      Float32Array.from({ length: 24 }, (_, i) => i * 0.5),
    );
    const h = new TorchStorageOut('float16', Uint16Array.from([0x3c00, 0xc000])); // 1, -2
    const parts = torchSave(
      new Map<unknown, unknown>([
        ['w', new TorchTensorOut(a, [2, 3, 4])],
        ['alias', new TorchTensorOut(a, [2, 3, 4])],
        ['view', new TorchTensorOut(a, [3, 2], { offset: 1, stride: [1, 3] })], // strided
        ['half', new TorchTensorOut(h, [2])],
        ['od', orderedDict([['x', 1]])],
      ]) as never,
      'checkpoint_final',
    );
    const file = concatParts(parts);
    const zip = openZipBytes(file);
    expect(zip.entries.map((e) => e.name)).toEqual([
      'checkpoint_final/data.pkl',
      'checkpoint_final/byteorder',
      'checkpoint_final/data/0',
      'checkpoint_final/data/1',
      'checkpoint_final/version',
    ]);
    for (const e of zip.entries) {
      expect(e.method).toBe(0);
      const v = new DataView(file.buffer, e.localHeaderOffset);
      const dataAt = e.localHeaderOffset + 30 + v.getUint16(26, true) + v.getUint16(28, true);
      expect(dataAt % 64).toBe(0);
    }
    const root = readTorchCheckpoint(file).root as Map<string, TorchTensor>;
    expect(Array.from(root.get('w')!.data as Float32Array)).toEqual(
      Array.from({ length: 24 }, (_, i) => i * 0.5),
    );
    expect(root.get('w')!.shape).toEqual([2, 3, 4]);
    expect(root.get('alias')!.data).toBe(root.get('w')!.data); // one storage, one tensor
    // view[i][j] = a[1 + i + 3j]
    expect(Array.from(root.get('view')!.data as Float32Array)).toEqual([0.5, 2, 1, 2.5, 1.5, 3]);
    expect(root.get('half')!.dtype).toBe('float16');
    expect(Array.from(root.get('half')!.data as Uint16Array)).toEqual([0x3c00, 0xc000]);
  });

  it('the zip writer refuses a tensor past its storage and a bad archive name', () => {
    const a = new TorchStorageOut('float32', new Float32Array(4));
    expect(() => new TorchTensorOut(a, [5])).toThrow(/past its storage/);
    expect(() => torchSave(null, '../x')).toThrow(/bad torch archive name/);
    expect(storedZip([{ name: 'a', parts: [enc('x')] }], 1).length).toBe(4);
  });
});

describe('export to nnU-Net', () => {
  it('writes the state_dict names in nnU-Net’s order, aliases included (as the real checkpoint)', () => {
    const plans = JSON.parse(readFileSync(`${MODEL}/plans.json`, 'utf8'));
    const dj = JSON.parse(readFileSync(`${MODEL}/dataset.json`, 'utf8'));
    const keys = nnunetStateDictKeys(nnunetArch(plans, '3d_fullres', dj)).map(([k]) => k);
    const want = layout.network_weights['rows (key shape storage_key storage_offset stride)'].map(
      (r: string) => r.split(' ')[0],
    );
    expect(keys).toEqual(want);
  });

  it('round trip: model folder → nnU-Net folder → our reader gives identical weights and predictions', async () => {
    await useBackend('cpu');
    const m = await referenceFold(0);
    const ex = exportNnUNetModel(m);
    expect(ex.datasetName).toBe('Dataset801_PhantomMR');
    expect(ex.modelDir).toBe('nnUNetTrainer__nnUNetPlans__3d_fullres');
    expect(ex.files.map((f) => f.path)).toEqual([
      'plans.json',
      'dataset.json',
      'dataset_fingerprint.json',
      'fold_0/checkpoint_final.pth',
      'fednnunet_provenance.json',
    ]);
    const src = exportSource(ex);
    // the checkpoint: nnU-Net's key set in its order, and what nnU-Net's predictor reads
    const pth = await src.read('fold_0/checkpoint_final.pth');
    const root = readTorchCheckpoint(pth).root as Map<string, unknown>;
    expect([...root.keys()]).toEqual(layout.other_keys.top_level_key_order);
    expect(root.get('grad_scaler_state')).toBeNull();
    const ck = readNnUNetCheckpoint(pth);
    expect(ck.trainerName).toBe('nnUNetTrainer');
    expect(ck.inferenceAllowedMirroringAxes).toEqual([0, 1, 2]);
    expect(ck.initArgs.get('configuration')).toBe('3d_fullres');
    expect(ck.initArgs.get('fold')).toBe(0);
    expect(toPlain(ck.initArgs.get('dataset_json')!)).toEqual(m.datasetJson);
    const optim = toPlain(root.get('optimizer_state') as never) as {
      param_groups: Array<{ params: number[] }>;
    };
    expect(optim.param_groups[0].params).toEqual([...Array(48).keys()]);
    // every reference key, with the same shape and the original's values
    const orig = readNnUNetCheckpoint(readFileSync(`${MODEL}/fold_0/checkpoint_final.pth`));
    expect([...ck.networkWeights.keys()]).toEqual([...orig.networkWeights.keys()]);
    for (const [k, t] of orig.networkWeights) {
      expect(ck.networkWeights.get(k)!.shape).toEqual(t.shape);
      expect(
        Buffer.from(
          ck.networkWeights.get(k)!.data.buffer,
          ck.networkWeights.get(k)!.data.byteOffset,
          ck.networkWeights.get(k)!.data.byteLength,
        ).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
      ).toBe(true);
    }
    // plans.json: nnU-Net's architecture block with _kw_requires_import
    const plans = JSON.parse(new TextDecoder().decode(await src.read('plans.json')));
    expect(plans.configurations['3d_fullres'].architecture).toEqual(
      JSON.parse(readFileSync(`${MODEL}/plans.json`, 'utf8')).configurations['3d_fullres']
        .architecture,
    );
    // import the export again and predict with both: identical outputs
    let back: ModelFolder | undefined;
    for await (const f of readNnUNetFolds(src)) back = f.model;
    expect([...back!.weights.keys()]).toEqual([...m.weights.keys()]);
    const arch = nnunetArch(m.plans as never, '3d_fullres', m.datasetJson);
    const a = new PlainConvUNet(arch, { deepSupervision: false });
    const b = new PlainConvUNet(arch, { deepSupervision: false });
    a.loadNamedWeights(m.weights);
    b.loadNamedWeights(back!.weights);
    const x = Float32Array.from({ length: 16 ** 3 }, (_, i) => Math.sin(i * 0.37) * 2);
    const ya = await a.predictLogits(x, 1, [16, 16, 16]);
    const yb = await b.predictLogits(x, 1, [16, 16, 16]);
    expect(ya.length).toBe(16 ** 3 * 3);
    expect(new Set(ya).size).toBeGreaterThan(100); // a real output, not a constant
    expect(Array.from(yb)).toEqual(Array.from(ya));
    a.dispose();
    b.dispose();
  });

  it('the export zip has nnUNetv2_export_model_to_zip’s layout and imports again, fold by fold', async () => {
    const m = await referenceFold(1);
    const ex = exportNnUNetModel(m, { fold: 1 });
    const zip = concatParts(nnunetExportZip(ex));
    const names = openZipBytes(zip).entries.map((e) => e.name);
    expect(names).toContain(
      'Dataset801_PhantomMR/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_1/checkpoint_final.pth',
    );
    expect(names).toContain(
      'Dataset801_PhantomMR/nnUNetTrainer__nnUNetPlans__3d_fullres/plans.json',
    );
    const src = zipBytesSource('export.zip', zip);
    const got = [];
    for await (const f of readNnUNetFolds(src)) got.push(f);
    expect(got.map((f) => f.fold)).toEqual([1]);
    const w = m.weights.get('decoder.seg_layers.1.weight')!.data;
    expect(Array.from(got[0].model.weights.get('decoder.seg_layers.1.weight')!.data)).toEqual(
      Array.from(w),
    );
    expect(got[0].model.meta).toEqual({ inference_allowed_mirroring_axes: [0, 1, 2] });
  });

  it('refuses what nnU-Net could not load, saying why', async () => {
    const m = await referenceFold(0);
    const bad = (f: (x: ModelFolder) => void, opts = {}) => {
      const c: ModelFolder = { ...m, plans: structuredClone(m.plans), weights: new Map(m.weights) };
      f(c);
      return () => exportNnUNetModel(c, opts);
    };
    expect(bad(() => {}, { datasetName: 'phantom' })).toThrow(/Dataset123_Name/);
    // a plans name nnU-Net cannot use gets the Dataset999_ prefix
    const renamed = { ...m, plans: { ...m.plans, dataset_name: 'site A/demo' } };
    expect(exportNnUNetModel(renamed).datasetName).toBe('Dataset999_site_A_demo');
    expect(bad((c) => c.weights.delete('decoder.seg_layers.1.bias'))).toThrow(
      /lack 'decoder.seg_layers.1.bias'/,
    );
    expect(
      bad((c) => c.weights.set('x.weight', { shape: [1], data: new Float32Array(1) })),
    ).toThrow(/does not have: x.weight/);
    expect(
      bad((c) => delete (c.plans as unknown as Record<string, unknown>).image_reader_writer),
    ).toThrow(/lacks what nnU-Net reads: image_reader_writer/);
  });
});

describe('import of nnU-Net models', () => {
  it('reads the reference folder and a zip of it (built here) fold by fold, and refuses hostile input', async () => {
    const files: Record<string, Uint8Array> = {};
    for (const p of await fsSource(MODEL).list())
      files[`Dataset801_PhantomMR/nnUNetTrainer__nnUNetPlans__3d_fullres/${p}`] = readFileSync(
        join(MODEL, p),
      );
    const zip = concatParts(
      storedZip(Object.entries(files).map(([name, b]) => ({ name, parts: [b] }))),
    );
    const src = zipBytesSource('m.zip', zip);
    const folds = [];
    for await (const f of readNnUNetFolds(src)) folds.push(f.fold);
    expect(folds).toEqual([0, 1]);
    await expect(async () => {
      for await (const _ of readNnUNetFolds(src, { folds: [3] })) void _;
    }).rejects.toThrow(/fold 3 has no checkpoint_final.pth \(available: 0, 1\)/);
    await expect(async () => {
      for await (const _ of readNnUNetFolds(src, { checkpoint: '../../etc/passwd' })) void _;
    }).rejects.toThrow(/--checkpoint names a file/);
    await expect(async () => {
      for await (const _ of readNnUNetFolds(memorySource('x', { 'a.txt': enc('a') }))) void _;
    }).rejects.toThrow(/not an nnU-Net v2 results folder: no plans.json/);
    // a checkpoint whose pickle calls os.system is refused, naming the global
    const evil = concatParts(
      storedZip([
        {
          name: 'checkpoint_final/data.pkl',
          parts: [Uint8Array.from([0x80, 2, ...enc('cos\nsystem\n'), 0x29, 0x52, 0x2e])],
        },
      ]),
    );
    const hostile = memorySource('evil', {
      'plans.json': files[`Dataset801_PhantomMR/nnUNetTrainer__nnUNetPlans__3d_fullres/plans.json`],
      'dataset.json':
        files[`Dataset801_PhantomMR/nnUNetTrainer__nnUNetPlans__3d_fullres/dataset.json`],
      'fold_0/checkpoint_final.pth': evil,
    });
    await expect(async () => {
      for await (const _ of readNnUNetFolds(hostile)) void _;
    }).rejects.toThrow(/fold_0\/checkpoint_final.pth: .*global "os system".*not allowed/);
    // a damaged zip entry (CRC), a truncated zip and a zip bomb header fail cleanly
    const flipped = zip.slice();
    const e = openZipBytes(zip).entries.find((x) =>
      x.name.endsWith('fold_0/checkpoint_final.pth'),
    )!;
    flipped[e.localHeaderOffset + 200] ^= 0xff;
    const src2 = zipBytesSource('f.zip', flipped);
    await expect(async () => {
      for await (const _ of readNnUNetFolds(src2, { folds: [0] })) void _;
    }).rejects.toThrow(/CRC-32 mismatch|checkpoint/);
    await expect(zipSource('t.zip', 1000, async (o, n) => zip.subarray(o, o + n))).rejects.toThrow(
      /no end of central directory|central directory/,
    );
  });
});

// torch.load of the exported checkpoint with Debian's python3-torch, when it is installed.
const PY = '/usr/bin/python3';
const torchProbe = spawnSync(PY, ['-c', 'import torch; print(torch.__version__)'], {
  encoding: 'utf8',
});
const torchVersion = torchProbe.status === 0 ? torchProbe.stdout.trim() : null;
if (!torchVersion)
  console.log(
    `nnunet-export: skipping the torch.load check: ${PY} cannot import torch (apt-get install python3-torch)`,
  );

describe.skipIf(!torchVersion)(`torch.load (${torchVersion ?? 'absent'})`, () => {
  it('loads the exported checkpoint: same tensors, shared aliases, loadable optimizer state', async () => {
    const m = await referenceFold(0);
    const ex = exportNnUNetModel(m);
    const dir = mkdtempSync(join(tmpdir(), 'nnunet-export-'));
    try {
      const pth = join(dir, 'checkpoint_final.pth');
      writeFileSync(pth, concatParts(ex.files.find((f) => f.path.endsWith('.pth'))!.parts));
      const script = `
import hashlib, json, sys, torch
ck = torch.load(sys.argv[1], map_location='cpu')
sd = ck['network_weights']
params = [torch.nn.Parameter(sd[k].clone()) for k in json.loads(sys.argv[2])]
opt = torch.optim.SGD(params, lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
opt.load_state_dict(ck['optimizer_state'])
print(json.dumps({
  'keys': list(ck.keys()),
  'type': type(sd).__name__,
  'tensors': {k: [list(v.shape), str(v.dtype), hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()] for k, v in sd.items()},
  'alias_shared': sd['encoder.stages.0.0.convs.0.conv.weight'].data_ptr() == sd['decoder.encoder.stages.0.0.convs.0.all_modules.0.weight'].data_ptr(),
  'trainer': ck['trainer_name'], 'axes': list(ck['inference_allowed_mirroring_axes']),
  'cfg': ck['init_args']['configuration'], 'device': str(ck['init_args']['device']),
  'epoch': ck['current_epoch'], 'groups': len(opt.param_groups[0]['params']),
}))
`;
      const unique = [...m.weights.keys()];
      const out = JSON.parse(
        execFileSync(PY, ['-c', script, pth, JSON.stringify(unique)], { encoding: 'utf8' }),
      );
      expect(out.keys).toEqual(layout.other_keys.top_level_key_order);
      expect(out.type).toBe('OrderedDict');
      expect(out.alias_shared).toBe(true);
      expect(out).toMatchObject({ trainer: 'nnUNetTrainer', axes: [0, 1, 2], cfg: '3d_fullres' });
      expect(out.device).toBe('cpu');
      expect(out.groups).toBe(48);
      const orig = readNnUNetCheckpoint(readFileSync(`${MODEL}/fold_0/checkpoint_final.pth`));
      expect(Object.keys(out.tensors)).toEqual([...orig.networkWeights.keys()]);
      for (const [k, t] of orig.networkWeights) {
        const sha = createHash('sha256')
          .update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))
          .digest('hex');
        expect(out.tensors[k]).toEqual([t.shape, 'torch.float32', sha]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
