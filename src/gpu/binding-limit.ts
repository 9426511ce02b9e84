// WebGPU binds each tensor as one storage buffer, and an adapter caps a binding
// (maxStorageBufferBindingSize, 128 MiB by default in Chrome, often 2–4 GiB on desktop GPUs when
// requested). A tensor over it fails validation deep inside a dispatch, where WebGPU reports an
// "uncaptured error" and silently drops the work. So training checks the plan before it starts
// and refuses, naming the limit and the tensor, instead of training on garbage.

export interface BindingLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

export interface NetShape {
  patch_size: number[];
  architecture: {
    arch_kwargs: { features_per_stage: number[]; strides: (number | number[])[] };
  };
}

export interface LargestTensor {
  bytes: number;
  /** What the tensor is, e.g. "stage 1 decoder concat (64 channels × 64×80×80 × batch 2)". */
  what: string;
}

const dims = (s: number[]) => s.join('×');

/**
 * The largest float32 tensor one training step of this network binds: the input, each stage's
 * feature map, each decoder level's skip concatenation (twice the stage's channels) and the
 * full-resolution logits.
 */
export function largestTrainingTensor(
  cfg: NetShape,
  batch: number,
  inChannels: number,
  numClasses: number,
): LargestTensor {
  const k = cfg.architecture.arch_kwargs;
  let spatial = [...cfg.patch_size];
  const cands: LargestTensor[] = [];
  const add = (c: number, s: number[], what: string) =>
    cands.push({
      bytes: 4 * batch * c * s.reduce((a, b) => a * b, 1),
      what: `${what} (${c} channels × ${dims(s)} × batch ${batch})`,
    });
  add(inChannels, spatial, 'input');
  add(numClasses, spatial, 'logits');
  k.features_per_stage.forEach((f, i) => {
    const st = k.strides[i];
    const s3 = Array.isArray(st) ? st : spatial.map(() => st);
    spatial = spatial.map((v, d) => Math.ceil(v / s3[d]));
    add(f, spatial, `stage ${i + 1} feature map`);
    if (i < k.features_per_stage.length - 1) add(2 * f, spatial, `stage ${i + 1} decoder concat`);
  });
  return cands.reduce((a, b) => (b.bytes > a.bytes ? b : a));
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(b < 2 ** 24 ? 1 : 0)} MiB`;

/** Why this network cannot train on an adapter with these limits, or null when it fits. */
export function bindingLimitProblem(
  cfg: NetShape,
  batch: number,
  inChannels: number,
  numClasses: number,
  limits: BindingLimits,
): string | null {
  const t = largestTrainingTensor(cfg, batch, inChannels, numClasses);
  const [limit, name] =
    limits.maxStorageBufferBindingSize <= limits.maxBufferSize
      ? [limits.maxStorageBufferBindingSize, 'maxStorageBufferBindingSize']
      : [limits.maxBufferSize, 'maxBufferSize'];
  if (t.bytes <= limit) return null;
  return (
    `this plan does not fit this GPU: its largest tensor, the ${t.what}, needs ${mib(t.bytes)}, ` +
    `over the adapter's ${name} of ${mib(limit)}. Plan again with this adapter's memory budget ` +
    `(a smaller patch or batch), or train where the limit is higher`
  );
}
