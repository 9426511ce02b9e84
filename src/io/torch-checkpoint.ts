// Reads a PyTorch `.pth` written by `torch.save` (zip container: `<root>/data.pkl` plus raw
// little-endian storages `<root>/data/<key>`) without executing anything: the pickle goes through
// the allow-list reader in pickle.ts, and only the globals that nnU-Net's checkpoint dict needs are
// known (tensor rebuild, legacy storage types, OrderedDict, torch.device, numpy scalars/arrays).
// Every tensor is bounded by its storage's zip entry, so memory stays within the file's size:
// entries are read through the zip's directory (zip-archive.ts) as views of the file, not copied,
// and the tensors that share a storage the same way (nnU-Net's state_dict aliases) are one object.
import { PickleError, PyTuple, unpickle, type PickleGlobal, type PickleValue } from './pickle.ts';
import { openZipBytes, ZipError, type ZipEntry } from './zip-archive.ts';

export class TorchCheckpointError extends Error {
  override name = 'TorchCheckpointError';
}

export type TorchDType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

const STORAGES: Record<string, { dtype: TorchDType; size: number }> = {
  FloatStorage: { dtype: 'float32', size: 4 },
  DoubleStorage: { dtype: 'float64', size: 8 },
  HalfStorage: { dtype: 'float16', size: 2 },
  BFloat16Storage: { dtype: 'bfloat16', size: 2 },
  LongStorage: { dtype: 'int64', size: 8 },
  IntStorage: { dtype: 'int32', size: 4 },
  ShortStorage: { dtype: 'int16', size: 2 },
  CharStorage: { dtype: 'int8', size: 1 },
  ByteStorage: { dtype: 'uint8', size: 1 },
  BoolStorage: { dtype: 'bool', size: 1 },
};

/** A tensor read from a checkpoint, made contiguous (row-major). Float16/bfloat16 keep raw bits. */
export interface TorchTensor {
  dtype: TorchDType;
  shape: number[];
  data:
    | Float32Array
    | Float64Array
    | Uint16Array
    | BigInt64Array
    | Int32Array
    | Int16Array
    | Int8Array
    | Uint8Array;
}

export class TorchDevice {
  constructor(
    readonly type: string,
    readonly index: number | null,
  ) {}
}

/** A numpy dtype (only the descr string and byte order matter here). */
export class NumpyDType {
  byteorder = '=';
  constructor(readonly descr: string) {}
}

export class NumpyArray {
  constructor(
    readonly dtype: string,
    readonly shape: number[],
    readonly data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array,
  ) {}
}

interface StorageRef {
  kind: 'storage';
  dtype: TorchDType;
  itemSize: number;
  key: string;
  numel: number;
}

const isInt = (v: PickleValue): v is number => typeof v === 'number' && Number.isSafeInteger(v);
const intTuple = (v: PickleValue, what: string): number[] => {
  if (!(v instanceof PyTuple) || !v.every((x) => isInt(x) && x >= 0))
    throw new TorchCheckpointError(`${what} is not a tuple of non-negative ints`);
  return v as number[];
};

function typedView(dtype: TorchDType, b: Uint8Array): TorchTensor['data'] {
  const [buf, o] = [b.buffer, b.byteOffset];
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf, o, b.length / 4);
    case 'float64':
      return new Float64Array(buf, o, b.length / 8);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(buf, o, b.length / 2);
    case 'int16':
      return new Int16Array(buf, o, b.length / 2);
    case 'int64':
      return new BigInt64Array(buf, o, b.length / 8);
    case 'int32':
      return new Int32Array(buf, o, b.length / 4);
    case 'int8':
      return new Int8Array(buf, o, b.length);
    case 'uint8':
    case 'bool':
      return new Uint8Array(buf, o, b.length);
  }
}

