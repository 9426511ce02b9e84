// FedAvg and AsymFedAvg, as pure streaming code shared by the Node relay and the browser host.
//
// FednnU-Net's server (spec §3.2) stacks every client's full state_dict, keeps the keys that exist
// at every client with the same shape, and takes their unweighted mean. We compute the same thing
// with a running weighted sum (one model in memory, not one per site) over the key set derived
// from the (name, shape) lists sites declare at join. With `uniform` weighting and all sites
// present the result equals FednnU-Net's mean (up to float rounding: we accumulate in float64).
import { sameShape, type NamedWeights, type WeightSpec } from '../model/named-weights.ts';
import { prod } from '../util/numeric.ts';
import { addScaled, storeScaled, viewLength, type TensorView } from '../model/weights-codec.ts';

/** Keys present at every site with an identical shape (AsymFedAvg); FedAvg when plans are equal. */
export function sharedSpec(specs: WeightSpec[]): WeightSpec {
  if (specs.length === 0) return [];
  const [first, ...rest] = specs;
  const maps = rest.map((s) => new Map(s.map((e) => [e.name, e.shape])));
  return first
    .filter((e) =>
      maps.every((m) => {
        const shape = m.get(e.name);
        return shape !== undefined && sameShape(shape, e.shape);
      }),
    )
    .map((e) => ({ name: e.name, shape: [...e.shape] }));
}

export class UpdateRejected extends Error {}

/** An update whose wire bytes passed every check (fed/encoded-update.ts), with its L2 norm; not yet decoded. */
export interface CheckedUpdate {
  readonly tensors: ReadonlyMap<string, TensorView>;
  readonly norm: number;
}

/** Checks an update against the expected spec: exact key set, shapes, finite values. */
export function validateUpdate(update: NamedWeights, spec: WeightSpec): void {
  if (update.size !== spec.length) {
    throw new UpdateRejected(`expected ${spec.length} tensors, got ${update.size}`);
  }
  for (const { name, shape } of spec) {
    const t = update.get(name);
    if (!t) throw new UpdateRejected(`missing tensor '${name}'`);
    if (!sameShape(t.shape, shape))
      throw new UpdateRejected(`'${name}' has shape [${t.shape}], expected [${shape}]`);
    if (t.data.length !== prod(shape))
      throw new UpdateRejected(`'${name}' holds ${t.data.length} values for shape [${shape}]`);
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) throw new UpdateRejected(`'${name}' contains NaN or Inf`);
    }
  }
}

/** L2 norm over all tensors (used to reject updates far above the round's median). */
export function l2Norm(w: NamedWeights): number {
  let s = 0;
  for (const t of w.values()) for (let i = 0; i < t.data.length; i++) s += t.data[i] * t.data[i];
  return Math.sqrt(s);
}

// Float64 sums of the last closed round, zeroed, for the next round's StreamingMean. A fresh
// 250 MB array (a 31 M-parameter model) is mapped from the OS on every round and every page of it
// faults on first touch: seconds on a loaded machine, against ~30 ms to zero the old one. Holds at
// most one model's sums (keyed by length), so memory stays O(model).
const spareSums = new Map<number, Float64Array[]>();
let spareBytes = 0;
const SPARE_MAX_BYTES = 1024 ** 3;

function takeSum(n: number): Float64Array {
  const s = spareSums.get(n)?.pop();
  if (!s) return new Float64Array(n);
  spareBytes -= s.byteLength;
  return s;
}

function giveBack(sums: Iterable<Float64Array>): void {
  for (const s of sums) {
    if (spareBytes + s.byteLength > SPARE_MAX_BYTES) return;
    s.fill(0);
    spareSums.set(s.length, [...(spareSums.get(s.length) ?? []), s]);
    spareBytes += s.byteLength;
  }
}

/**
 * Checked updates StreamingMean adds to its sums together by default (see addChecked). With 4, the
 * CPU per site was lower than with 1 in every bench run on the shared 2-core machine (BENCHMARKS.md),
 * for up to 3 more update frames kept alive.
 */
