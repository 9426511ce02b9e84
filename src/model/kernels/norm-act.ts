// Fused InstanceNorm (affine, population variance) + LeakyReLU on a channels-last view
// [B, N, C] for tfjs-backend-webgpu, forward and backward, as two custom kernels. The composite
// version costs ~15 kernels forward and ~30 backward per conv block (means, broadcast
// subtract/multiply/add over [B, N, C] with a [C] operand, leakyRelu and their gradients);
// here it is three passes forward (partial sums, per-(b, c) statistics, output) and four
// backward (partial sums, statistics, dx, dγ/dβ).
//
// Statistics: per chunk of voxels, Σ(x − K) and Σ(x − K)² with K = the channel's first voxel
// (the shifted-data algorithm, so a large mean does not cancel the variance), combined per
// (b, c): μ = K + S1/N, σ² = S2/N − (S1/N)², r = (σ² + ε)^-½.
// Backward, with x̂ = (x − μ)·r, u = γ·x̂ + β, g = dz·(u > 0 ? 1 : α) (tfjs' leakyRelu gradient):
//   dx = γ·r·(g − Σg/N − x̂·Σ(g·x̂)/N),  dγ = Σ_b Σ(g·x̂),  dβ = Σ_b Σg.
import type { TensorInfo } from '@tensorflow/tfjs';
import { rawProgram, type WebGPUBackendLike } from './program.ts';

interface View {
  B: number;
  N: number;
  C: number;
  S: number;
  chunk: number;
}

function view(shape: number[]): View {
  const B = shape[0];
  const C = shape[shape.length - 1];
  const N = shape.reduce((a, b) => a * b, 1) / (B * C);
  // Enough partial sums to keep the device busy, at least 64 voxels each.
  const S = Math.max(1, Math.min(Math.ceil(N / 64), Math.ceil(4096 / (B * C))));
  return { B, N, C, S, chunk: Math.ceil(N / S) };
}

const vkey = (v: View) => `${v.B}_${v.N}_${v.C}_${v.S}`;

/** Sums the S partial rows [B, S, 2, C] into s1, s2 per (b, c), then runs `finish`. */
function combineProgram(v: View, name: string, inputs: string[], finish: string) {
  return rawProgram({
    key: `${name}_${vkey(v)}`,
    inputs,
    components: inputs.map(() => 1),
    outputShape: [v.B, 2, v.C],
    threads: v.B * v.C,
    body: `
  let c = t % ${v.C};
  let b = t / ${v.C};
  var s1 = 0.0;
  var s2 = 0.0;
  for (var s = 0; s < ${v.S}; s++) {
    s1 += partial[((b * ${v.S} + s) * 2) * ${v.C} + c];
    s2 += partial[((b * ${v.S} + s) * 2 + 1) * ${v.C} + c];
  }
  ${finish}`,
  });
}

const prelude = (v: View) => `
fn stat(b : i32, k : i32, c : i32) -> f32 { return stats[(b * 2 + k) * ${v.C} + c]; }`;

/** Forward: [y, stats] with stats [B, 2, C] = (μ, r). */
export function normActForward(
  backend: WebGPUBackendLike,
  x: TensorInfo,
  gamma: TensorInfo,
  beta: TensorInfo,
  eps: number,
  alpha: number,
): [TensorInfo, TensorInfo] {
  const v = view(x.shape);
  const partialProgram = rawProgram({
    key: `nafp_${vkey(v)}`,
    inputs: ['x'],
    components: [1],
    outputShape: [v.B, v.S, 2, v.C],
    threads: v.B * v.S * v.C,
    body: `
  let c = t % ${v.C};
  let s = (t / ${v.C}) % ${v.S};
  let b = t / ${v.C * v.S};
  let k = x[b * ${v.N * v.C} + c];
  var s1 = 0.0;
  var s2 = 0.0;
  let end = min(${v.N}, (s + 1) * ${v.chunk});
  for (var n = s * ${v.chunk}; n < end; n++) {
    let d = x[(b * ${v.N} + n) * ${v.C} + c] - k;
    s1 += d;
    s2 += d * d;
  }
  result[((b * ${v.S} + s) * 2) * ${v.C} + c] = s1;
  result[((b * ${v.S} + s) * 2 + 1) * ${v.C} + c] = s2;`,
  });
  const partial = backend.runWebGPUProgram(partialProgram, [x], 'float32');
  const statsProgram = combineProgram(
    v,
    `nafs_${eps}`,
    ['partial', 'x'],
    `
  let k = x[b * ${v.N * v.C} + c];
  let m = s1 / ${v.N}.0;
  let variance = max(s2 / ${v.N}.0 - m * m, 0.0);
  result[(b * 2) * ${v.C} + c] = k + m;
  result[(b * 2 + 1) * ${v.C} + c] = inverseSqrt(variance + ${eps.toExponential(9)});`,
  );
  const stats = backend.runWebGPUProgram(statsProgram, [partial, x], 'float32');
  backend.disposeData(partial.dataId);
  const yProgram = rawProgram({
    key: `nafy_${vkey(v)}_${alpha}`,
    inputs: ['x', 'stats', 'gamma', 'beta'],
    components: [1, 1, 1, 1],
    outputShape: [...x.shape],
    threads: v.B * v.N * v.C,
    prelude: prelude(v),
    body: `
  let c = t % ${v.C};
  let b = t / ${v.N * v.C};
  let u = gamma[c] * (x[t] - stat(b, 0, c)) * stat(b, 1, c) + beta[c];
  result[t] = select(${alpha.toExponential(9)} * u, u, u > 0.0);`,
  });
  const y = backend.runWebGPUProgram(yProgram, [x, stats, gamma, beta], 'float32');
  return [y, stats];
}