function numpyScalar(descr: string, raw: Uint8Array): number | bigint {
  const m = /^([<>|=]?)([fiub])(\d)$/.exec(descr);
  if (!m || raw.length !== Number(m[3]))
    throw new TorchCheckpointError(
      `numpy scalar of dtype "${descr}" with ${raw.length} bytes is not supported`,
    );
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const le = m[1] !== '>';
  const key = m[2] + m[3];
  switch (key) {
    case 'f8':
      return dv.getFloat64(0, le);
    case 'f4':
      return dv.getFloat32(0, le);
    case 'i8': {
      const v = dv.getBigInt64(0, le);
      return Number.isSafeInteger(Number(v)) ? Number(v) : v;
    }
    case 'i4':
      return dv.getInt32(0, le);
    case 'i2':
      return dv.getInt16(0, le);
    case 'i1':
      return dv.getInt8(0);
    case 'u1':
    case 'b1':
      return dv.getUint8(0);
    case 'u2':
      return dv.getUint16(0, le);
    case 'u4':
      return dv.getUint32(0, le);
  }
  throw new TorchCheckpointError(`numpy scalar of dtype "${descr}" is not supported`);
}

/** The allowed globals. `storages` gives entry bytes by key; tensors are checked against them. */
function checkpointGlobals(storage: (ref: StorageRef) => Uint8Array): Record<string, PickleGlobal> {
  const g: Record<string, PickleGlobal> = {};
  // Tensors over the same storage, offset, size and stride (state_dict aliases) are built once.
  const built = new Map<string, TorchTensor>();
  const fail = (m: string): never => {
    throw new TorchCheckpointError(m);
  };
  g['collections OrderedDict'] = {
    call: (args) =>
      args.length === 0 ? new Map() : fail('OrderedDict with arguments is not supported'),
    // state {"_metadata": ...} is module version info for load_state_dict; not needed here.
    build: (obj) => obj,
  };
  g['torch._utils _rebuild_tensor_v2'] = {
    call: (args) => {
      if (args.length < 6 || args.length > 7)
        fail(`_rebuild_tensor_v2 with ${args.length} arguments`);
      const ref = args[0] as unknown as StorageRef;
      if (!ref || (ref as { kind?: string }).kind !== 'storage')
        fail('_rebuild_tensor_v2 without a storage');
      const offset = args[1];
      if (!isInt(offset) || offset < 0) fail('tensor storage offset is not a non-negative int');
      const shape = intTuple(args[2], 'tensor size');
      const stride = intTuple(args[3], 'tensor stride');
      if (stride.length !== shape.length) fail('tensor size and stride differ in rank');
      const n = shape.reduce((a, b) => a * b, 1);
      // Bounded allocation: a tensor may not hold more elements than its storage.
      if (n > ref.numel) fail(`tensor of ${n} elements is larger than its storage (${ref.numel})`);
      let last = offset as number;
      for (let i = 0; i < shape.length; i++) if (shape[i] > 0) last += (shape[i] - 1) * stride[i];
      if (n > 0 && last >= ref.numel)
        fail(`tensor reaches past its storage (element ${last} of ${ref.numel})`);
      const cacheKey = `${ref.key} ${offset} ${shape} ${stride}`;
      const done = built.get(cacheKey);
      if (done) return done;
      const raw = storage(ref);
      const contiguous = shape.every(
        (_, i) => shape[i] === 1 || stride[i] === shape.slice(i + 1).reduce((a, b) => a * b, 1),
      );
      const start = raw.byteOffset + (offset as number) * ref.itemSize;
      let out: Uint8Array;
      if (contiguous && start % ref.itemSize === 0) {
        // A view of the file (torch aligns storages to 64 bytes): no copy.
        out = new Uint8Array(raw.buffer, start, n * ref.itemSize);
      } else if (contiguous) {
        out = raw.slice((offset as number) * ref.itemSize, ((offset as number) + n) * ref.itemSize);
      } else {
        out = new Uint8Array(n * ref.itemSize);
        const idx = new Array<number>(shape.length).fill(0);
        for (let k = 0; k < n; k++) {
          let src = offset as number;
          for (let i = 0; i < shape.length; i++) src += idx[i] * stride[i];
          out.set(raw.subarray(src * ref.itemSize, (src + 1) * ref.itemSize), k * ref.itemSize);
          for (let i = shape.length - 1; i >= 0; i--) {
            if (++idx[i] < shape[i]) break;
            idx[i] = 0;
          }
        }
      }
      const t: TorchTensor = {
        dtype: ref.dtype,
        shape: [...shape],
        data: typedView(ref.dtype, out),
      };
      built.set(cacheKey, t);
      return t;
    },
  };
  for (const name of Object.keys(STORAGES))
    g[`torch ${name}`] = { call: () => fail(`torch.${name} called directly`) };
  g['torch device'] = {
    call: (args) => {
      const [type, index] = args;
      if (
        typeof type !== 'string' ||
        args.length > 2 ||
        (index !== undefined && index !== null && !isInt(index))
      )
        fail('torch.device with bad arguments');
      return new TorchDevice(type as string, (index as number | undefined) ?? null);
    },
  };
  g['_codecs encode'] = {
    call: (args) => {
      const [s, enc] = args;
      if (typeof s !== 'string' || enc !== 'latin1')
        fail('_codecs.encode supports only latin1 strings');
      const str = s as string;
      const out = new Uint8Array(str.length);
      for (let i = 0; i < str.length; i++) {
        const c = str.charCodeAt(i);
        if (c > 255) fail('_codecs.encode: character outside latin1');
        out[i] = c;
      }
      return out;
    },
  };
  const dtype: PickleGlobal = {
    call: (args) => {
      if (typeof args[0] !== 'string') fail('numpy.dtype with a non-string descr');
      return new NumpyDType(args[0] as string);
    },
    build: (obj, state) => {
      if (state instanceof PyTuple && typeof state[1] === 'string')
        (obj as NumpyDType).byteorder = state[1];
      return obj;
    },
  };
  const scalar: PickleGlobal = {
    call: (args) => {
      const [dt, raw] = args;
      if (!(dt instanceof NumpyDType) || !(raw instanceof Uint8Array))
        fail('numpy scalar with bad arguments');
      const d = dt as NumpyDType;
      return numpyScalar(
        (d.byteorder === '>' ? '>' : '<') + d.descr.replace(/^[<>|=]/, ''),
        raw as Uint8Array,
      );
    },
  };
  const ndarrayType = { call: () => fail('numpy.ndarray called directly') };
  const reconstruct: PickleGlobal = {
    call: (args) => {
      if (args[0] !== ndarrayType) fail('numpy _reconstruct of a non-ndarray type');
      return { pendingNdarray: true };
    },
    build: (_obj, state) => {
      // state = (version, shape, dtype, is_fortran, raw bytes)
      if (!(state instanceof PyTuple) || state.length !== 5) fail('numpy array state malformed');
      const [, shapeV, dt, fortran, raw] = state as PyTuple;
      const shape = intTuple(shapeV, 'numpy array shape');
      if (!(dt instanceof NumpyDType) || !(raw instanceof Uint8Array) || fortran !== false)
        fail('numpy array state unsupported');
      const d = dt as NumpyDType;
      const m = /^[<|=]?([fiub])(\d)$/.exec(d.descr);
      if (!m || d.byteorder === '>') fail(`numpy array of dtype "${d.descr}" is not supported`);
      const n = shape.reduce((a, b) => a * b, 1);
      const size = Number(m![2]);
      const bytes = raw as Uint8Array;
      if (bytes.length !== n * size) fail('numpy array byte count does not match its shape');
      const buf = bytes.slice().buffer;
      const kind = m![1] + m![2];
      const data =
        kind === 'f4'
          ? new Float32Array(buf)
          : kind === 'f8'
            ? new Float64Array(buf)
            : kind === 'i4'
              ? new Int32Array(buf)
              : kind === 'i8'
                ? new BigInt64Array(buf)
                : kind === 'u1' || kind === 'b1'
                  ? new Uint8Array(buf)
                  : fail(`numpy array dtype ${kind} unsupported`);
      return new NumpyArray(kind, [...shape], data as NumpyArray['data']);
    },
  };
  for (const mod of ['numpy.core.multiarray', 'numpy._core.multiarray']) {
    g[`${mod} scalar`] = scalar;
    g[`${mod} _reconstruct`] = reconstruct;
  }
  g['numpy dtype'] = dtype;
  g['numpy ndarray'] = ndarrayType;
  return g;
}