export const ADD_BATCH = 4;
// Values per block of a batched add: 16 Ki float64 sums (128 KiB) stay in cache while every update
// of the batch is added to them.
const ADD_BLOCK = 16384;

/** Running weighted mean over a fixed spec. Add validated updates one at a time. */
export class StreamingMean implements UpdateAggregator {
  private readonly sums = new Map<string, Float64Array>();
  private totalWeight = 0;
  private count = 0;
  private released = false;
  /** Checked updates not yet in the sums (each as its views in spec order, with its factor). */
  private pending: Array<{ views: TensorView[]; k: number }> = [];

  /**
   * `batch`: how many checked updates are held before they are added to the sums in one pass
   * (addChecked). The sums are the bulk of the memory traffic (16 bytes read and written per value
   * and update, against 1–4 bytes of update), so adding `batch` updates per pass over them cuts
   * that traffic by `batch`, at the cost of keeping up to `batch` update payloads alive.
   */
  constructor(
    readonly spec: WeightSpec,
    readonly batch = ADD_BATCH,
  ) {
    if (!(Number.isInteger(batch) && batch >= 1))
      throw new Error(`batch must be a positive integer, got ${batch}`);
    for (const { name, shape } of spec) this.sums.set(name, takeSum(prod(shape)));
  }

  /** Hands the sums to the next round's mean (after result(); this mean cannot be used again). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.pending = [];
    giveBack(this.sums.values());
    this.sums.clear();
  }

  /** `scale` multiplies the update's values (a clip to the federation's norm bound), not its weight. */
  add(update: NamedWeights, weight = 1, scale = 1): void {
    if (this.released) throw new Error('this mean was released');
    if (!(weight > 0) || !Number.isFinite(weight))
      throw new UpdateRejected(`weight must be a positive number, got ${weight}`);
    validateUpdate(update, this.spec);
    // Updates reach every sum in the order they were given: the held ones first.
    this.flush();
    const k = weight * scale;
    for (const [name, sum] of this.sums) {
      const d = update.get(name)!.data;
      for (let i = 0; i < sum.length; i++) sum[i] += k * d[i];
    }
    this.totalWeight += weight;
    this.count++;
  }

  /**
   * add() for a checked wire update: decodes straight into the sums, the same values in the same
   * order (bit-identical to add() of the decoded update). Up to `batch` updates are held and then
   * added block by block, all of them to one block of sums while it is in cache; each value still
   * gets its updates' multiply-adds one after the other in the order given, so the sums are the
   * same bits as adding them one at a time. Every check happens here, before anything is held: a
   * refused update leaves the mean as it was. The update's payload must not change until the next
   * result() (the relay's frames are not reused).
   */
  addChecked(update: CheckedUpdate, weight = 1, scale = 1): void {
    if (this.released) throw new Error('this mean was released');
    if (!(weight > 0) || !Number.isFinite(weight))
      throw new UpdateRejected(`weight must be a positive number, got ${weight}`);
    if (!(scale > 0) || !Number.isFinite(scale))
      throw new UpdateRejected(`scale must be a positive number, got ${scale}`);
    const views: TensorView[] = [];
    for (const [name, sum] of this.sums) {
      const v = update.tensors.get(name);
      if (!v) throw new UpdateRejected(`missing tensor '${name}'`);
      if (viewLength(v) !== sum.length)
        throw new UpdateRejected(`'${name}' holds ${viewLength(v)} values, expected ${sum.length}`);
      views.push(v);
    }
    this.pending.push({ views, k: weight * scale });
    this.totalWeight += weight;
    this.count++;
    if (this.pending.length >= this.batch) this.flush();
  }

