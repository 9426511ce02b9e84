// A restricted reader for Python pickles (protocols 2–4), enough for what `torch.save` writes for
// an nnU-Net checkpoint. It never runs code: every GLOBAL is looked up in a table the caller passes
// (name -> pure JS constructor), and any opcode or global outside the known set is refused with an
// error naming it.
//
// Written by hand on purpose: the npm parsers (jpickle 0.4, unmaintained since 2015; pickleparser
// 0.2, a single-maintainer project) resolve unknown globals to placeholder objects or a registry
// they fill silently, instead of refusing them, and neither bounds memo/stack growth on hostile
// input. The subset needed here is small (≈40 opcodes), so an allow-list reader is the safer choice.

export class PickleError extends Error {
  override name = 'PickleError';
}

/** A Python tuple (kept distinct from lists so callers can tell `(0, 1, 2)` from `[0, 1, 2]`). */
export class PyTuple extends Array<PickleValue> {}

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PyTuple
  | Map<PickleValue, PickleValue>
  | object;

/** What a GLOBAL may become: a callable for REDUCE and optionally a BUILD (setstate) handler. */
export interface PickleGlobal {
  /** Called for `REDUCE` with the argument tuple; must validate its arguments. */
  call(args: PickleValue[]): PickleValue;
  /** Called for `BUILD` on an object this global produced; returns the (possibly new) object. */
  build?(obj: PickleValue, state: PickleValue): PickleValue;
}

export interface UnpickleOptions {
  /** Allowed globals keyed "module name" (as pickletools prints them). */
  globals: Record<string, PickleGlobal>;
  /** Resolves BINPERSID ids (torch storages); absent = persistent ids refused. */
  persistentLoad?(pid: PickleValue): PickleValue;
}

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

/** Objects that BUILD may update, mapped to the global that made them. */
type Owner = WeakMap<object, PickleGlobal>;

