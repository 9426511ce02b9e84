// The one model-folder format (src/model/model-folder.ts): what it writes (architecture,
// provenance), the .zip the Predict tab exports and imports, and what it refuses (unknown format
// version or network, inconsistent model.json, a zip whose model files unpack too large). Folders
// stored before `architecture` existed still read.
import { zipSync } from 'fflate';
import { beforeAll, describe, expect, it } from 'vitest';
import { memorySource } from '../../src/io/file-source.ts';
import {
  archFromFolder,
  decodeModelFolder,
  encodeModelFolder,
  MODEL_FILES,
  unpackModelFolder,
  zipModelFolder,
  type PackageEntry,
} from '../../src/model/model-folder.ts';
import { twoStageModel } from './helpers/tiny-model.ts';

let files: Record<string, Uint8Array>;
const enc = new TextEncoder();
const dec = new TextDecoder();
const modelJson = (f: Record<string, Uint8Array>) => JSON.parse(dec.decode(f[MODEL_FILES.model]));
const withModelJson = (
  f: Record<string, Uint8Array>,
  edit: (m: Record<string, unknown>) => void,
) => {
  const m = modelJson(f);
  edit(m);
  return { ...f, [MODEL_FILES.model]: enc.encode(JSON.stringify(m)) };
};
const entries = (f: Record<string, Uint8Array>, prefix = ''): PackageEntry[] =>
  Object.entries(f).map(([p, b]) => ({ path: prefix + p, bytes: async () => b }));

beforeAll(async () => {
  files = encodeModelFolder({
    ...(await twoStageModel()),
    provenance: { trained_by: 'test', method: 'local', epochs: 2, validation_dice: 0.5 },
  });
});

