// A small writer of Python pickles, protocol 2 (what `torch.save` uses), for the values an nnU-Net
// checkpoint holds: None, bools, ints, floats, str, lists, tuples, dicts, and calls of named
// globals (REDUCE, optionally BUILD and dict items, e.g. `collections.OrderedDict()`), plus
// persistent ids (torch storages, via a hook as Python's Pickler.persistent_id).
//
// Written by hand: no maintained npm package writes pickles that torch.load accepts (the npm
// pickle packages are readers, or writers of plain data only without globals/persistent ids). The
// subset is the mirror of the allow-list reader in pickle.ts, which reads everything written here.
import { PyTuple } from './pickle.ts';

export class PickleWriteError extends Error {
  override name = 'PickleWriteError';
}

/** A float even when integral (JS numbers that are integers are written as Python ints). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** A module-level name, e.g. `torch FloatStorage`. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
}

/** `fn(*args)`, then `BUILD state` if given, then `obj[k] = v` for each item (OrderedDict). */
export class PyReduce {
  constructor(
    readonly fn: PyGlobal,
    readonly args: PyValueOut[],
    readonly opts: { state?: PyValueOut; items?: Array<[PyValueOut, PyValueOut]> } = {},
  ) {}
}

export type PyValueOut =
  | null
  | boolean
  | number
  | bigint
  | string
  | PyFloat
  | PyGlobal
  | PyReduce
  | PyTuple
  | PyValueOut[]
  | Map<PyValueOut, PyValueOut>
  | { [k: string]: PyValueOut }
  | object; // anything `persistentId` turns into a persistent id

export interface PickleWriteOptions {
  /** Called for every object first; a non-undefined result is written as its persistent id. */
  persistentId?(obj: object): PyValueOut | undefined;
  /** Then this: a PyReduce result is written in the object's place (Python's __reduce__). */
  reduce?(obj: object): PyReduce | undefined;
}

const BATCH = 1000; // Python's pickler batches APPENDS/SETITEMS by 1000 too

