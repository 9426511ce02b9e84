// Federation wire format: versioned binary frames, a JSON header without tensor values, and raw
// tensor bytes (see codec.ts). Every frame is validated before use (decodeMessage), so a
// malformed or hostile message becomes a ProtocolError, never a crash or a wrong number.
//
// Frame: "FNNU" | u8 version | u8 0 | u16 0 | u32 headerLength | header (UTF-8 JSON) | pad to 4 | payload
import type { TensorEntry } from '../model/weights-codec.ts';
import type { WeightSpec } from '../model/named-weights.ts';
import { isMethod, METHOD_PARAMS, methodSpec, type Method, type MethodParams } from './methods.ts';

/**
 * 2: round and final messages name the model they carry by checksum and may carry it as a delta
 * against a model the site holds (`base`; global-delta.ts). A version-1 site would read a delta as
 * a whole model, so it is refused at the first frame instead.
 */
export const PROTOCOL_VERSION = 2;
const MAGIC = [0x46, 0x4e, 0x4e, 0x55]; // "FNNU"
const PREFIX = 12;
/**
 * Largest JSON header accepted: parsing is synchronous, so a 40 MB header would block the relay's
 * event loop for seconds. The largest legitimate headers (a secure round's share lists for
 * MAX_SECAGG_SITES sites, a fingerprint of a few thousand cases) stay well under it.
 */
export const MAX_HEADER_BYTES = 2 * 1024 * 1024;

export type { Method } from './methods.ts';

/** The method's own parameters (MethodParams, e.g. FedProx's μ) ride along in the config. */
export interface FederationConfig extends MethodParams {
  /** A row of METHODS (methods.ts): planning, shared key set, site loss. */
  method: Method;
  configuration: '3d_fullres' | '2d';
  rounds: number;
  itersPerRound: number;
  minSites: number;
  roundDeadlineMs: number;
  weighting: 'uniform' | 'cases';
  encoding: 'fp32' | 'fp16' | 'int8';
  /**
   * How the global model goes to the sites: whole in fp32 (default), or as an fp16 / block-wise
   * int8 delta against the model they hold, with error feedback (global-delta.ts).
   */
  broadcast?: 'fp32' | 'fp16' | 'int8';
  /** Secure aggregation and differential privacy (docs/secure-aggregation.md); absent = plain. */
  privacy?: PrivacyConfig;
  /** Plain rounds: L2 norm each update is clipped to (update-guard.ts; default 100). Secure rounds use privacy.clip. */
  maxUpdateNorm?: number;
  /** Plain rounds: coordinate-wise robust aggregation instead of the mean (unweighted). */
  robust?: 'trimmed-mean' | 'median';
  /** Fine-tuning: the federation starts from a pretrained model (src/fed/init-model.ts). */
  initModel?: InitModelInfo;
}

/**
 * What sites learn about a pretrained initial model (its weights reach them as round 1's global):
 * its name, its labels (a site with other labels refuses), and, for methods that train one network
 * everywhere, the plans it was trained with — sites train with those, not their own or the pooled
 * ones, since the weights only fit that network and its preprocessing.
 */
export interface InitModelInfo {
  name: string;
  labels: Record<string, number | number[]>;
  /** nnU-Net plans (whole plans.json); absent for AsymFedAvg, whose sites plan locally. */
  plans?: Record<string, unknown>;
}

/**
 * Secure aggregation (Bonawitz et al.) settings, fixed by the relay before any site sends, so
 * every site builds the same vector layout and quantisation.
 */
export interface PrivacyConfig {
  secureAggregation: true;
  /** Shamir threshold t: any t surviving sites can unmask the sum; t − 1 colluders learn nothing. */
  threshold: number;
  /** L2 norm every site's delta is clipped to before quantising (C). */
  clip: number;
  /** Fixed-point fractional bits f of the quantised vectors (chosen so n sites cannot overflow). */
  fracBits: number;
  /** Largest per-site weight under `cases` weighting (case counts above it count as this). */
  maxWeight: number;
  /** Deadline of each key-exchange and unmasking phase of a secure round. */
  phaseDeadlineMs: number;
  /** Cells of the FFE multiset sketch and channel slots of the secure FFE layout. */
  ffeCells: number;
  ffeChannels: number;
  /** Client-level DP: Gaussian noise split over the sites; σ from the RDP accountant. */
  dp?: { epsilon: number; delta: number; noiseMultiplier: number };
}

