// Writes what `torch.save(obj, "<root>.pth")` writes (the zip format torch uses since 1.6): a zip
// of STORED entries, data aligned to 64 bytes, all under one folder named after the file:
// `<root>/data.pkl` (the object, pickle protocol 2; tensors as `torch._utils._rebuild_tensor_v2`
// calls whose storages are persistent ids), `<root>/byteorder` ("little"), `<root>/data/<key>`
// (each storage's raw little-endian bytes, keys "0".."N-1" in the order first pickled) and
// `<root>/version` ("3\n"). Tensors sharing a storage object share one data entry, as in torch.
//
// Hand-written (pickle-write.ts, zip-archive.ts): no npm library writes torch checkpoints. The
// output goes back through our own allow-list reader (torch-checkpoint.ts) in the tests, and
// through torch.load where Python with torch is installed (test/unit/nnunet-export.test.ts).
import { PyTuple } from './pickle.ts';
import { pickle, PyGlobal, PyReduce, type PyValueOut } from './pickle-write.ts';
import { storedZip } from './zip-archive.ts';

export type TorchSaveDType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'uint8';

const STORAGE: Record<TorchSaveDType, { name: string; size: number }> = {
  float32: { name: 'FloatStorage', size: 4 },
  float64: { name: 'DoubleStorage', size: 8 },
  float16: { name: 'HalfStorage', size: 2 },
  int64: { name: 'LongStorage', size: 8 },
  int32: { name: 'IntStorage', size: 4 },
  uint8: { name: 'ByteStorage', size: 1 },
};

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** A storage: raw bytes of one dtype (kept as a view; never copied here). */
export class TorchStorageOut {
  readonly numel: number;
  readonly bytes: Uint8Array;
  constructor(
    readonly dtype: TorchSaveDType,
    data: ArrayBufferView,
  ) {
    if (!LITTLE_ENDIAN) throw new Error('writing torch storages needs a little-endian platform');
    this.bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const size = STORAGE[dtype].size;
    if (this.bytes.length % size) throw new Error(`storage bytes are not whole ${dtype} values`);
    this.numel = this.bytes.length / size;
  }
}

/** A tensor over a storage (contiguous row-major unless a stride is given). */
export class TorchTensorOut {
  readonly offset: number;
  readonly stride: number[];
  constructor(
    readonly storage: TorchStorageOut,
    readonly shape: readonly number[],
    opts: { offset?: number; stride?: readonly number[] } = {},
  ) {
    this.offset = opts.offset ?? 0;
    const stride: number[] = [];
    let s = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      stride[i] = s;
      s *= shape[i];
    }
    this.stride = opts.stride ? [...opts.stride] : stride;
    if (this.stride.length !== shape.length) throw new Error('tensor stride and shape differ');
    let last = this.offset;
    for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * this.stride[i];
    if (s > 0 && last >= storage.numel)
      throw new Error(`tensor [${shape}] reaches past its storage of ${storage.numel}`);
  }
}

/** A Python tuple of the given items. */
export function tuple(...items: PyValueOut[]): PyTuple {
  const t = new PyTuple();
  for (const v of items) t.push(v as never);
  return t;
}

const REBUILD = new PyGlobal('torch._utils', '_rebuild_tensor_v2');
export const ORDERED_DICT = new PyGlobal('collections', 'OrderedDict');

/** `collections.OrderedDict(items)`, as torch pickles a state_dict. */
export function orderedDict(items: Array<[PyValueOut, PyValueOut]>): PyReduce {
  return new PyReduce(ORDERED_DICT, [], { items });
}

/** The file's parts (write them in order, or make a Blob of them). `root` names the zip folder. */
export function torchSave(obj: PyValueOut, root: string): Uint8Array[] {
  if (!/^[A-Za-z0-9_.-]+$/.test(root)) throw new Error(`bad torch archive name '${root}'`);
  const storages: TorchStorageOut[] = [];
  const keys = new Map<TorchStorageOut, string>();
  const pkl = pickle(obj, {
    persistentId: (o) => {
      if (!(o instanceof TorchStorageOut)) return undefined;
      let key = keys.get(o);
      if (key === undefined) {
        key = String(storages.length);
        keys.set(o, key);
        storages.push(o);
      }
      return tuple('storage', new PyGlobal('torch', STORAGE[o.dtype].name), key, 'cpu', o.numel);
    },
    reduce: (o) =>
      o instanceof TorchTensorOut
        ? new PyReduce(REBUILD, [
            o.storage,
            o.offset,
            tuple(...o.shape),
            tuple(...o.stride),
            false,
            orderedDict([]),
          ])
        : undefined,
  });
  const text = (s: string) => new TextEncoder().encode(s);
  return storedZip([
    { name: `${root}/data.pkl`, parts: [pkl] },
    { name: `${root}/byteorder`, parts: [text('little')] },
    ...storages.map((s, i) => ({ name: `${root}/data/${i}`, parts: [s.bytes] })),
    { name: `${root}/version`, parts: [text('3\n')] },
  ]);
}