export interface TorchCheckpoint {
  /** The unpickled object (dicts are Maps, tuples PyTuple, tensors TorchTensor). */
  root: PickleValue;
  /** The zip folder name all entries live under. */
  prefix: string;
}

/**
 * Parses a `.pth` file. Throws TorchCheckpointError / PickleError on anything unexpected. Tensors
 * may be views of `file` (do not reuse its bytes while they are in use).
 */
export function readTorchCheckpoint(file: Uint8Array): TorchCheckpoint {
  const byName = new Map<string, ZipEntry>();
  let zip;
  try {
    zip = openZipBytes(file, 'checkpoint');
    for (const e of zip.entries) byName.set(e.name, e);
  } catch (e) {
    throw new TorchCheckpointError(
      `not a readable torch zip checkpoint: ${(e as Error)?.message ?? String(e)}`,
    );
  }
  // torch stores entries uncompressed; a deflated one may not inflate past 64× the file.
  const read = (e: ZipEntry): Uint8Array => {
    try {
      return zip.read(e, { maxBytes: file.length * 64 });
    } catch (err) {
      if (err instanceof ZipError) throw new TorchCheckpointError(err.message);
      throw err;
    }
  };
  const pklName = [...byName.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pklName)
    throw new TorchCheckpointError(
      'no <root>/data.pkl in the checkpoint (legacy non-zip .pth files are not supported)',
    );
  const prefix = pklName.slice(0, -'data.pkl'.length);
  const orderEntry = byName.get(`${prefix}byteorder`);
  if (orderEntry && new TextDecoder().decode(read(orderEntry)).trim() !== 'little')
    throw new TorchCheckpointError('big-endian checkpoints are not supported');
  const storageCache = new Map<string, Uint8Array>();
  const storageBytes = (ref: StorageRef): Uint8Array => {
    let b = storageCache.get(ref.key);
    if (!b) {
      const e = byName.get(`${prefix}data/${ref.key}`);
      if (!e) throw new TorchCheckpointError(`storage ${ref.key} missing from the zip`);
      b = read(e);
      storageCache.set(ref.key, b);
    }
    if (b.length < ref.numel * ref.itemSize)
      throw new TorchCheckpointError(
        `storage ${ref.key} has ${b.length} bytes, needs ${ref.numel * ref.itemSize}`,
      );
    return b;
  };
  const storageTypes = new Map<PickleValue, string>();
  const globals = checkpointGlobals(storageBytes);
  for (const name of Object.keys(STORAGES)) storageTypes.set(globals[`torch ${name}`], name);
  const persistentLoad = (pid: PickleValue): PickleValue => {
    if (!(pid instanceof PyTuple) || pid.length !== 5 || pid[0] !== 'storage')
      throw new TorchCheckpointError('unsupported persistent id (expected a storage tuple)');
    const [, type, key, , numel] = pid;
    const name = storageTypes.get(type);
    if (!name) throw new TorchCheckpointError('persistent id with an unknown storage type');
    if (typeof key !== 'string' || !/^\d+$/.test(key))
      throw new TorchCheckpointError('storage key is not a decimal string');
    if (!isInt(numel) || numel < 0)
      throw new TorchCheckpointError('storage numel is not a non-negative int');
    const { dtype, size } = STORAGES[name!];
    const ref: StorageRef = {
      kind: 'storage',
      dtype,
      itemSize: size,
      key: key as string,
      numel: numel as number,
    };
    storageBytes(ref); // check presence and size now
    return ref as unknown as PickleValue;
  };
  const root = unpickle(read(byName.get(pklName)!), { globals, persistentLoad });
  return { root, prefix: prefix.slice(0, -1) };
}