/** What a secure round of the protocol carries besides the round's global model. */
export interface SecaggOpen {
  round: number;
  attempt: number;
  kind: 'model' | 'fingerprint';
  /** 16 random bytes (base64) binding the round's keys to it. */
  salt: string;
  /** Site ids in Shamir order: site k of this list holds point k + 1. */
  participants: string[];
  threshold: number;
  /** Vector length in uint32 words. */
  length: number;
}

/** A base64-encoded byte string of a WebCrypto key, IV, ciphertext or Shamir share. */
export type B64 = string;

/** Messages with their header fields. `payload` carries tensor bytes where `tensors` is set. */
export type Message =
  | {
      type: 'hello';
      token: string;
      siteName: string;
      siteId?: string;
      numCases: number;
      /** Checksum of the global model this site holds (a reconnect within a federation). */
      holds?: string;
    }
  | { type: 'welcome'; siteId: string; config: FederationConfig; phase: string; round: number }
  | { type: 'refused'; reason: string }
  | { type: 'fingerprint'; fingerprint: Record<string, unknown>; numCases: number }
  | { type: 'aggregate-fingerprint'; fingerprint: Record<string, unknown> }
  | { type: 'spec'; spec: WeightSpec }
  | { type: 'shared-spec'; spec: WeightSpec; local: number }
  | {
      type: 'round';
      round: number;
      deadline: number;
      iters: number;
      tensors: TensorEntry[];
      /** Checksum of the model to train on (global-delta.ts modelChecksum). */
      model?: string;
      /** Present: `tensors` is a delta against the model with this checksum. */
      base?: string;
    }
  | {
      type: 'update';
      round: number;
      numCases: number;
      metrics: Record<string, number>;
      tensors: TensorEntry[];
      /** Checksum of the model the delta was trained from (the round's `model`). */
      base?: string;
    }
  | { type: 'update-result'; round: number; accepted: boolean; reason?: string }
  | { type: 'final'; round: number; tensors: TensorEntry[]; model?: string; base?: string }
  /** A site cannot apply a delta (it does not hold its base): the relay sends the whole model. */
  | { type: 'resync'; round: number; reason: string }
  | { type: 'error'; message: string }
  // Secure aggregation (src/fed/secagg/round.ts, site-round.ts); `attempt` counts retries of a round.
  | ({ type: 'secagg-open' } & SecaggOpen)
  | { type: 'secagg-advert'; round: number; attempt: number; cPub: B64; sPub: B64 }
  | {
      type: 'secagg-keys';
      round: number;
      attempt: number;
      adverts: Array<{ index: number; cPub: B64; sPub: B64 }>;
    }
  | {
      type: 'secagg-shares';
      round: number;
      attempt: number;
      shares: Array<{ to: number; iv: B64; ct: B64 }>;
    }
  | {
      type: 'secagg-inbox';
      round: number;
      attempt: number;
      u2: number[];
      shares: Array<{ from: number; iv: B64; ct: B64 }>;
    }
  | { type: 'secagg-masked'; round: number; attempt: number; length: number }
  | { type: 'secagg-unmask'; round: number; attempt: number; u3: number[] }
  | {
      type: 'secagg-reveal';
      round: number;
      attempt: number;
      b: Array<{ of: number; y: B64 }>;
      s: Array<{ of: number; y: B64 }>;
    }
  | { type: 'round-failed'; round: number; attempt: number; reason: string; retry: boolean }
  | {
      type: 'privacy-spent';
      round: number;
      epsilon: number;
      delta: number;
      noiseMultiplier: number;
    }
  /** After the final model: the site's held-out Dice (numbers only; see HeldOutReport). */
  | ({ type: 'held-out-dice' } & HeldOutReport)
  | { type: 'held-out-result'; accepted: boolean; reason?: string };

