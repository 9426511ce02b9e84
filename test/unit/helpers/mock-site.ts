// A stand-in SiteTrainer for federation tests: each "training round" moves every weight half way
// to a site-specific target, so FedAvg's result is predictable in closed form.
import type { SiteTrainer } from '../../../src/fed/client.ts';
import type { FederationConfig } from '../../../src/fed/protocol.ts';
import type { NamedWeights, WeightSpec } from '../../../src/model/named-weights.ts';
import { randomArray } from '../../../src/util/rng.ts';
import { applyShared } from '../../../src/fed/aggregate.ts';

export class MockTrainer implements SiteTrainer {
  w: NamedWeights = new Map();
  readonly targets = new Map<string, Float32Array>();
  aggregate: Record<string, unknown> | null | undefined;
  trained: number[] = [];
  onTrain?: (round: number) => void | Promise<void>;
  finalGlobal?: NamedWeights;

  constructor(
    readonly layout: WeightSpec,
    readonly seed: number,
    public numCases = 3,
  ) {}

  async localFingerprint(): Promise<Record<string, unknown>> {
    return { site: this.seed, numCases: this.numCases };
  }
  async prepare(aggregate: Record<string, unknown> | null, _c: FederationConfig) {
    this.aggregate = aggregate;
    this.layout.forEach(({ name, shape }, i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      this.w.set(name, { shape, data: randomArray(n, this.seed * 1000 + i) });
      this.targets.set(name, randomArray(n, this.seed * 1000 + 500 + i));
    });
  }
  async weights() {
    return new Map([...this.w].map(([k, t]) => [k, { shape: [...t.shape], data: t.data.slice() }]));
  }
  async loadShared(shared: NamedWeights) {
    applyShared(this.w, shared);
  }
  async train(round: number) {
    await this.onTrain?.(round);
    for (const [name, t] of this.w) {
      const target = this.targets.get(name)!;
      for (let i = 0; i < t.data.length; i++) t.data[i] += 0.5 * (target[i] - t.data[i]);
    }
    this.trained.push(round);
    return { loss: 1 / round };
  }
  async finish(global: NamedWeights) {
    this.finalGlobal = global;
  }
}