  /** Adds the held updates to the sums: one pass over the sums, block by block. */
  private flush(): void {
    const p = this.pending;
    if (p.length === 0) return;
    let t = 0;
    for (const sum of this.sums.values()) {
      for (let i = 0; i < sum.length; i += ADD_BLOCK) {
        const j = Math.min(sum.length, i + ADD_BLOCK);
        for (let u = 0; u < p.length; u++) addScaled(p[u].views[t], sum, p[u].k, i, j);
      }
      t++;
    }
    this.pending = [];
  }

  get contributors(): number {
    return this.count;
  }

  /** The weighted mean as float32 tensors. Throws when nothing was added. */
  result(): NamedWeights {
    if (this.released) throw new Error('this mean was released');
    if (this.count === 0) throw new Error('no update to average');
    this.flush();
    const out: NamedWeights = new Map();
    for (const { name, shape } of this.spec) {
      const sum = this.sums.get(name)!;
      const data = new Float32Array(sum.length);
      for (let i = 0; i < sum.length; i++) data[i] = sum[i] / this.totalWeight;
      out.set(name, { shape: [...shape], data });
    }
    return out;
  }
}

/** What a round adds its accepted updates to: the weighted mean, or a robust (coordinate-wise) one. */
export interface UpdateAggregator {
  add(update: NamedWeights, weight?: number, scale?: number): void;
  /** add() for a wire update checked against the same spec (checkEncodedUpdate), without decoding it first. */
  addChecked(update: CheckedUpdate, weight?: number, scale?: number): void;
  readonly contributors: number;
  result(): NamedWeights;
  /** Done with this aggregator (after result()): its buffers may serve the next round. */
  release?(): void;
}

export type RobustRule = 'trimmed-mean' | 'median';

/** Values dropped at each end of a coordinate by the trimmed mean of n: a fifth, at least one from 3 on. */
export function trimCount(n: number): number {
  return n < 3 ? 0 : Math.max(1, Math.floor(n / 5));
}

/** Bytes a robust aggregator holds for `sites` updates of `spec` (every update is kept until the round closes). */
export function robustBytes(spec: WeightSpec, sites: number): number {
  return sites * spec.reduce((a, e) => a + prod(e.shape), 0) * 4;
}

/** Default ceiling on robustBytes: 2 GiB, about 17 sites of a 30M-parameter nnU-Net. */
export const ROBUST_MAX_BYTES = 2 * 1024 ** 3;

/**
 * Coordinate-wise median or trimmed mean (Yin et al. 2018) of a round's updates, unweighted: one
 * site moves each coordinate at most to the nearest honest value, whatever it sends. Unlike the
 * streaming mean it must hold every update of the round (float32, robustBytes), so it is sized
 * for `maxUpdates` sites up front and refuses more.
 */
export class RobustMean implements UpdateAggregator {
  private readonly updates: Map<string, Float32Array>[] = [];

  constructor(
    readonly spec: WeightSpec,
    readonly rule: RobustRule,
    readonly maxUpdates: number,
    maxBytes = ROBUST_MAX_BYTES,
  ) {
    const bytes = robustBytes(spec, maxUpdates);
    if (bytes > maxBytes)
      throw new Error(
        `robust aggregation (${rule}) holds every update of a round: ${maxUpdates} sites × ${(bytes / maxUpdates / 2 ** 20).toFixed(1)} MiB = ${(bytes / 2 ** 30).toFixed(2)} GiB, over the ${(maxBytes / 2 ** 30).toFixed(2)} GiB limit`,
      );
  }

  /** `weight` is ignored (robust rules are unweighted); `scale` clips the update as it is stored. */
  add(update: NamedWeights, _weight = 1, scale = 1): void {
    validateUpdate(update, this.spec);
    if (this.updates.length >= this.maxUpdates)
      throw new UpdateRejected(`this round already holds ${this.maxUpdates} updates`);
    const kept = new Map<string, Float32Array>();
    for (const { name } of this.spec) {
      const d = update.get(name)!.data;
      const c = new Float32Array(d.length);
      for (let i = 0; i < d.length; i++) c[i] = d[i] * scale;
      kept.set(name, c);
    }
    this.updates.push(kept);
  }