/**
 * What a site reports once the federation finished: the mean foreground Dice (nnU-Net's, on the
 * raw geometry) of the final model it holds and, when it has one, of a model it trained alone on
 * the same dataset, both on the same `cases` held-out cases (never trained on by either model).
 * Only these numbers leave the site: no case ids, no images, no per-case values.
 */
export interface HeldOutReport {
  /** The federation round whose final model was scored. */
  round: number;
  /** Held-out cases both Dice values are means over. */
  cases: number;
  federated: number;
  /** Absent: no locally trained model of this dataset (the table shows "—"). */
  local?: number;
}

/** Most held-out cases a report may claim (a site's whole dataset is far smaller in practice). */
export const MAX_REPORT_CASES = 100_000;

export type MessageType = Message['type'];

export class ProtocolError extends Error {}

type Check = (v: unknown) => boolean;
const str: Check = (v) => typeof v === 'string' && v.length <= 4096;
const int: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 0;
const num: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const obj: Check = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const shape: Check = (v) =>
  Array.isArray(v) && v.length <= 8 && v.every((d) => int(d) && (d as number) > 0);
const spec: Check = (v) =>
  Array.isArray(v) &&
  v.every(
    (e) =>
      obj(e) &&
      str((e as Record<string, unknown>).name) &&
      shape((e as Record<string, unknown>).shape),
  );
const tensors: Check = (v) =>
  Array.isArray(v) &&
  v.every(
    (e) =>
      obj(e) &&
      str(e.name) &&
      shape(e.shape) &&
      ['fp32', 'fp16', 'int8'].includes(e.encoding) &&
      int(e.offset) &&
      int(e.byteLength) &&
      int(e.crc32) &&
      (e.scale === undefined || num(e.scale)),
  );
/** A Dice coefficient: a finite number in [0, 1] (NaN cannot travel in JSON; null is refused). */
const dice: Check = (v) => num(v) && (v as number) >= 0 && (v as number) <= 1;
const hash: Check = (v) => typeof v === 'string' && /^[0-9a-f]{8}$/.test(v);
const metrics: Check = (v) =>
  obj(v) && Object.values(v as object).every((x) => typeof x === 'number');
const config: Check = (v) => {
  const c = v as FederationConfig;
  return (
    obj(v) &&
    isMethod(c.method) &&
    ['3d_fullres', '2d'].includes(c.configuration) &&
    int(c.rounds) &&
    int(c.itersPerRound) &&
    int(c.minSites) &&
    int(c.roundDeadlineMs) &&
    ['uniform', 'cases'].includes(c.weighting) &&
    ['fp32', 'fp16', 'int8'].includes(c.encoding) &&
    (c.broadcast === undefined || ['fp32', 'fp16', 'int8'].includes(c.broadcast)) &&
    optional(privacy)(c.privacy) &&
    optional(pos)(c.maxUpdateNorm) &&
    (c.robust === undefined || ['trimmed-mean', 'median'].includes(c.robust)) &&
    optional(nonNegative)(c.mu) &&
    optional(initModel)(c.initModel) &&
    methodParams(c)
  );
};
const initModel: Check = (v) => {
  const m = v as InitModelInfo;
  return (
    obj(v) && typeof m.name === 'string' && obj(m.labels) && (m.plans === undefined || obj(m.plans))
  );
};
const nonNegative: Check = (v) => num(v) && (v as number) >= 0;
/** The method's own parameters are present, and no other method's (a site must not guess a μ). */
const methodParams = (c: FederationConfig): boolean => {
  const own = new Set<string>((methodSpec(c.method).options ?? []).map((o) => o.flag));
  return METHOD_PARAMS.every((k) => own.has(k) === (c[k] !== undefined));
};
/** A federation config as the protocol accepts it (the relay checks its restored state with it). */
export const isFederationConfig = (v: unknown): v is FederationConfig => config(v);
const optional =
  (c: Check): Check =>
  (v) =>
    v === undefined || c(v);