export function isTorchTensor(v: unknown): v is TorchTensor {
  return (
    typeof v === 'object' &&
    v !== null &&
    'dtype' in v &&
    'shape' in v &&
    'data' in v &&
    !(v instanceof NumpyArray)
  );
}

/** float32 copy of a floating tensor (float16/bfloat16 widened). */
export function tensorToFloat32(t: TorchTensor): Float32Array {
  if (t.dtype === 'float32') return t.data as Float32Array;
  if (t.dtype === 'float64') return Float32Array.from(t.data as Float64Array);
  const src = t.data as Uint16Array;
  const out = new Float32Array(src.length);
  const u = new Uint32Array(out.buffer);
  if (t.dtype === 'bfloat16') {
    for (let i = 0; i < src.length; i++) u[i] = src[i] << 16;
    return out;
  }
  if (t.dtype === 'float16') {
    for (let i = 0; i < src.length; i++) {
      const h = src[i],
        s = h & 0x8000 ? -1 : 1,
        e = (h >> 10) & 0x1f,
        f = h & 0x3ff;
      out[i] =
        e === 0
          ? s * f * 2 ** -24
          : e === 31
            ? f
              ? NaN
              : s * Infinity
            : s * (1 + f / 1024) * 2 ** (e - 15);
    }
    return out;
  }
  throw new TorchCheckpointError(`tensor of dtype ${t.dtype} is not floating point`);
}

