// FedAvg and AsymFedAvg, as pure streaming code shared by the Node relay and the browser host.
//
// FednnU-Net's server (spec §3.2) stacks every client's full state_dict, keeps the keys that exist
// at every client with the same shape, and takes their unweighted mean. We compute the same thing
// with a running weighted sum (one model in memory, not one per site) over the key set derived
// from the (name, shape) lists sites declare at join. With `uniform` weighting and all sites
// present the result equals FednnU-Net's mean (up to float rounding: we accumulate in float64).
import { numel, sameShape, type NamedWeights, type WeightSpec } from '../model/named-weights.ts';

/** Keys present at every site with an identical shape (AsymFedAvg); FedAvg when plans are equal. */
export function sharedSpec(specs: WeightSpec[]): WeightSpec {
  if (specs.length === 0) return [];
  const [first, ...rest] = specs;
  const maps = rest.map((s) => new Map(s.map((e) => [e.name, e.shape])));
  return first.filter((e) => maps.every((m) => {
    const shape = m.get(e.name);
    return shape !== undefined && sameShape(shape, e.shape);
  })).map((e) => ({ name: e.name, shape: [...e.shape] }));
}

export class UpdateRejected extends Error {}

/** Checks an update against the expected spec: exact key set, shapes, finite values. */
export function validateUpdate(update: NamedWeights, spec: WeightSpec): void {
  if (update.size !== spec.length) {
    throw new UpdateRejected(`expected ${spec.length} tensors, got ${update.size}`);
  }
  for (const { name, shape } of spec) {
    const t = update.get(name);
    if (!t) throw new UpdateRejected(`missing tensor '${name}'`);
    if (!sameShape(t.shape, shape)) throw new UpdateRejected(`'${name}' has shape [${t.shape}], expected [${shape}]`);
    if (t.data.length !== numel(shape)) throw new UpdateRejected(`'${name}' holds ${t.data.length} values for shape [${shape}]`);
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

/** Running weighted mean over a fixed spec. Add validated updates one at a time. */
export class StreamingMean {
  private readonly sums = new Map<string, Float64Array>();
  private totalWeight = 0;
  private count = 0;

  constructor(readonly spec: WeightSpec) {
    for (const { name, shape } of spec) this.sums.set(name, new Float64Array(numel(shape)));
  }

  add(update: NamedWeights, weight = 1): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new UpdateRejected(`weight must be a positive number, got ${weight}`);
    validateUpdate(update, this.spec);
    for (const [name, sum] of this.sums) {
      const d = update.get(name)!.data;
      for (let i = 0; i < sum.length; i++) sum[i] += weight * d[i];
    }
    this.totalWeight += weight;
    this.count++;
  }

  get contributors(): number {
    return this.count;
  }

  /** The weighted mean as float32 tensors. Throws when nothing was added. */
  result(): NamedWeights {
    if (this.count === 0) throw new Error('no update to average');
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

/** Applies an aggregate to a site's weights: overwrite keys with equal shape, keep the rest local. */
export function applyShared(local: NamedWeights, shared: NamedWeights): { replaced: string[]; kept: string[] } {
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
    if (!ta || !sameShape(ta.shape, tb.shape)) throw new Error(`cannot subtract '${name}': missing or shape differs`);
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
    if (!td || !sameShape(td.shape, tb.shape)) throw new Error(`cannot apply delta to '${name}': missing or shape differs`);
    const d = new Float32Array(tb.data.length);
    for (let i = 0; i < d.length; i++) d[i] = tb.data[i] + td.data[i];
    out.set(name, { shape: [...tb.shape], data: d });
  }
  return out;
}