const pos: Check = (v) => num(v) && (v as number) > 0;
const privacy: Check = (v) => {
  const p = v as PrivacyConfig;
  if (
    !obj(v) ||
    p.secureAggregation !== true ||
    !int(p.threshold) ||
    p.threshold < 2 ||
    !pos(p.clip) ||
    !int(p.fracBits) ||
    p.fracBits > 30 ||
    !int(p.maxWeight) ||
    p.maxWeight < 1 ||
    !int(p.phaseDeadlineMs) ||
    !int(p.ffeCells) ||
    p.ffeCells < 3 ||
    p.ffeCells % 3 !== 0 ||
    !int(p.ffeChannels) ||
    p.ffeChannels < 1
  )
    return false;
  return (
    p.dp === undefined ||
    (obj(p.dp) &&
      pos(p.dp.epsilon) &&
      pos(p.dp.delta) &&
      p.dp.delta < 1 &&
      pos(p.dp.noiseMultiplier))
  );
};
const b64 =
  (max: number): Check =>
  (v) =>
    typeof v === 'string' &&
    v.length <= max &&
    /^[A-Za-z0-9+/]*={0,2}$/.test(v) &&
    v.length % 4 === 0;
const list =
  (c: Check, max: number): Check =>
  (v) =>
    Array.isArray(v) && v.length <= max && v.every(c);
const record =
  (fields: Record<string, Check>): Check =>
  (v) =>
    obj(v) && Object.entries(fields).every(([k, c]) => c((v as Record<string, unknown>)[k]));
/** Largest federation a secure round accepts (Shamir points, message sizes). */
export const MAX_SECAGG_SITES = 1000;
const KEY = b64(128);
const SITES = MAX_SECAGG_SITES;

const SCHEMA: Record<MessageType, Record<string, Check>> = {
  hello: { token: str, siteName: str, siteId: optional(str), numCases: int, holds: optional(hash) },
  welcome: { siteId: str, config, phase: str, round: int },
  refused: { reason: str },
  fingerprint: { fingerprint: obj, numCases: int },
  'aggregate-fingerprint': { fingerprint: obj },
  spec: { spec },
  'shared-spec': { spec, local: int },
  round: {
    round: int,
    deadline: num,
    iters: int,
    tensors,
    model: optional(hash),
    base: optional(hash),
  },
  update: { round: int, numCases: int, metrics, tensors, base: optional(hash) },
  'update-result': { round: int, accepted: (v) => typeof v === 'boolean', reason: optional(str) },
  final: { round: int, tensors, model: optional(hash), base: optional(hash) },
  resync: { round: int, reason: str },
  error: { message: str },
  'secagg-open': {
    round: int,
    attempt: int,
    kind: (v) => v === 'model' || v === 'fingerprint',
    salt: b64(64),
    participants: list(str, SITES),
    threshold: int,
    length: int,
  },
  'secagg-advert': { round: int, attempt: int, cPub: KEY, sPub: KEY },
  'secagg-keys': {
    round: int,
    attempt: int,
    adverts: list(record({ index: int, cPub: KEY, sPub: KEY }), SITES),
  },
  'secagg-shares': {
    round: int,
    attempt: int,
    shares: list(record({ to: int, iv: b64(64), ct: b64(512) }), SITES),
  },
  'secagg-inbox': {
    round: int,
    attempt: int,
    u2: list(int, SITES),
    shares: list(record({ from: int, iv: b64(64), ct: b64(512) }), SITES),
  },
  'secagg-masked': { round: int, attempt: int, length: int },
  'secagg-unmask': { round: int, attempt: int, u3: list(int, SITES) },
  'secagg-reveal': {
    round: int,
    attempt: int,
    b: list(record({ of: int, y: b64(128) }), SITES),
    s: list(record({ of: int, y: b64(128) }), SITES),
  },
  'round-failed': { round: int, attempt: int, reason: str, retry: (v) => typeof v === 'boolean' },
  'privacy-spent': { round: int, epsilon: num, delta: num, noiseMultiplier: num },
  'held-out-dice': {
    round: int,
    cases: (v) => int(v) && (v as number) >= 1 && (v as number) <= MAX_REPORT_CASES,
    federated: dice,
    local: optional(dice),
  },
  'held-out-result': { accepted: (v) => typeof v === 'boolean', reason: optional(str) },
};

