import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { zipSync } from 'fflate';
import { PickleError, PyTuple, toPlain, unpickle } from '../../src/io/pickle.ts';
import {
  readNnUNetCheckpoint,
  readTorchCheckpoint,
  TorchCheckpointError,
} from '../../src/io/torch-checkpoint.ts';
import { REFERENCE } from '../paths.ts';

const DS = `${REFERENCE}/nnunet-model/Dataset801_PhantomMR`;
const MODEL = `${DS}/nnUNetTrainer__nnUNetPlans__3d_fullres`;
const ckptPath = (fold: number) => `${MODEL}/fold_${fold}/checkpoint_final.pth`;
const layout = JSON.parse(readFileSync(`${DS}/checkpoint_layout.json`, 'utf8'));
const enc = (s: string) => new TextEncoder().encode(s);
const bytesOf = (...parts: (number[] | string)[]) =>
  Uint8Array.from(parts.flatMap((p) => (typeof p === 'string' ? [...enc(p)] : p)));

// rows like "name [8, 1, 3, 3, 3] storage=0 offset=0 stride=[27, 27, 9, 3, 1]"
const rows: Array<{ name: string; shape: number[]; storage: string; offset: number }> =
  layout.network_weights['rows (key shape storage_key storage_offset stride)'].map((r: string) => {
    const m = /^(\S+) \[([\d, ]*)\] storage=(\d+) offset=(\d+)/.exec(r)!;
    return {
      name: m[1],
      shape: m[2] ? m[2].split(', ').map(Number) : [],
      storage: m[3],
      offset: Number(m[4]),
    };
  });

