// nnU-Net's weight init (InitWeights_He(1e-2)), reproducible with a seeded RNG.
import { mulberry32 } from '../util/rng.ts';
import type { ParamSpec } from './arch.ts';
import { prod } from '../util/numeric.ts';

/** Standard normal samples (Box–Muller) from a mulberry32 stream. */
export function normalSampler(seed: number): () => number {
  const u = mulberry32(seed);
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let u1 = u();
    while (u1 === 0) u1 = u(); // log(0) guard
    const r = Math.sqrt(-2 * Math.log(u1));
    const t = 2 * Math.PI * u();
    spare = r * Math.sin(t);
    return r * Math.cos(t);
  };
}

/**
 * torch.nn.init.kaiming_normal_(w, a) with mode 'fan_in': std = sqrt(2 / (1 + a²)) / sqrt(fan_in),
 * where torch's fan_in is shape[1] · prod(kernel), i.e. `in` for Conv [out, in, ...k] and
 * `out` for ConvTranspose [in, out, ...k].
 */
export function kaimingStd(ptShape: readonly number[], a = 1e-2): number {
  const fanIn = prod(ptShape.slice(1));
  return Math.sqrt(2 / (1 + a * a)) / Math.sqrt(fanIn);
}

/** Initial value of one parameter in PyTorch layout: convs He-normal, biases 0, norm weight 1. */
export function initParam(spec: ParamSpec, next: () => number, a = 1e-2): Float32Array {
  const out = new Float32Array(prod(spec.shape));
  switch (spec.kind) {
    case 'conv':
    case 'convTranspose': {
      const std = kaimingStd(spec.shape, a);
      for (let i = 0; i < out.length; i++) out[i] = std * next();
      break;
    }
    case 'normWeight':
      out.fill(1);
      break;
    case 'bias':
    case 'normBias':
      break;
  }
  return out;
}
