// nnU-Net's optimizer (spec §7.1): SGD, momentum 0.99, Nesterov, coupled weight decay 3e-5,
// gradient-norm clipping at 12 — in PyTorch's order: clip, then add wd·p, then momentum.
// tfjs' MomentumOptimizer has neither weight decay nor clipping and hides its buffers, so we
// keep our own (they go into checkpoints and stay local under AsymFedAvg).
import type * as TF from '@tensorflow/tfjs';

/**
 * Σ xs as tf.addN in groups of at most 7. tfjs-backend-webgpu's AddN binds every input as its own
 * storage buffer; adapters may allow as few as 8 per shader stage (SwiftShader: 8), and beyond
 * that the pipeline is invalid and WebGPU silently drops the whole command buffer it was
 * recorded in — measured here: an optimizer step over 66 gradients lost its updates.
 */
export function addMany(tf: typeof TF, xs: TF.Tensor[]): TF.Tensor {
  if (xs.length === 0) throw new Error('addMany: nothing to add');
  return tf.tidy(() => {
    let level = xs;
    while (level.length > 1) {
      const next: TF.Tensor[] = [];
      for (let i = 0; i < level.length; i += 7) {
        const group = level.slice(i, i + 7);
        next.push(group.length === 1 ? group[0] : tf.addN(group));
      }
      level = next;
    }
    return tf.clone(level[0]);
  });
}

export interface SGDOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  /** Max global gradient L2 norm; 0 or Infinity disables clipping. */
  clipNorm?: number;
}

export class SGDNesterov {
  lr: number;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly clipNorm: number;
  // Unnamed variables: tfjs variable names are global, and several models may coexist.
  private readonly buffers = new Map<string, TF.Variable>();

  constructor(
    private readonly tf: typeof TF,
    private readonly params: Map<string, TF.Variable>,
    o: SGDOptions,
  ) {
    this.lr = o.lr;
    this.momentum = o.momentum ?? 0.99;
    this.weightDecay = o.weightDecay ?? 3e-5;
    this.clipNorm = o.clipNorm ?? 12;
  }

  /**
   * One step, entirely on the device (no GPU→CPU read: WebGPU has no cheap synchronous readback).
   * Returns the gradient norm before clipping as a scalar tensor the caller reads (async) and
   * disposes; `checkNorm` turns a NaN/Inf norm into an error after the read.
   */
  step(grads: Map<string, TF.Tensor>): TF.Scalar {
    const tf = this.tf;
    const norm = tf.tidy(
      () =>
        tf.sqrt(
          addMany(
            tf,
            [...grads.values()].map((g) => tf.sum(tf.square(g))),
          ),
        ) as TF.Scalar,
    );
    // torch.nn.utils.clip_grad_norm_: coef = max_norm / (total + 1e-6), applied only when < 1.
    const clip = this.clipNorm > 0 && Number.isFinite(this.clipNorm);
    const coef = tf.tidy(() =>
      clip
        ? tf.minimum(tf.scalar(1), tf.div(tf.scalar(this.clipNorm), tf.add(norm, 1e-6)))
        : tf.scalar(1),
    );
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) continue;
      let buf = this.buffers.get(name);
      if (!buf) {
        buf = tf.variable(tf.zerosLike(p), false);
        this.buffers.set(name, buf);
      }
      const b = buf;
      tf.tidy(() => {
        const d = tf.add(tf.mul(g, coef), tf.mul(p, this.weightDecay));
        const nb = tf.add(tf.mul(b, this.momentum), d);
        b.assign(nb);
        p.assign(tf.sub(p, tf.mul(tf.add(d, tf.mul(nb, this.momentum)), this.lr)));
      });
    }
    coef.dispose();
    return norm;
  }

  /** Reads a norm returned by step() and disposes it; throws if training diverged. */
  static async checkNorm(norm: TF.Scalar): Promise<number> {
    const total = (await norm.data())[0];
    norm.dispose();
    if (!Number.isFinite(total))
      throw new Error(`gradient norm is ${total}: training diverged (NaN/Inf)`);
    return total;
  }

  /** Momentum buffers by parameter name (tfjs layout), for checkpoints. */
  async state(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, b] of this.buffers)
      out.set(name, { shape: [...b.shape], data: (await b.data()) as Float32Array });
    return out;
  }

  loadState(state: Map<string, { shape: number[]; data: Float32Array }>): void {
    for (const [name, s] of state) {
      const p = this.params.get(name);
      if (!p) throw new Error(`optimizer state names unknown parameter '${name}'`);
      if (p.shape.join() !== s.shape.join())
        throw new Error(
          `optimizer state for '${name}' has shape [${s.shape}], parameter has [${p.shape}]`,
        );
      this.buffers.get(name)?.dispose();
      this.buffers.set(name, this.tf.variable(this.tf.tensor(s.data, s.shape), false));
    }
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}