const OP_NAMES: Record<number, string> = {
  0x28: 'MARK',
  0x2e: 'STOP',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4c: 'LONG',
  0x4d: 'BININT2',
  0x4e: 'NONE',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x52: 'REDUCE',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x58: 'BINUNICODE',
  0x61: 'APPEND',
  0x62: 'BUILD',
  0x63: 'GLOBAL',
  0x64: 'DICT',
  0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS',
  0x67: 'GET',
  0x68: 'BINGET',
  0x69: 'INST',
  0x6a: 'LONG_BINGET',
  0x6c: 'LIST',
  0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x73: 'SETITEM',
  0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE',
  0x75: 'SETITEMS',
  0x47: 'BINFLOAT',
  0x80: 'PROTO',
  0x81: 'NEWOBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE',
  0x95: 'FRAME',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

function opName(op: number): string {
  return OP_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`;
}

/** Reads one pickle; refuses anything outside the allow-list. Memory is bounded by the input size. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions): PickleValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let stack: StackItem[] = [];
  const marks: StackItem[][] = [];
  const memo = new Map<number, PickleValue>();
  const owners: Owner = new WeakMap();

  const need = (n: number, what: string): number => {
    if (n < 0 || pos + n > bytes.length)
      throw new PickleError(`pickle truncated reading ${what} at byte ${pos}`);
    const p = pos;
    pos += n;
    return p;
  };
  const u8 = (w: string) => bytes[need(1, w)];
  const u16 = (w: string) => view.getUint16(need(2, w), true);
  const u32 = (w: string) => view.getUint32(need(4, w), true);
  const i32 = (w: string) => view.getInt32(need(4, w), true);
  const str = (n: number, w: string): string => {
    const p = need(n, w);
    try {
      return utf8.decode(bytes.subarray(p, p + n));
    } catch {
      throw new PickleError(`invalid UTF-8 in ${w} at byte ${p}`);
    }
  };
  const line = (w: string): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new PickleError(`pickle truncated reading ${w} at byte ${pos}`);
    const s = str(end - pos, w);
    pos = end + 1;
    return s;
  };
  const pop = (op: string): PickleValue => {
    if (stack.length === 0) throw new PickleError(`${op}: stack underflow at byte ${pos - 1}`);
    const v = stack.pop()!;
    if (v === MARK) throw new PickleError(`${op}: unexpected MARK at byte ${pos - 1}`);
    return v;
  };
  const top = (op: string): PickleValue => {
    const v = stack[stack.length - 1];
    if (stack.length === 0 || v === MARK)
      throw new PickleError(`${op}: stack underflow at byte ${pos - 1}`);
    return v;
  };
  const popMark = (op: string): PickleValue[] => {
    const prev = marks.pop();
    if (!prev) throw new PickleError(`${op}: no MARK at byte ${pos - 1}`);
    const items = stack as PickleValue[];
    stack = prev;
    if (items.includes(MARK as never)) throw new PickleError(`${op}: stray MARK`);
    return items;
  };
  const asList = (v: PickleValue, op: string): PickleValue[] => {
    if (!Array.isArray(v) || v instanceof PyTuple)
      throw new PickleError(`${op} on a non-list at byte ${pos - 1}`);
    return v;
  };
  const asDict = (v: PickleValue, op: string): Map<PickleValue, PickleValue> => {
    if (!(v instanceof Map)) throw new PickleError(`${op} on a non-dict at byte ${pos - 1}`);
    return v;
  };
  const tuple = (items: PickleValue[]): PyTuple => {
    const t = new PyTuple();
    for (const v of items) t.push(v);
    return t;
  };
  const put = (i: number) => memo.set(i, top('PUT'));
  const get = (i: number): PickleValue => {
    if (!memo.has(i)) throw new PickleError(`memo key ${i} not defined at byte ${pos - 1}`);
    return memo.get(i)!;
  };
  const resolveGlobal = (module: string, name: string): PickleValue => {
    const key = `${module} ${name}`;
    const g = Object.hasOwn(opts.globals, key) ? opts.globals[key] : undefined;
    if (!g)
      throw new PickleError(
        `pickle refers to global "${key}", which is not allowed (no code is executed)`,
      );
    return g;
  };
  const setItems = (d: Map<PickleValue, PickleValue>, items: PickleValue[], op: string) => {
    if (items.length % 2) throw new PickleError(`${op}: odd number of items`);
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
  };

  for (;;) {
    const op = u8('opcode');
    switch (op) {
      case 0x80: {
        // PROTO
        const v = u8('protocol');
        if (v < 2 || v > 5) throw new PickleError(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95:
        need(8, 'FRAME');
        break; // framing only groups bytes; content is read linearly
      case 0x2e: {
        // STOP
        if (marks.length) throw new PickleError('STOP with an open MARK');
        const v = pop('STOP');
        if (stack.length) throw new PickleError('STOP with extra items on the stack');
        return v;
      }
      case 0x28:
        marks.push(stack);
        stack = [];
        break;
      case 0x30:
        pop('POP');
        break;
      case 0x29:
        stack.push(new PyTuple());
        break;
      case 0x5d:
        stack.push([]);
        break;
      case 0x7d:
        stack.push(new Map());
        break;
      case 0x4e:
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4a:
        stack.push(i32('BININT'));
        break;
      case 0x4b:
        stack.push(u8('BININT1'));
        break;
      case 0x4d:
        stack.push(u16('BININT2'));
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement
        const n = u8('LONG1');
        const p = need(n, 'LONG1');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[p + i]);
        if (n > 0 && bytes[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(Number.isSafeInteger(Number(v)) ? Number(v) : v);
        break;
      }
      case 0x47:
        stack.push(view.getFloat64(need(8, 'BINFLOAT'), false));
        break;
      case 0x58:
        stack.push(str(u32('BINUNICODE'), 'BINUNICODE'));
        break;
      case 0x8c:
        stack.push(str(u8('SHORT_BINUNICODE'), 'SHORT_BINUNICODE'));
        break;
      case 0x43: {
        const n = u8('SHORT_BINBYTES');
        const p = need(n, 'SHORT_BINBYTES');
        stack.push(bytes.slice(p, p + n));
        break;
      }
      case 0x42: {
        const n = u32('BINBYTES');
        const p = need(n, 'BINBYTES');
        stack.push(bytes.slice(p, p + n));
        break;
      }
      case 0x71:
        put(u8('BINPUT'));
        break;
      case 0x72:
        put(u32('LONG_BINPUT'));
        break;
      case 0x94:
        memo.set(memo.size, top('MEMOIZE'));
        break;
      case 0x68:
        stack.push(get(u8('BINGET')));
        break;
      case 0x6a:
        stack.push(get(u32('LONG_BINGET')));
        break;
      case 0x74: {
        const t = tuple(popMark('TUPLE'));
        stack.push(t);
        break;
      } // evaluate before `stack.` (popMark swaps it)
      case 0x85: {
        const a = pop('TUPLE1');
        stack.push(tuple([a]));
        break;
      }
      case 0x86: {
        const b = pop('TUPLE2'),
          a = pop('TUPLE2');
        stack.push(tuple([a, b]));
        break;
      }
      case 0x87: {
        const c = pop('TUPLE3'),
          b = pop('TUPLE3'),
          a = pop('TUPLE3');
        stack.push(tuple([a, b, c]));
        break;
      }
      case 0x6c: {
        const l = popMark('LIST');
        stack.push(l);
        break;
      }
      case 0x61: {
        const v = pop('APPEND');
        asList(top('APPEND'), 'APPEND').push(v);
        break;
      }
      case 0x65: {
        const items = popMark('APPENDS');
        const l = asList(top('APPENDS'), 'APPENDS');
        for (const v of items) l.push(v);
        break;
      }
      case 0x64: {
        const d = new Map();
        setItems(d, popMark('DICT'), 'DICT');
        stack.push(d);
        break;
      }
      case 0x73: {
        const v = pop('SETITEM'),
          k = pop('SETITEM');
        asDict(top('SETITEM'), 'SETITEM').set(k, v);
        break;
      }
      case 0x75: {
        const items = popMark('SETITEMS');
        setItems(asDict(top('SETITEMS'), 'SETITEMS'), items, 'SETITEMS');
        break;
      }
      case 0x63: {
        const module = line('GLOBAL module');
        const name = line('GLOBAL name');
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        const name = pop('STACK_GLOBAL'),
          module = pop('STACK_GLOBAL');
        if (typeof name !== 'string' || typeof module !== 'string')
          throw new PickleError('STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop('BINPERSID');
        if (!opts.persistentLoad) throw new PickleError('persistent ids are not allowed here');
        stack.push(opts.persistentLoad(pid));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop('REDUCE'),
          fn = pop('REDUCE');
        if (!isGlobal(fn)) throw new PickleError(`REDUCE on a non-callable at byte ${pos - 1}`);
        if (!(args instanceof PyTuple))
          throw new PickleError(`REDUCE with non-tuple arguments at byte ${pos - 1}`);
        const v = fn.call([...args]);
        if (v !== null && typeof v === 'object') owners.set(v, fn);
        stack.push(v);
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop('BUILD'),
          obj = pop('BUILD');
        const g = obj !== null && typeof obj === 'object' ? owners.get(obj) : undefined;
        if (!g?.build)
          throw new PickleError(
            `BUILD on an object that has no allowed setstate at byte ${pos - 1}`,
          );
        const v = g.build(obj, state);
        if (v !== null && typeof v === 'object') owners.set(v, g);
        stack.push(v);
        break;
      }
      default:
        throw new PickleError(`pickle opcode ${opName(op)} at byte ${pos - 1} is not allowed`);
    }
  }
}

function isGlobal(v: PickleValue): v is PickleGlobal {
  return v !== null && typeof v === 'object' && typeof (v as PickleGlobal).call === 'function';
}

/** Converts dicts to plain objects (string/number keys only) and tuples to arrays, for JSON-like data. */
export function toPlain(v: PickleValue, depth = 0): unknown {
  if (depth > 200) throw new PickleError('value nested too deeply');
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of v) {
      if (typeof k !== 'string' && typeof k !== 'number')
        throw new PickleError('dict key is not a string or number');
      o[String(k)] = toPlain(x, depth + 1);
    }
    return o;
  }
  if (Array.isArray(v)) return v.map((x) => toPlain(x, depth + 1));
  return v;
}
