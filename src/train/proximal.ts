// FedProx's proximal term (Li et al., "Federated Optimization in Heterogeneous Networks", 2020):
// μ/2·‖w − w_global‖² added to a site's loss, over the parameters it shares with the global
// model, so that local training on heterogeneous data stays near the round's global model. Its
// gradient is μ·(w − w_global).
import * as tf from '@tensorflow/tfjs';

export class ProximalTerm {
  private readonly anchors: Array<{ w: tf.Variable; anchor: tf.Tensor }>;

  /** Anchors `vars` at their current values (the round's global model, just loaded). */
  constructor(
    vars: readonly tf.Variable[],
    readonly mu: number,
  ) {
    if (!(mu >= 0) || !Number.isFinite(mu))
      throw new RangeError(`FedProx μ must be a finite number ≥ 0, got ${mu}`);
    this.anchors = vars.map((w) => ({ w, anchor: tf.keep(w.clone()) }));
  }

  /** μ/2·Σ‖w − w_anchor‖², differentiable in the variables (call inside tf.variableGrads). */
  loss(): tf.Scalar {
    return tf.tidy(() => {
      let sum: tf.Scalar = tf.scalar(0);
      for (const { w, anchor } of this.anchors)
        sum = tf.add(sum, tf.sum(tf.square(tf.sub(w, anchor))));
      return tf.mul(sum, this.mu / 2);
    });
  }

  dispose(): void {
    for (const a of this.anchors) a.anchor.dispose();
  }
}