/** What a field must be, for error messages where the check is not obvious. */
const EXPECTED: Partial<Record<MessageType, Record<string, string>>> = {
  'held-out-dice': {
    round: 'a round number',
    cases: `a whole number of held-out cases, 1 to ${MAX_REPORT_CASES}`,
    federated: 'a Dice in [0, 1]',
    local: 'a Dice in [0, 1], or absent',
  },
};

/**
 * Messages whose every field is listed in SCHEMA, and nothing else: a site's report of numbers
 * must not be able to carry anything more (case ids, file names) past the audit's description.
 */
const CLOSED: ReadonlySet<MessageType> = new Set(['held-out-dice']);

export interface Frame {
  message: Message;
  payload: Uint8Array;
}

export function encodeMessage(
  message: Message,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const header = new TextEncoder().encode(JSON.stringify(message));
  const pad = (4 - ((PREFIX + header.length) % 4)) % 4;
  const out = new Uint8Array(PREFIX + header.length + pad + payload.length);
  out.set(MAGIC, 0);
  out[4] = PROTOCOL_VERSION;
  new DataView(out.buffer).setUint32(8, header.length, true);
  out.set(header, PREFIX);
  out.set(payload, PREFIX + header.length + pad);
  return out;
}

export function decodeMessage(bytes: Uint8Array, maxBytes = Infinity): Frame {
  if (bytes.length > maxBytes)
    throw new ProtocolError(`message of ${bytes.length} bytes exceeds the limit of ${maxBytes}`);
  if (bytes.length < PREFIX || MAGIC.some((b, i) => bytes[i] !== b))
    throw new ProtocolError('not a FednnU-Net message (bad magic)');
  if (bytes[4] !== PROTOCOL_VERSION)
    throw new ProtocolError(
      `protocol version ${bytes[4]} is not supported (this is version ${PROTOCOL_VERSION})`,
    );
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(
    8,
    true,
  );
  if (headerLength > MAX_HEADER_BYTES)
    throw new ProtocolError(
      `message header of ${headerLength} bytes exceeds the limit of ${MAX_HEADER_BYTES}`,
    );
  if (PREFIX + headerLength > bytes.length) throw new ProtocolError('truncated message header');
  let message: unknown;
  try {
    message = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(
        bytes.subarray(PREFIX, PREFIX + headerLength),
      ),
    );
  } catch {
    throw new ProtocolError('message header is not valid JSON');
  }
  validate(message);
  const pad = (4 - ((PREFIX + headerLength) % 4)) % 4;
  const payload = bytes.subarray(Math.min(bytes.length, PREFIX + headerLength + pad));
  if ('tensors' in message) {
    const end = Math.max(0, ...message.tensors.map((t) => t.offset + t.byteLength));
    if (end > payload.length)
      throw new ProtocolError(`payload truncated: ${payload.length} of ${end} bytes`);
  }
  return { message, payload };
}

function validate(m: unknown): asserts m is Message {
  if (!obj(m)) throw new ProtocolError('message header is not an object');
  const type = (m as { type?: unknown }).type;
  // Own properties only: `'__proto__' in SCHEMA` or `'toString' in SCHEMA` is true.
  if (typeof type !== 'string' || !Object.hasOwn(SCHEMA, type))
    throw new ProtocolError(`unknown message type '${String(type)}'`);
  const schema = SCHEMA[type as MessageType];
  for (const [field, check] of Object.entries(schema)) {
    if (!check((m as Record<string, unknown>)[field])) {
      const expected = EXPECTED[type as MessageType]?.[field];
      throw new ProtocolError(
        `'${type}' message has an invalid '${field}'${expected ? ` (expected ${expected})` : ''}`,
      );
    }
  }
  if (CLOSED.has(type as MessageType)) {
    const extra = Object.keys(m as object).filter((k) => k !== 'type' && !Object.hasOwn(schema, k));
    if (extra.length)
      throw new ProtocolError(
        `'${type}' message has unexpected field(s) ${extra
          .slice(0, 5)
          .map((k) => `'${k.slice(0, 40)}'`)
          .join(', ')}: it may carry only ${Object.keys(schema).join(', ')}`,
      );
  }
}