describe('model folder format', () => {
  it('model.json names the format and version, the architecture (nnU-Net class + kwargs) and the provenance', async () => {
    const m = modelJson(files);
    expect(m).toMatchObject({
      format: 'fednnunet-model',
      version: 1,
      num_input_channels: 1,
      num_segmentation_heads: 3,
      provenance: { trained_by: 'test', epochs: 2, validation_dice: 0.5 },
    });
    expect(m.architecture.network_class_name).toMatch(/PlainConvUNet$/);
    const md = await decodeModelFolder(memorySource('m', files));
    expect(md.architecture.arch_kwargs).toEqual(
      (md.plans.configurations[md.configuration] as { architecture: { arch_kwargs: unknown } })
        .architecture.arch_kwargs,
    );
    expect(md.provenance).toEqual(m.provenance);
  });

  it('the architecture comes from model.json, not from the plans', async () => {
    // Plans of another network: model.json's architecture is what the weights were trained with.
    const plans = JSON.parse(dec.decode(files[MODEL_FILES.plans]));
    const cfg = Object.values(plans.configurations)[0] as {
      architecture: { arch_kwargs: { features_per_stage: number[] } };
    };
    cfg.architecture.arch_kwargs.features_per_stage = [99, 99];
    const md = await decodeModelFolder(
      memorySource('m', { ...files, [MODEL_FILES.plans]: enc.encode(JSON.stringify(plans)) }),
    );
    expect(archFromFolder(md).features).toEqual(
      modelJson(files).architecture.arch_kwargs.features_per_stage,
    );
  });

  it("reads a folder stored before model.json had an architecture (browsers' IndexedDB): taken from the plans", async () => {
    const old = withModelJson(files, (m) => {
      delete m.architecture;
      delete m.provenance;
      m.training = { epochs: 3 };
    });
    const md = await decodeModelFolder(memorySource('old', old));
    expect(archFromFolder(md)).toEqual(
      archFromFolder(await decodeModelFolder(memorySource('m', files))),
    );
    expect(md.meta.training).toEqual({ epochs: 3 });
  });

  it('refuses an unknown version or format, an unsupported network, and a model.json that contradicts dataset.json', async () => {
    await expect(
      decodeModelFolder(
        memorySource(
          'm',
          withModelJson(files, (m) => (m.version = 2)),
        ),
      ),
    ).rejects.toThrow(/fednnunet-model version 2 is not supported \(this build reads version 1/);
    await expect(
      decodeModelFolder(
        memorySource(
          'm',
          withModelJson(files, (m) => (m.format = 'other')),
        ),
      ),
    ).rejects.toThrow(/format 'other', expected 'fednnunet-model'/);
    const resunet = withModelJson(
      files,
      (m) =>
        ((m.architecture as { network_class_name: string }).network_class_name =
          'dynamic_network_architectures.architectures.unet.ResidualUNet'),
    );
    await expect(decodeModelFolder(memorySource('m', resunet))).rejects.toThrow(
      /network '.*\.ResidualUNet' is not supported by this build/,
    );
    await expect(
      decodeModelFolder(
        memorySource(
          'm',
          withModelJson(files, (m) => (m.num_segmentation_heads = 4)),
        ),
      ),
    ).rejects.toThrow(/3 input channels|dataset.json gives 1 \/ 3/);
    await expect(
      decodeModelFolder(memorySource('m', { ...files, [MODEL_FILES.model]: enc.encode('{oops') })),
    ).rejects.toThrow(/model.json: invalid JSON/);
  });
});

describe("model folder .zip (the Predict tab's export and import)", () => {
  it('zip → unpack gives the same files; a folder nested in a zip or picked with extra files works too', async () => {
    const zip = zipModelFolder({ ...files, 'checkpoint_final.ckpt': new Uint8Array(10) });
    const a = await unpackModelFolder([{ path: 'My model.zip', bytes: async () => zip }]);
    expect(a.folder).toBe('My model');
    expect(Object.keys(a.files).sort()).toEqual(Object.keys(files).sort());
    for (const [k, b] of Object.entries(files))
      expect(Buffer.from(a.files[k]).equals(Buffer.from(b))).toBe(true);
    const nested = zipSync({ outer: { Liver: files } } as never);
    const b = await unpackModelFolder([{ path: 'x.zip', bytes: async () => nested }]);
    expect(b.folder).toBe('Liver');
    expect(Object.keys(b.files).sort()).toEqual(Object.keys(files).sort());
    const c = await unpackModelFolder([
      ...entries(files, 'run1/'),
      { path: 'run1/training_log.json', bytes: async () => new Uint8Array(3) },
      { path: 'run1/.DS_Store', bytes: async () => new Uint8Array(1) },
    ]);
    expect(c.folder).toBe('run1');
    expect(Object.keys(c.files).sort()).toEqual(Object.keys(files).sort());
    await decodeModelFolder(memorySource(c.folder, c.files));
  });

  it('a zip given with a reader by range: only its directory and the model files are read', async () => {
    // A 2 MiB checkpoint (random, so stored as big as it is) packed beside the model.
    const ckpt = new Uint8Array(2 ** 21).map((_, i) => (i * 2654435761) >>> 24);
    const zip = zipSync({ ...files, 'checkpoint_final.ckpt': [ckpt, { level: 0 }] } as never);
    let read = 0;
    const readAt = async (o: number, n: number) => {
      read += n;
      return zip.slice(o, o + n);
    };
    const never = async (): Promise<Uint8Array> => {
      throw new Error('the whole zip was read');
    };
    const a = await unpackModelFolder([
      { path: 'm.zip', bytes: never, zip: { size: zip.length, readAt } },
    ]);
    expect(Object.keys(a.files).sort()).toEqual(Object.keys(files).sort());
    for (const [k, b] of Object.entries(files))
      expect(Buffer.from(a.files[k]).equals(Buffer.from(b)), k).toBe(true);
    expect(zip.length).toBeGreaterThan(2 ** 21);
    // The model files (~20 KiB deflated), the directory and the end records' 64 KiB search window.
    expect(read).toBeLessThan(128 * 1024);
    // A damaged entry is refused with the zip's name (CRC checked on the range read).
    const bad = zip.slice();
    const at = Buffer.from(bad).indexOf('weights.bin') + 'weights.bin'.length;
    bad[at + 10] ^= 0xff;
    await expect(
      unpackModelFolder([
        {
          path: 'm.zip',
          bytes: never,
          zip: { size: bad.length, readAt: async (o, n) => bad.slice(o, o + n) },
        },
      ]),
    ).rejects.toThrow(/m.zip: not a readable .zip/);
  });

  it('refuses a zip without model.json and a corrupt zip, with a message', async () => {
    const { [MODEL_FILES.model]: _m, ...rest } = files;
    await expect(
      unpackModelFolder([{ path: 'a.zip', bytes: async () => zipSync(rest) }]),
    ).rejects.toThrow(/no model.json among the 4 file\(s\)/);
    await expect(
      unpackModelFolder([
        { path: 'a.zip', bytes: async () => new Uint8Array([80, 75, 3, 4, 1, 2, 3]) },
      ]),
    ).rejects.toThrow(/a.zip: not a readable .zip/);
  });
});