/** Backward: [dx, dγ, dβ]. */
export function normActBackward(
  backend: WebGPUBackendLike,
  dz: TensorInfo,
  x: TensorInfo,
  stats: TensorInfo,
  gamma: TensorInfo,
  beta: TensorInfo,
  alpha: number,
): [TensorInfo, TensorInfo, TensorInfo] {
  const v = view(x.shape);
  const a = alpha.toExponential(9);
  // g and x̂ at flat index i (channel c, sample b).
  const gx = `
fn xhat(i : i32, b : i32, c : i32) -> f32 { return (x[i] - stat(b, 0, c)) * stat(b, 1, c); }
fn grad(i : i32, c : i32, xh : f32) -> f32 {
  let u = gamma[c] * xh + beta[c];
  return select(${a} * dz[i], dz[i], u > 0.0);
}`;
  const inputs = ['dz', 'x', 'stats', 'gamma', 'beta'];
  const partialProgram = rawProgram({
    key: `nabp_${vkey(v)}_${alpha}`,
    inputs,
    components: [1, 1, 1, 1, 1],
    outputShape: [v.B, v.S, 2, v.C],
    threads: v.B * v.S * v.C,
    prelude: prelude(v) + gx,
    body: `
  let c = t % ${v.C};
  let s = (t / ${v.C}) % ${v.S};
  let b = t / ${v.C * v.S};
  var s1 = 0.0;
  var s2 = 0.0;
  let end = min(${v.N}, (s + 1) * ${v.chunk});
  for (var n = s * ${v.chunk}; n < end; n++) {
    let i = (b * ${v.N} + n) * ${v.C} + c;
    let xh = xhat(i, b, c);
    let g = grad(i, c, xh);
    s1 += g;
    s2 += g * xh;
  }
  result[((b * ${v.S} + s) * 2) * ${v.C} + c] = s1;
  result[((b * ${v.S} + s) * 2 + 1) * ${v.C} + c] = s2;`,
  });
  const partial = backend.runWebGPUProgram(partialProgram, [dz, x, stats, gamma, beta], 'float32');
  const gstatsProgram = combineProgram(
    v,
    'nabs',
    ['partial'],
    `
  result[(b * 2) * ${v.C} + c] = s1;
  result[(b * 2 + 1) * ${v.C} + c] = s2;`,
  );
  const gstats = backend.runWebGPUProgram(gstatsProgram, [partial], 'float32');
  backend.disposeData(partial.dataId);
  const dxProgram = rawProgram({
    key: `nabx_${vkey(v)}_${alpha}`,
    inputs: [...inputs, 'gstats'],
    components: [1, 1, 1, 1, 1, 1],
    outputShape: [...x.shape],
    threads: v.B * v.N * v.C,
    prelude: prelude(v) + gx,
    body: `
  let c = t % ${v.C};
  let b = t / ${v.N * v.C};
  let xh = xhat(t, b, c);
  let g = grad(t, c, xh);
  let sg = gstats[(b * 2) * ${v.C} + c];
  let sgx = gstats[(b * 2 + 1) * ${v.C} + c];
  result[t] = gamma[c] * stat(b, 1, c) * (g - (sg + xh * sgx) / ${v.N}.0);`,
  });
  const dx = backend.runWebGPUProgram(dxProgram, [dz, x, stats, gamma, beta, gstats], 'float32');
  const param = (k: number) =>
    backend.runWebGPUProgram(
      rawProgram({
        key: `nabg_${vkey(v)}_${k}`,
        inputs: ['gstats'],
        components: [1],
        outputShape: [v.C],
        threads: v.C,
        body: `
  var s = 0.0;
  for (var b = 0; b < ${v.B}; b++) { s += gstats[(b * 2 + ${k}) * ${v.C} + t]; }
  result[t] = s;`,
      }),
      [gstats],
      'float32',
    );
  const dgamma = param(1);
  const dbeta = param(0);
  backend.disposeData(gstats.dataId);
  return [dx, dgamma, dbeta];
}