describe('torch checkpoint reader', () => {
  it('reads both nnU-Net checkpoints: weights, init_args, trainer, mirroring axes, epoch', () => {
    const plans = JSON.parse(readFileSync(`${MODEL}/plans.json`, 'utf8'));
    const dataset = JSON.parse(readFileSync(`${MODEL}/dataset.json`, 'utf8'));
    for (const fold of [0, 1]) {
      const c = readNnUNetCheckpoint(new Uint8Array(readFileSync(ckptPath(fold))));
      expect(c.trainerName).toBe('nnUNetTrainer');
      expect(c.currentEpoch).toBe(30);
      expect(c.inferenceAllowedMirroringAxes).toEqual([0, 1, 2]);
      expect([...c.networkWeights.keys()]).toEqual(rows.map((r) => r.name));
      for (const r of rows) {
        const t = c.networkWeights.get(r.name)!;
        expect(t.dtype).toBe('float32');
        expect(t.shape).toEqual(r.shape);
        expect(t.data.length).toBe(r.shape.reduce((a, b) => a * b, 1));
      }
      const ia = c.initArgs;
      expect(ia.get('configuration')).toBe('3d_fullres');
      expect(ia.get('fold')).toBe(fold);
      expect((ia.get('device') as { type: string }).type).toBe('cpu');
      expect(toPlain(ia.get('dataset_json')!)).toEqual(dataset);
      expect((toPlain(ia.get('plans')!) as typeof plans).configurations).toEqual(
        plans.configurations,
      );
    }
  });

  it('tensor values are the raw little-endian storage bytes at the offsets the zip directory gives', () => {
    // Independent of fflate: slice the storage straight out of the file using the layout's offsets.
    const file = new Uint8Array(readFileSync(ckptPath(0)));
    const c = readNnUNetCheckpoint(file);
    const entries = new Map<string, { data_offset: number; size: number }>(
      layout.zip.entries.map((e: { name: string; data_offset: number; size: number }) => [
        e.name,
        e,
      ]),
    );
    let checked = 0;
    for (const r of rows) {
      const e = entries.get(`checkpoint_final/data/${r.storage}`)!;
      const n = r.shape.reduce((a, b) => a * b, 1);
      const raw = file.slice(e.data_offset + 4 * r.offset, e.data_offset + 4 * (r.offset + n));
      expect(Array.from(c.networkWeights.get(r.name)!.data as Float32Array)).toEqual(
        Array.from(new Float32Array(raw.buffer)),
      );
      checked++;
    }
    expect(checked).toBe(136);
  });

  it('refuses a forbidden global (os.system via REDUCE) without running anything', () => {
    // protocol 2: GLOBAL 'os system', BINUNICODE 'echo pwned', TUPLE1, REDUCE, STOP
    const evil = bytesOf(
      [0x80, 2],
      'cos\nsystem\n',
      [0x58, 10, 0, 0, 0],
      'echo pwned',
      [0x85, 0x52, 0x2e],
    );
    expect(() => unpickle(evil, { globals: {} })).toThrow(/global "os system".*not allowed/);
    // the same inside a torch-style zip
    const zip = zipSync(
      { 'checkpoint_final/data.pkl': evil, 'checkpoint_final/version': enc('3\n') },
      { level: 0 },
    );
    expect(() => readTorchCheckpoint(zip)).toThrow(PickleError);
    expect(() => readTorchCheckpoint(zip)).toThrow(/os system/);
    // STACK_GLOBAL (protocol 4) of builtins.eval is refused the same way
    const evil4 = bytesOf(
      [0x80, 4, 0x8c, 8],
      'builtins',
      [0x8c, 4],
      'eval',
      [0x93, 0x8c, 1],
      '1',
      [0x85, 0x52, 0x2e],
    );
    expect(() => unpickle(evil4, { globals: {} })).toThrow(/global "builtins eval"/);
    // an opcode outside the allow-list (INST) is named
    expect(() =>
      unpickle(bytesOf([0x80, 2, 0x28], 'ios\nsystem\n', [0x2e]), { globals: {} }),
    ).toThrow(/opcode INST/);
  });

  it('reads hand-written protocol 2 containers and keeps tuples distinct from lists', () => {
    // {'a': [1, (2, 3.5)], 'b': None}
    const p = bytesOf(
      [0x80, 2, 0x7d, 0x28, 0x58, 1, 0, 0, 0],
      'a',
      [0x5d, 0x28, 0x4b, 1, 0x4b, 2, 0x47, 0x40, 0x0c, 0, 0, 0, 0, 0, 0, 0x86, 0x65],
      [0x58, 1, 0, 0, 0],
      'b',
      [0x4e, 0x75, 0x2e],
    );
    const v = unpickle(p, { globals: {} }) as Map<string, unknown>;
    expect(toPlain(v)).toEqual({ a: [1, [2, 3.5]], b: null });
    expect((v.get('a') as unknown[])[1]).toBeInstanceOf(PyTuple);
    expect(v.get('a') as unknown[]).not.toBeInstanceOf(PyTuple);
  });

  it('truncated and bit-flipped checkpoints fail with clean errors (bounded fuzz)', () => {
    const file = new Uint8Array(readFileSync(ckptPath(0)));
    const pkl = layout.zip.entries[0] as { data_offset: number; size: number };
    let seed = 801;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const clean = (f: Uint8Array) => {
      try {
        readNnUNetCheckpoint(f);
        return 'ok';
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        expect([PickleError, TorchCheckpointError].some((C) => e instanceof C)).toBe(true);
        return 'error';
      }
    };
    const outcomes = { ok: 0, error: 0 };
    for (let i = 0; i < 40; i++)
      outcomes[clean(file.subarray(0, Math.floor(rand() * file.length)))]++;
    // the pickle stream truncated inside a well-formed zip
    const inner = file.subarray(pkl.data_offset, pkl.data_offset + pkl.size);
    for (let i = 0; i < 40; i++) {
      const z = zipSync(
        { 'checkpoint_final/data.pkl': inner.slice(0, Math.floor(rand() * inner.length)) },
        { level: 0 },
      );
      outcomes[clean(z)]++;
    }
    // bit flips in the pickle, the zip headers and the central directory
    const tail = file.length - 12000;
    for (let i = 0; i < 120; i++) {
      const f = file.slice();
      for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) {
        const at =
          rand() < 0.7
            ? pkl.data_offset + Math.floor(rand() * pkl.size)
            : rand() < 0.5
              ? Math.floor(rand() * 64)
              : tail + Math.floor(rand() * 12000);
        f[at] ^= 1 << Math.floor(rand() * 8);
      }
      outcomes[clean(f)]++;
    }
    expect(outcomes.error).toBeGreaterThan(80);
  });
});
