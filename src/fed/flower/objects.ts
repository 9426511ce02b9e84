// Flower's content-addressed message objects (flwr.supercore.inflatable, Flower 1.20+), as the
// Fleet API carries them. Every object is `"<Type> <child ids, comma-separated> <body length>\0<body>"`
// and its id is the hex SHA-256 of those bytes (WebCrypto, so this runs in Node, pages and workers).
//   Message     body: protobuf Message {metadata (message_id empty), error}; child: its RecordDict
//   RecordDict  body: JSON {record name: record id};            children: the records
//   ArrayRecord body: JSON {array name: array id};               children: the arrays
//   Array       body: JSON {dtype, shape, stype, arraychunk_ids}; children: its unique chunks
//   ArrayChunk  body: ≤ 5 MiB slice of the array's serialized data (.npy bytes for numpy arrays)
//   MetricRecord / ConfigRecord body: their protobuf messages
// Hand-written (no npm library implements this format); the layout follows Flower's Python code.
import Long from 'long';
import { flwr } from './generated/fleet.js';

const P = flwr.proto;

/** Flower's default chunk size (FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE). */
export const ARRAY_CHUNK_BYTES = 5 * 1024 * 1024;

/** An Array as Flower holds it: numpy dtype name, shape, serialization type and its bytes. */
export interface FlowerArray {
  /** numpy dtype name, e.g. 'float32'. */
  dtype: string;
  shape: number[];
  /** 'numpy.ndarray' for .npy bytes (what numpy-based apps send). */
  stype: string;
  data: Uint8Array;
}

/** number → protobuf double; bigint → sint64 (a Python int); lists keep their element type. */
export type MetricValue = number | bigint | number[] | bigint[];
export type ConfigValue =
  MetricValue | boolean | string | Uint8Array | boolean[] | string[] | Uint8Array[];

export type FlowerRecord =
  | { kind: 'array'; items: Map<string, FlowerArray> }
  | { kind: 'metric'; items: Map<string, MetricValue> }
  | { kind: 'config'; items: Map<string, ConfigValue> };

export type RecordDict = Map<string, FlowerRecord>;

/** A deflated object and its children, in Flower's order (first occurrence of each id). */
export interface FlowerObject {
  id: string;
  type: string;
  content: Uint8Array;
  children: FlowerObject[];
}

/** Limits on what is accepted from a peer (bounded memory; clear errors). */
export interface ObjectLimits {
  /** Bytes of one object (default 16 MiB: chunks are ≤ 5 MiB in Flower). */
  maxObjectBytes: number;
  /** Objects in one message tree (default 100 000). */
  maxObjects: number;
  /** Bytes of all objects of one message (default 1 GiB). */
  maxMessageBytes: number;
}

export const DEFAULT_LIMITS: ObjectLimits = {
  maxObjectBytes: 16 * 2 ** 20,
  maxObjects: 100_000,
  maxMessageBytes: 2 ** 30,
};

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  let s = '';
  for (const b of d) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Python's json.dumps layout (", " and ": "), so ids equal what Flower's Python computes. */
