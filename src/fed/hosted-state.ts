// The saved state of a workshop federation this browser hosts, so a host tab that reloads or
// crashes can resume it. Persistence is the caller's (`HostedRecordStore`; in the page:
// store/hosted-federation.ts over IndexedDB, key: the workshop code), which keeps the records as
// opaque rows; this module makes, checks and decodes them. A record is what the Node relay keeps in
// its data dir (src/node/relay/persistence.ts): the coordinator snapshot as plain data (state.json) and the
// global weights as bytes (global.bin), plus the join token, which the relay takes from its
// command line and a host tab must remember. Rewritten after every phase change, key binding and
// closed round; deleted when the federation is done (there is nothing left to resume).
import { decodeWeights, type TensorEntry } from '../model/weights-codec.ts';
import type { CoordinatorSnapshot, Phase } from './coordinator.ts';
import { errorMessage } from '../util/errors.ts';

/** Where the records live, keyed by `code` (store/hosted-federation.ts: the `hostedFederations` store). */
export interface HostedRecordStore {
  get(code: string): Promise<unknown>;
  getAll(): Promise<unknown[]>;
  put(record: HostedFederationRecord): Promise<void>;
  delete(code: string): Promise<void>;
}

export interface HostedFederationRecord {
  code: string;
  token: string;
  /** The snapshot without its weights, as JSON data (what the relay writes to state.json). */
  state: Omit<CoordinatorSnapshot, 'global'>;
  /** The global weights (fp32) and their tensor table; null before the initial model arrived. */
  globalEntries: TensorEntry[] | null;
  globalBytes: ArrayBuffer | null;
  updatedAt: number;
  /** Fingerprint of the host tab's key, which the participants' join link pins (absent in records of older builds). */
  hostKey?: string;
}

/** What the Federation tab offers to resume. `problem`: the record cannot be read (offered for discarding only). */
export interface HostedSummary {
  code: string;
  updatedAt: number;
  phase?: Phase;
  /** Last completed round, of `rounds`. */
  round?: number;
  rounds?: number;
  sites?: number;
  problem?: string;
}

export class HostedStateError extends Error {
  override name = 'HostedStateError';
}

const PHASES: readonly Phase[] = ['join', 'fingerprint', 'spec', 'init', 'rounds', 'done'];

/** Turns a snapshot into a record now: the coordinator keeps changing its snapshot after this call. */
export function hostedRecord(
  code: string,
  token: string,
  s: Readonly<CoordinatorSnapshot>,
  now = Date.now(),
  hostKey?: string,
): HostedFederationRecord {
  const { global, ...rest } = s;
  // A JSON copy, as the relay writes: plain data, detached from the live snapshot.
  const state = JSON.parse(JSON.stringify(rest)) as HostedFederationRecord['state'];
  let globalBytes: ArrayBuffer | null = null;
  if (global) {
    const p = global.payload;
    // The payload is a fresh buffer per snapshot (never written again); copy only a view into a larger one.
    globalBytes =
      p.byteOffset === 0 && p.byteLength === p.buffer.byteLength
        ? (p.buffer as ArrayBuffer)
        : p.slice().buffer;
  }
  return {
    code,
    token,
    state,
    globalEntries: global ? global.entries.map((e) => ({ ...e, shape: [...e.shape] })) : null,
    globalBytes,
    updatedAt: now,
    ...(hostKey ? { hostKey } : {}),
  };
}

/** Checks a stored record's shape (it may come from an older build, or be damaged); returns why not, or undefined. */
function problemOf(v: unknown): string | undefined {
  const r = v as Partial<HostedFederationRecord> | undefined;
  if (!r || typeof r !== 'object') return 'not an object';
  if (typeof r.code !== 'string' || !r.code) return 'no workshop code';
  if (typeof r.token !== 'string') return 'no join token';
  const s = r.state as Partial<CoordinatorSnapshot> | undefined;
  if (!s || typeof s !== 'object') return 'no coordinator state';
  if (!PHASES.includes(s.phase as Phase)) return `unknown phase '${String(s.phase)}'`;
  if (!Number.isInteger(s.round) || (s.round as number) < 0)
    return `round ${String(s.round)} is not a round number`;
  const c = s.config as Partial<CoordinatorSnapshot['config']> | undefined;
  if (!c || typeof c !== 'object' || !Number.isInteger(c.rounds) || typeof c.method !== 'string')
    return 'no federation config (method, rounds)';
  if (
    !Array.isArray(s.sites) ||
    !s.sites.every((x) => x && typeof x.siteId === 'string' && typeof x.siteName === 'string')
  )
    return 'malformed site list';
  if (!Array.isArray(s.history)) return 'no round history';
  if ((r.globalEntries === null) !== (r.globalBytes === null))
    return 'global weights without their tensor table (or the reverse)';
  if (
    r.globalEntries !== null &&
    (!Array.isArray(r.globalEntries) || !(r.globalBytes instanceof ArrayBuffer))
  )
    return 'malformed global weights';
  if (s.phase === 'rounds' && r.globalEntries === null)
    return 'in the rounds phase without global weights';
  if (r.hostKey !== undefined && typeof r.hostKey !== 'string') return 'malformed host key';
  return undefined;
}

