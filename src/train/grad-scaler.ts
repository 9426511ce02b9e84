// Dynamic loss scaling as PyTorch's torch.amp.GradScaler, which nnU-Net's trainer uses for mixed
// precision: the loss is multiplied by `scale` before backward, the gradients are divided by it
// before clipping (nnU-Net: unscale_, clip_grad_norm_(12), step, update), the optimizer step is
// skipped when any gradient is inf/NaN, and the scale then halves (backoff) or, after
// `growthInterval` consecutive finite steps, doubles (growth). The scale is kept as a float32
// value as PyTorch's scale tensor is; with the default factors it stays a power of two, so
// scaling and unscaling are exact in fp32 (no rounding is added to fp32 gradients).
import type * as TF from '@tensorflow/tfjs';

export interface GradScalerOptions {
  /** PyTorch: init_scale = 2^16. */
  initScale?: number;
  /** PyTorch: growth_factor = 2. */
  growthFactor?: number;
  /** PyTorch: backoff_factor = 0.5. */
  backoffFactor?: number;
  /** PyTorch: growth_interval = 2000. */
  growthInterval?: number;
}

export interface GradScalerState {
  scale: number;
  /** Consecutive finite steps since the last growth or backoff (PyTorch's _growth_tracker). */
  growthTracker: number;
}

export class GradScaler {
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  private s: number;
  private tracker = 0;

  constructor(o: GradScalerOptions = {}) {
    const init = o.initScale ?? 2 ** 16;
    this.growthFactor = o.growthFactor ?? 2;
    this.backoffFactor = o.backoffFactor ?? 0.5;
    this.growthInterval = o.growthInterval ?? 2000;
    if (!(init > 0) || !Number.isFinite(init))
      throw new Error(`GradScaler: initScale must be finite and > 0, got ${init}`);
    if (!(this.growthFactor > 1))
      throw new Error(`GradScaler: growthFactor must be > 1, got ${this.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1))
      throw new Error(`GradScaler: backoffFactor must be in (0, 1), got ${this.backoffFactor}`);
    if (!Number.isInteger(this.growthInterval) || this.growthInterval < 1)
      throw new Error(
        `GradScaler: growthInterval must be a positive integer, got ${this.growthInterval}`,
      );
    this.s = Math.fround(init);
  }

  get scale(): number {
    return this.s;
  }

  /** 1/scale rounded to fp32, as PyTorch's unscale_ (scale.double().reciprocal().float()). */
  get invScale(): number {
    return Math.fround(1 / this.s);
  }

  get state(): GradScalerState {
    return { scale: this.s, growthTracker: this.tracker };
  }

  set state(st: GradScalerState) {
    if (!(st.scale > 0) || !Number.isFinite(st.scale))
      throw new Error(`GradScaler: scale must be finite and > 0, got ${st.scale}`);
    if (!Number.isInteger(st.growthTracker) || st.growthTracker < 0)
      throw new Error(`GradScaler: growthTracker must be a non-negative integer`);
    this.s = Math.fround(st.scale);
    this.tracker = st.growthTracker;
  }

  /**
   * After a step's gradients were checked: PyTorch's _amp_update_scale_. Returns whether the
   * optimizer step is taken (false: skip it, weights and momentum stay as they are).
   */
  update(foundInf: boolean): boolean {
    if (foundInf) {
      this.s = Math.fround(this.s * this.backoffFactor);
      this.tracker = 0;
      return false;
    }
    const successful = this.tracker + 1;
    if (successful === this.growthInterval) {
      const grown = Math.fround(this.s * this.growthFactor);
      // PyTorch keeps the old scale when growing would overflow fp32.
      if (Number.isFinite(grown)) this.s = grown;
      this.tracker = 0;
    } else {
      this.tracker = successful;
    }
    return true;
  }
}

/**
 * Gradients divided by the scale (new tensors; the caller disposes the inputs) and a probe
 * scalar that is finite exactly when every element of every gradient is: Σ g·0 is 0 for finite
 * g and NaN for ±Inf or NaN, and cannot overflow (no bool tensors: tfjs-backend-webgpu's cast
 * from bool to float32 reuses the int buffer, which our float kernels then misread).
 */
export function unscaleAndCheck(
  tf: typeof TF,
  grads: Map<string, TF.Tensor>,
  invScale: number,
): { grads: Map<string, TF.Tensor>; probe: TF.Scalar } {
  const out = new Map<string, TF.Tensor>();
  for (const [name, g] of grads)
    out.set(
      name,
      tf.tidy(() => tf.mul(g, tf.scalar(invScale))),
    );
  const probe = tf.tidy(() => {
    let acc: TF.Tensor = tf.scalar(0);
    for (const g of out.values()) acc = tf.add(acc, tf.sum(tf.mul(g, 0)));
    return acc as TF.Scalar;
  });
  return { grads: out, probe };
}