  addChecked(update: CheckedUpdate, _weight = 1, scale = 1): void {
    if (this.updates.length >= this.maxUpdates)
      throw new UpdateRejected(`this round already holds ${this.maxUpdates} updates`);
    const kept = new Map<string, Float32Array>();
    for (const { name, shape } of this.spec) {
      const v = update.tensors.get(name);
      if (!v) throw new UpdateRejected(`missing tensor '${name}'`);
      const c = new Float32Array(prod(shape));
      storeScaled(v, c, scale);
      kept.set(name, c);
    }
    this.updates.push(kept);
  }

  get contributors(): number {
    return this.updates.length;
  }

  result(): NamedWeights {
    const n = this.updates.length;
    if (n === 0) throw new Error('no update to average');
    const trim = this.rule === 'median' ? 0 : trimCount(n);
    const col = new Float64Array(n);
    const out: NamedWeights = new Map();
    for (const { name, shape } of this.spec) {
      const cols = this.updates.map((u) => u.get(name)!);
      const data = new Float32Array(prod(shape));
      for (let i = 0; i < data.length; i++) {
        // Insertion sort: n (sites) is small, and a call to sort() per coordinate costs more.
        for (let k = 0; k < n; k++) {
          const v = cols[k][i];
          let j = k;
          for (; j > 0 && col[j - 1] > v; j--) col[j] = col[j - 1];
          col[j] = v;
        }
        if (this.rule === 'median') {
          data[i] = n % 2 ? col[(n - 1) / 2] : (col[n / 2 - 1] + col[n / 2]) / 2;
        } else {
          let s = 0;
          for (let k = trim; k < n - trim; k++) s += col[k];
          data[i] = s / (n - 2 * trim);
        }
      }
      out.set(name, { shape: [...shape], data });
    }
    return out;
  }
}

/** Applies an aggregate to a site's weights: overwrite keys with equal shape, keep the rest local. */
export function applyShared(
  local: NamedWeights,
  shared: NamedWeights,
): { replaced: string[]; kept: string[] } {
  const replaced: string[] = [];
  const kept: string[] = [];
  for (const [name, t] of local) {
    const s = shared.get(name);
    if (s && sameShape(s.shape, t.shape)) {
      t.data.set(s.data);
      replaced.push(name);
    } else {
      kept.push(name);
    }
  }
  return { replaced, kept };
}

/** Subset of `w` named by `spec` (what a site sends under AsymFedAvg), sharing buffers. */
export function pick(w: NamedWeights, spec: WeightSpec): NamedWeights {
  const out: NamedWeights = new Map();
  for (const { name } of spec) {
    const t = w.get(name);
    if (!t) throw new Error(`weights lack '${name}'`);
    out.set(name, t);
  }
  return out;
}

/** a - b per tensor over b's keys (a delta against the round's global weights). */
export function subtract(a: NamedWeights, b: NamedWeights): NamedWeights {
  const out: NamedWeights = new Map();
  for (const [name, tb] of b) {
    const ta = a.get(name);
    if (!ta || !sameShape(ta.shape, tb.shape))
      throw new Error(`cannot subtract '${name}': missing or shape differs`);
    const d = new Float32Array(tb.data.length);
    for (let i = 0; i < d.length; i++) d[i] = ta.data[i] - tb.data[i];
    out.set(name, { shape: [...tb.shape], data: d });
  }
  return out;
}

/** b + delta per tensor. */
export function addDelta(b: NamedWeights, delta: NamedWeights): NamedWeights {
  const out: NamedWeights = new Map();
  for (const [name, tb] of b) {
    const td = delta.get(name);
    if (!td || !sameShape(td.shape, tb.shape))
      throw new Error(`cannot apply delta to '${name}': missing or shape differs`);
    const d = new Float32Array(tb.data.length);
    for (let i = 0; i < d.length; i++) d[i] = tb.data[i] + td.data[i];
    out.set(name, { shape: [...tb.shape], data: d });
  }
  return out;
}