/** The pickle of `value` (protocol 2). Shared objects are written once and referenced (memo). */
export function pickle(value: PyValueOut, opts: PickleWriteOptions = {}): Uint8Array {
  let buf = new Uint8Array(1 << 16);
  let len = 0;
  const enc = new TextEncoder();
  const memo = new Map<object | string, number>();
  const ensure = (n: number) => {
    if (len + n <= buf.length) return;
    let cap = buf.length * 2;
    while (cap < len + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(buf.subarray(0, len));
    buf = b;
  };
  const byte = (b: number) => {
    ensure(1);
    buf[len++] = b;
  };
  const bytes = (b: Uint8Array) => {
    ensure(b.length);
    buf.set(b, len);
    len += b.length;
  };
  const u32 = (v: number) => {
    ensure(4);
    new DataView(buf.buffer).setUint32(len, v, true);
    len += 4;
  };
  const put = (key: object | string) => {
    const i = memo.size;
    memo.set(key, i);
    if (i < 256) {
      byte(0x71); // BINPUT
      byte(i);
    } else {
      byte(0x72); // LONG_BINPUT
      u32(i);
    }
  };
  const get = (i: number) => {
    if (i < 256) {
      byte(0x68); // BINGET
      byte(i);
    } else {
      byte(0x6a); // LONG_BINGET
      u32(i);
    }
  };
  const int = (v: number | bigint) => {
    if (typeof v === 'number' && v >= 0 && v < 256) {
      byte(0x4b); // BININT1
      byte(v);
      return;
    }
    if (typeof v === 'number' && v >= 0 && v < 65536) {
      byte(0x4d); // BININT2
      byte(v & 0xff);
      byte(v >> 8);
      return;
    }
    if (typeof v === 'number' && v >= -(2 ** 31) && v < 2 ** 31) {
      byte(0x4a); // BININT
      ensure(4);
      new DataView(buf.buffer).setInt32(len, v, true);
      len += 4;
      return;
    }
    // LONG1: little-endian two's complement, as short as the sign allows
    let b = BigInt(v);
    const out: number[] = [];
    for (;;) {
      out.push(Number(b & 0xffn));
      b >>= 8n;
      const sign = out[out.length - 1] & 0x80;
      if ((b === 0n && !sign) || (b === -1n && sign)) break;
    }
    if (out.length > 255) throw new PickleWriteError('integer too large');
    byte(0x8a);
    byte(out.length);
    for (const x of out) byte(x);
  };
  const float = (v: number) => {
    byte(0x47); // BINFLOAT, big-endian
    ensure(8);
    new DataView(buf.buffer).setFloat64(len, v, false);
    len += 8;
  };
  const str = (s: string) => {
    const b = enc.encode(s);
    byte(0x58); // BINUNICODE
    u32(b.length);
    bytes(b);
  };
  const global = (g: PyGlobal) => {
    const key = `global ${g.module} ${g.name}`;
    const m = memo.get(key);
    if (m !== undefined) return get(m);
    if (/[\n\s]/.test(g.module + g.name)) throw new PickleWriteError('bad global name');
    byte(0x63); // GLOBAL
    bytes(enc.encode(`${g.module}\n${g.name}\n`));
    put(key);
  };
  const items = (entries: Iterable<[PyValueOut, PyValueOut]>, depth: number) => {
    let n = 0;
    for (const [k, v] of entries) {
      if (n % BATCH === 0) {
        if (n) byte(0x75); // SETITEMS
        byte(0x28); // MARK
      }
      write(k, depth);
      write(v, depth);
      n++;
    }
    if (n) byte(0x75);
  };
  const tuple = (t: readonly PyValueOut[], depth: number) => {
    if (t.length === 0) return byte(0x29); // EMPTY_TUPLE
    if (t.length > 3) byte(0x28); // MARK
    for (const v of t) write(v, depth);
    byte(t.length === 1 ? 0x85 : t.length === 2 ? 0x86 : t.length === 3 ? 0x87 : 0x74);
  };

  function write(v: PyValueOut, depth: number): void {
    if (depth > 100) throw new PickleWriteError('value nested too deeply');
    const d = depth + 1;
    if (v === null || v === undefined) return byte(0x4e); // NONE
    if (v === true) return byte(0x88);
    if (v === false) return byte(0x89);
    if (typeof v === 'bigint') return int(v);
    if (typeof v === 'number') {
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) return int(v);
      return float(v);
    }
    if (typeof v === 'string') return str(v);
    if (v instanceof PyFloat) return float(v.value);
    if (v instanceof PyGlobal) return global(v);
    const seen = memo.get(v);
    if (seen !== undefined) return get(seen);
    const pid = opts.persistentId?.(v);
    if (pid !== undefined) {
      write(pid, d);
      byte(0x51); // BINPERSID
      return;
    }
    const r = opts.reduce?.(v);
    if (r !== undefined) return write(r, depth);
    if (v instanceof PyTuple) {
      tuple(v, d);
      put(v);
    } else if (Array.isArray(v)) {
      byte(0x5d); // EMPTY_LIST
      put(v);
      for (let i = 0; i < v.length; i += BATCH) {
        byte(0x28);
        for (const x of v.slice(i, i + BATCH)) write(x, d);
        byte(0x65); // APPENDS
      }
    } else if (v instanceof PyReduce) {
      global(v.fn);
      tuple(v.args, d);
      byte(0x52); // REDUCE
      put(v);
      // Python's save_reduce order: dict items first, then BUILD with the state.
      if (v.opts.items) items(v.opts.items, d);
      if (v.opts.state !== undefined) {
        write(v.opts.state, d);
        byte(0x62); // BUILD
      }
    } else if (v instanceof Map) {
      byte(0x7d); // EMPTY_DICT
      put(v);
      items(v, d);
    } else if (Object.getPrototypeOf(v) === Object.prototype) {
      byte(0x7d);
      put(v);
      items(Object.entries(v as Record<string, PyValueOut>), d);
    } else {
      throw new PickleWriteError(`cannot pickle a ${v.constructor?.name ?? typeof v}`);
    }
  }

  byte(0x80); // PROTO 2
  byte(2);
  write(value, 0);
  byte(0x2e); // STOP
  return buf.slice(0, len);
}