function summary(v: unknown): HostedSummary {
  const r = v as HostedFederationRecord;
  const code = typeof r?.code === 'string' ? r.code : '?';
  const updatedAt = typeof r?.updatedAt === 'number' ? r.updatedAt : 0;
  const problem = problemOf(v);
  if (problem) return { code, updatedAt, problem };
  return {
    code,
    updatedAt,
    phase: r.state.phase,
    round: r.state.round,
    rounds: r.state.config.rounds,
    sites: r.state.sites.length,
  };
}

export async function saveHostedFederation(
  db: HostedRecordStore,
  rec: HostedFederationRecord,
): Promise<void> {
  await db.put(rec);
}

export async function deleteHostedFederation(db: HostedRecordStore, code: string): Promise<void> {
  await db.delete(code);
}

/** Hosted federations not finished, newest first (unreadable records too, with their problem). */
export async function unfinishedHostedFederations(db: HostedRecordStore): Promise<HostedSummary[]> {
  const all = (await db.getAll()).map(summary);
  return all.filter((x) => x.phase !== 'done').sort((a, b) => b.updatedAt - a.updatedAt);
}

/** The saved federation of `code`, ready to restore a Coordinator from; undefined if none. Throws HostedStateError if unreadable. */
export async function loadHostedFederation(
  db: HostedRecordStore,
  code: string,
): Promise<
  { token: string; snapshot: CoordinatorSnapshot; updatedAt: number; hostKey?: string } | undefined
> {
  const v = await db.get(code);
  if (v === undefined) return undefined;
  const problem = problemOf(v);
  if (problem)
    throw new HostedStateError(
      `the saved workshop federation '${code}' cannot be resumed: ${problem}`,
    );
  const r = v as unknown as HostedFederationRecord;
  const snapshot: CoordinatorSnapshot = { ...r.state };
  if (r.globalEntries && r.globalBytes) {
    const payload = new Uint8Array(r.globalBytes);
    try {
      // Checked now (sizes, checksums) so a damaged record fails here, with its name, not in the coordinator.
      decodeWeights(r.globalEntries, payload);
    } catch (e) {
      throw new HostedStateError(
        `the saved workshop federation '${code}' cannot be resumed: its global weights are damaged (${errorMessage(e)})`,
      );
    }
    snapshot.global = { entries: r.globalEntries, payload };
  }
  return {
    token: r.token,
    snapshot,
    updatedAt: r.updatedAt,
    ...(r.hostKey ? { hostKey: r.hostKey } : {}),
  };
}

/**
 * The host's `persist` callback: captures each snapshot when called and writes it, one write at a
 * time; snapshots arriving while a write is under way collapse into one (the newest). The promise
 * of a call resolves once a write at least as recent has committed (FederationHost holds its
 * outgoing messages until then, so sites never see a state a reload could lose). A finished
 * federation's record is deleted.
 */
export class HostedFederationWriter {
  private tail: Promise<void> = Promise.resolve();
  private queued?: { job: HostedFederationRecord | 'delete'; promise: Promise<void> };

  constructor(
    private readonly db: HostedRecordStore,
    readonly code: string,
    private readonly token: string,
    private readonly now: () => number = Date.now,
    private readonly hostKey?: string,
  ) {}

  persist = (s: Readonly<CoordinatorSnapshot>): Promise<void> => {
    const job =
      s.phase === 'done'
        ? ('delete' as const)
        : hostedRecord(this.code, this.token, s, this.now(), this.hostKey);
    if (this.queued) {
      this.queued.job = job;
      return this.queued.promise;
    }
    const q: { job: HostedFederationRecord | 'delete'; promise: Promise<void> } = {
      job,
      promise: Promise.resolve(),
    };
    q.promise = this.tail.then(() => {
      // From here on a newer snapshot queues a write of its own.
      if (this.queued === q) this.queued = undefined;
      return q.job === 'delete'
        ? deleteHostedFederation(this.db, this.code)
        : saveHostedFederation(this.db, q.job);
    });
    this.queued = q;
    this.tail = q.promise.catch(() => undefined);
    return q.promise;
  };

  /** Resolves when every write asked for so far has finished (committed or failed). */
  flush(): Promise<void> {
    return this.tail;
  }
}