export function pyJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pyJson).join(', ')}]`;
  if (value !== null && typeof value === 'object')
    return `{${Object.entries(value)
      .map(([k, v]) => `${pyAscii(JSON.stringify(k))}: ${pyJson(v)}`)
      .join(', ')}}`;
  if (typeof value === 'string') return pyAscii(JSON.stringify(value));
  if (typeof value === 'number' && Number.isFinite(value)) return JSON.stringify(value);
  throw new Error(`flower: cannot write ${String(value)} as JSON`);
}
// json.dumps(ensure_ascii=True) escapes every non-ASCII code unit as \uXXXX.
const pyAscii = (s: string) =>
  s.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

async function makeObject(
  type: string,
  body: Uint8Array,
  children: FlowerObject[],
): Promise<FlowerObject> {
  const unique = uniqueById(children);
  const head = enc.encode(`${type} ${unique.map((c) => c.id).join(',')} ${body.length}\0`);
  const content = new Uint8Array(head.length + body.length);
  content.set(head, 0);
  content.set(body, head.length);
  return { id: await sha256Hex(content), type, content, children: unique };
}

function uniqueById(objs: FlowerObject[]): FlowerObject[] {
  const seen = new Set<string>();
  return objs.filter((o) => !seen.has(o.id) && seen.add(o.id));
}

export async function deflateArray(
  a: FlowerArray,
  chunkBytes = ARRAY_CHUNK_BYTES,
): Promise<FlowerObject> {
  const chunks: FlowerObject[] = [];
  for (let start = 0; start < a.data.length; start += chunkBytes)
    chunks.push(await makeObject('ArrayChunk', a.data.subarray(start, start + chunkBytes), []));
  const unique = uniqueById(chunks).map((c) => c.id);
  const body = pyJson({
    dtype: a.dtype,
    shape: a.shape,
    stype: a.stype,
    arraychunk_ids: chunks.map((c) => unique.indexOf(c.id)),
  });
  return makeObject('Array', enc.encode(body), chunks);
}

type ProtoValue = Record<string, unknown>;

function valueToProto(key: string, v: ConfigValue, metric: boolean): ProtoValue {
  const bad = () =>
    new Error(`flower: ${metric ? 'metric' : 'config'} '${key}' has an unsupported value`);
  const i64 = (b: bigint) => Long.fromString(b.toString(), false);
  if (typeof v === 'number') return { double: v };
  if (typeof v === 'bigint') return { sint64: i64(v) };
  if (Array.isArray(v)) {
    // Element type of an empty list is unknown: Flower writes it as a double list too.
    if (v.length === 0 || v.every((x) => typeof x === 'number')) return { doubleList: { vals: v } };
    if (v.every((x) => typeof x === 'bigint')) return { sintList: { vals: v.map(i64) } };
    if (metric) throw bad();
    if (v.every((x) => typeof x === 'boolean')) return { boolList: { vals: v } };
    if (v.every((x) => typeof x === 'string')) return { stringList: { vals: v } };
    if (v.every((x) => x instanceof Uint8Array)) return { bytesList: { vals: v } };
    throw bad();
  }
  if (metric) throw bad();
  if (typeof v === 'boolean') return { bool: v };
  if (typeof v === 'string') return { string: v };
  if (v instanceof Uint8Array) return { bytes: v };
  throw bad();
}

const toBig = (x: Long | number) => BigInt(x.toString());

function valueFromProto(v: flwr.proto.IConfigRecordValue, key: string): ConfigValue {
  if (v.double != null) return v.double;
  if (v.sint64 != null) return toBig(v.sint64);
  if (v.uint64 != null) return toBig(v.uint64);
  if (v.bool != null) return v.bool;
  if (v.string != null) return v.string;
  if (v.bytes != null) return v.bytes;
  if (v.doubleList) return v.doubleList.vals ?? [];
  if (v.sintList) return (v.sintList.vals ?? []).map(toBig);
  if (v.uintList) return (v.uintList.vals ?? []).map(toBig);
  if (v.boolList) return v.boolList.vals ?? [];
  if (v.stringList) return v.stringList.vals ?? [];
  if (v.bytesList) return v.bytesList.vals ?? [];
  throw new Error(`flower: record value '${key}' is empty`);
}

async function deflateRecord(r: FlowerRecord): Promise<FlowerObject> {
  if (r.kind === 'array') {
    const arrays: FlowerObject[] = [];
    const refs: Record<string, string> = {};
    for (const [name, a] of r.items) {
      const o = await deflateArray(a);
      arrays.push(o);
      refs[name] = o.id;
    }
    return makeObject('ArrayRecord', enc.encode(pyJson(refs)), arrays);
  }
  const metric = r.kind === 'metric';
  const items = [...r.items].map(([key, v]) => ({ key, value: valueToProto(key, v, metric) }));
  const body = metric
    ? P.MetricRecord.encode({ items }).finish()
    : P.ConfigRecord.encode({ items }).finish();
  return makeObject(metric ? 'MetricRecord' : 'ConfigRecord', body, []);
}

export async function deflateRecordDict(rd: RecordDict): Promise<FlowerObject> {
  const records: FlowerObject[] = [];
  const refs: Record<string, string> = {};
  for (const [name, r] of rd) {
    const o = await deflateRecord(r);
    records.push(o);
    refs[name] = o.id;
  }
  return makeObject('RecordDict', enc.encode(pyJson(refs)), records);
}

/**
 * A Message object: metadata (message_id left empty, as Flower hashes it) and content or error.
 * Its id is the message id the SuperLink expects in the metadata.
 */
export async function deflateMessage(
  metadata: flwr.proto.IMetadata,
  content: RecordDict | undefined,
  error?: { code: number; reason: string },
): Promise<FlowerObject> {
  const body = P.Message.encode(
    protoMessage({ ...metadata, messageId: undefined }, false, error),
  ).finish();
  const children = content ? [await deflateRecordDict(content)] : [];
  return makeObject('Message', body, children);
}

/**
 * A proto3 Message with default-valued metadata fields left out: protobufjs writes every field
 * that is set, Python's protobuf skips defaults, and the object id hashes these bytes.
 * `emptyContent`: the push-messages copy carries an empty RecordDict (Flower sends the message
 * with its content removed, not absent; the content travels as objects).
 */
export function protoMessage(
  metadata: flwr.proto.IMetadata,
  emptyContent: boolean,
  error?: { code: number; reason: string },
): flwr.proto.IMessage {
  const md: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (v === undefined || v === null || v === '' || v === 0) continue;
    if (Long.isLong(v) && (v as Long).isZero()) continue;
    md[k] = v;
  }
  const out: flwr.proto.IMessage = { metadata: md as flwr.proto.IMetadata };
  if (emptyContent) out.content = {};
  if (error) out.error = { code: Long.fromNumber(error.code), reason: error.reason };
  return out;
}

export function objectTree(o: FlowerObject): flwr.proto.IObjectTree {
  return { objectId: o.id, children: o.children.map(objectTree) };
}

/** Every object of a tree, children before parents (the order Flower pushes them in). */
export function allObjects(
  o: FlowerObject,
  out = new Map<string, FlowerObject>(),
): Map<string, FlowerObject> {
  for (const c of o.children) allObjects(c, out);
  out.set(o.id, o);
  return out;
}

// ---- inflating what was pulled ----

export interface ParsedObject {
  type: string;
  childIds: string[];
  body: Uint8Array;
}

const ID = /^[0-9a-f]{64}$/;

/** Splits an object into head values and body; checks the declared body length. */
export function parseObject(content: Uint8Array): ParsedObject {
  const nul = content.indexOf(0);
  if (nul < 0 || nul > 1_000_000) throw new Error('flower: object without a head');
  const head = dec.decode(content.subarray(0, nul)).split(' ');
  if (head.length !== 3)
    throw new Error(`flower: malformed object head '${head.join(' ').slice(0, 80)}'`);
  const [type, kids, len] = head;
  const childIds = kids ? kids.split(',') : [];
  if (childIds.some((c) => !ID.test(c))) throw new Error(`flower: ${type} has a bad child id`);
  const body = content.subarray(nul + 1);
  if (String(body.length) !== len)
    throw new Error(`flower: ${type} declares ${len} body bytes, has ${body.length}`);
  return { type, childIds, body };
}

/** Ids in a pulled object tree (post-order), with the tree's size bounded. */
export function treeIds(
  tree: flwr.proto.IObjectTree,
  limits: ObjectLimits = DEFAULT_LIMITS,
): string[] {
  const out: string[] = [];
  const walk = (t: flwr.proto.IObjectTree, depth: number) => {
    if (depth > 8) throw new Error('flower: object tree deeper than a message can be');
    for (const c of t.children ?? []) walk(c, depth + 1);
    if (!t.objectId || !ID.test(t.objectId)) throw new Error('flower: bad object id in tree');
    out.push(t.objectId);
    if (out.length > limits.maxObjects)
      throw new Error(`flower: message has more than ${limits.maxObjects} objects`);
  };
  walk(tree, 0);
  return out;
}

/** Checks that pulled bytes are the object they claim to be. */
export async function verifyObject(id: string, content: Uint8Array): Promise<void> {
  const got = await sha256Hex(content);
  if (got !== id)
    throw new Error(`flower: object ${id.slice(0, 12)}… has content ${got.slice(0, 12)}…`);
}

function parseJsonBody<T>(body: Uint8Array, what: string): T {
  try {
    return JSON.parse(dec.decode(body)) as T;
  } catch (e) {
    throw new Error(`flower: ${what} body is not JSON (${(e as Error).message})`);
  }
}

function refsOf(p: ParsedObject, what: string): Record<string, string> {
  const refs = parseJsonBody<Record<string, unknown>>(p.body, what);
  if (!refs || typeof refs !== 'object' || Array.isArray(refs))
    throw new Error(`flower: ${what} body is not an object`);
  const kids = new Set(p.childIds);
  for (const [k, v] of Object.entries(refs))
    if (typeof v !== 'string' || !kids.has(v))
      throw new Error(`flower: ${what} entry '${k}' names no child`);
  return refs as Record<string, string>;
}

/** Rebuilds a RecordDict from its id and the pulled objects (already verified by id). */
export function inflateRecordDict(id: string, objects: Map<string, Uint8Array>): RecordDict {
  const get = (oid: string, type: string): ParsedObject => {
    const c = objects.get(oid);
    if (!c) throw new Error(`flower: object ${oid.slice(0, 12)}… missing`);
    const p = parseObject(c);
    if (p.type !== type) throw new Error(`flower: expected ${type}, got ${p.type}`);
    return p;
  };
  const rd: RecordDict = new Map();
  for (const [name, rid] of Object.entries(refsOf(get(id, 'RecordDict'), 'RecordDict'))) {
    const c = objects.get(rid);
    if (!c) throw new Error(`flower: record '${name}' missing`);
    const p = parseObject(c);
    if (p.type === 'ArrayRecord') {
      const items = new Map<string, FlowerArray>();
      for (const [an, aid] of Object.entries(refsOf(p, `ArrayRecord '${name}'`)))
        items.set(an, inflateArray(get(aid, 'Array'), objects, an));
      rd.set(name, { kind: 'array', items });
    } else if (p.type === 'MetricRecord' || p.type === 'ConfigRecord') {
      const msg =
        p.type === 'MetricRecord' ? P.MetricRecord.decode(p.body) : P.ConfigRecord.decode(p.body);
      const items = new Map<string, ConfigValue>();
      for (const it of msg.items)
        items.set(it.key ?? '', valueFromProto(it.value ?? {}, it.key ?? ''));
      rd.set(
        name,
        p.type === 'MetricRecord'
          ? { kind: 'metric', items: items as Map<string, MetricValue> }
          : { kind: 'config', items },
      );
    } else throw new Error(`flower: record '${name}' is a ${p.type}`);
  }
  return rd;
}

function inflateArray(
  p: ParsedObject,
  objects: Map<string, Uint8Array>,
  name: string,
): FlowerArray {
  const meta = parseJsonBody<{
    dtype?: unknown;
    shape?: unknown;
    stype?: unknown;
    arraychunk_ids?: unknown;
  }>(p.body, `Array '${name}'`);
  const { dtype, shape, stype, arraychunk_ids: idx } = meta;
  if (
    typeof dtype !== 'string' ||
    typeof stype !== 'string' ||
    !Array.isArray(shape) ||
    !shape.every((d) => Number.isSafeInteger(d) && d >= 0) ||
    !Array.isArray(idx) ||
    !idx.every((i) => Number.isInteger(i) && i >= 0 && i < p.childIds.length)
  )
    throw new Error(`flower: Array '${name}' has malformed metadata`);
  const parts = (idx as number[]).map((i) => {
    const c = objects.get(p.childIds[i]);
    if (!c) throw new Error(`flower: a chunk of Array '${name}' is missing`);
    const cp = parseObject(c);
    if (cp.type !== 'ArrayChunk') throw new Error(`flower: Array '${name}' has a ${cp.type} child`);
    return cp.body;
  });
  const data = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
  let off = 0;
  for (const x of parts) {
    data.set(x, off);
    off += x.length;
  }
  return { dtype, shape: shape as number[], stype, data };
}