/** The pieces of an nnU-Net checkpoint the importer needs. */
export interface NnUNetCheckpoint {
  networkWeights: Map<string, TorchTensor>;
  initArgs: Map<PickleValue, PickleValue>;
  trainerName: string;
  inferenceAllowedMirroringAxes: number[] | null;
  currentEpoch: number;
}

export function readNnUNetCheckpoint(file: Uint8Array): NnUNetCheckpoint {
  const { root } = readTorchCheckpoint(file);
  if (!(root instanceof Map)) throw new TorchCheckpointError('checkpoint root is not a dict');
  const nw = root.get('network_weights');
  if (!(nw instanceof Map))
    throw new TorchCheckpointError('checkpoint has no network_weights dict');
  const networkWeights = new Map<string, TorchTensor>();
  for (const [k, v] of nw) {
    if (typeof k !== 'string' || !isTorchTensor(v))
      throw new TorchCheckpointError(`network_weights entry ${String(k)} is not a named tensor`);
    networkWeights.set(k, v);
  }
  const initArgs = root.get('init_args');
  if (!(initArgs instanceof Map))
    throw new TorchCheckpointError('checkpoint has no init_args dict');
  const trainerName = root.get('trainer_name');
  if (typeof trainerName !== 'string')
    throw new TorchCheckpointError('checkpoint has no trainer_name');
  const axes = root.get('inference_allowed_mirroring_axes');
  if (axes != null && !(axes instanceof PyTuple && axes.every(isInt)))
    throw new TorchCheckpointError('inference_allowed_mirroring_axes malformed');
  const epoch = root.get('current_epoch');
  if (epoch === undefined || !isInt(epoch))
    throw new TorchCheckpointError('checkpoint has no current_epoch');
  return {
    networkWeights,
    initArgs,
    trainerName,
    inferenceAllowedMirroringAxes: axes == null ? null : [...(axes as number[])],
    currentEpoch: epoch,
  };
}

export { PickleError };
