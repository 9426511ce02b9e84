// Naive float64 reference implementations (plain loops, PyTorch semantics) for model tests.
// Images are channels-last [B, D, H, W, C] flat arrays; 2-D images use D = 1.

export interface Img {
  data: Float64Array | Float32Array;
  shape: [number, number, number, number, number];
}

/** PyTorch ConvNd: weight [out, in, kd, kh, kw], padding (k−1)//2, stride s, optional bias. */
export function refConv(
  x: Img,
  w: ArrayLike<number>,
  wShape: number[],
  stride: number[],
  bias?: ArrayLike<number>,
): Img {
  const [B, D, H, W, C] = x.shape;
  const [O, I, KD, KH, KW] = wShape;
  if (I !== C) throw new Error('refConv channels');
  const k = [KD, KH, KW];
  const p = k.map((v) => Math.floor((v - 1) / 2));
  const outSp = [D, H, W].map((n, i) => Math.floor((n + 2 * p[i] - k[i]) / stride[i]) + 1);
  const [OD, OH, OW] = outSp;
  const y = new Float64Array(B * OD * OH * OW * O);
  for (let b = 0; b < B; b++)
    for (let od = 0; od < OD; od++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++)
          for (let o = 0; o < O; o++) {
            let s = bias ? bias[o] : 0;
            for (let kd = 0; kd < KD; kd++) {
              const id = od * stride[0] - p[0] + kd;
              if (id < 0 || id >= D) continue;
              for (let kh = 0; kh < KH; kh++) {
                const ih = oh * stride[1] - p[1] + kh;
                if (ih < 0 || ih >= H) continue;
                for (let kw = 0; kw < KW; kw++) {
                  const iw = ow * stride[2] - p[2] + kw;
                  if (iw < 0 || iw >= W) continue;
                  for (let c = 0; c < C; c++) {
                    s +=
                      x.data[(((b * D + id) * H + ih) * W + iw) * C + c] *
                      w[(((o * I + c) * KD + kd) * KH + kh) * KW + kw];
                  }
                }
              }
            }
            y[(((b * OD + od) * OH + oh) * OW + ow) * O + o] = s;
          }
  return { data: y, shape: [B, OD, OH, OW, O] };
}

/** PyTorch ConvTransposeNd with kernel = stride, no padding: weight [in, out, kd, kh, kw]. */
export function refConvTranspose(
  x: Img,
  w: ArrayLike<number>,
  wShape: number[],
  bias?: ArrayLike<number>,
): Img {
  const [B, D, H, W, C] = x.shape;
  const [I, O, KD, KH, KW] = wShape;
  if (I !== C) throw new Error('refConvTranspose channels');
  const [OD, OH, OW] = [D * KD, H * KH, W * KW];
  const y = new Float64Array(B * OD * OH * OW * O);
  for (let b = 0; b < B; b++)
    for (let d = 0; d < D; d++)
      for (let h = 0; h < H; h++)
        for (let ww = 0; ww < W; ww++)
          for (let kd = 0; kd < KD; kd++)
            for (let kh = 0; kh < KH; kh++)
              for (let kw = 0; kw < KW; kw++)
                for (let o = 0; o < O; o++) {
                  let s = 0;
                  for (let c = 0; c < C; c++) {
                    s +=
                      x.data[(((b * D + d) * H + h) * W + ww) * C + c] *
                      w[(((c * O + o) * KD + kd) * KH + kh) * KW + kw];
                  }
                  const oi =
                    (((b * OD + d * KD + kd) * OH + h * KH + kh) * OW + ww * KW + kw) * O + o;
                  y[oi] = s + (bias ? bias[o] : 0);
                }
  return { data: y, shape: [B, OD, OH, OW, O] };
}

/** Per (sample, channel) statistics over N for a [B, N, C] array. */
export function refInstanceNorm(
  x: ArrayLike<number>,
  B: number,
  N: number,
  C: number,
  g: ArrayLike<number>,
  beta: ArrayLike<number>,
  eps: number,
): Float64Array {
  const y = new Float64Array(B * N * C);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++) {
      let m = 0;
      for (let n = 0; n < N; n++) m += x[(b * N + n) * C + c];
      m /= N;
      let v = 0;
      for (let n = 0; n < N; n++) v += (x[(b * N + n) * C + c] - m) ** 2;
      v /= N;
      for (let n = 0; n < N; n++) {
        const i = (b * N + n) * C + c;
        y[i] = ((x[i] - m) / Math.sqrt(v + eps)) * g[c] + beta[c];
      }
    }
  return y;
}

export type RefWeights = Map<string, { shape: number[]; data: ArrayLike<number> }>;

export interface RefArch {
  dims: 2 | 3;
  nStages: number;
  kernelSizes: number[][];
  strides: number[][];
  nConvPerStage: number[];
  nConvPerStageDecoder: number[];
  normEps: number;
  negativeSlope: number;
}

const to3 = (v: number[]) => (v.length === 2 ? [1, ...v] : v);
const w5 = (s: number[]) => (s.length === 4 ? [s[0], s[1], 1, s[2], s[3]] : s);

function refBlock(x: Img, w: RefWeights, prefix: string, a: RefArch, stride: number[]): Img {
  const cw = w.get(`${prefix}.conv.weight`)!;
  const y = refConv(x, cw.data, w5(cw.shape), to3(stride), w.get(`${prefix}.conv.bias`)?.data);
  const [B, D, H, W, C] = y.shape;
  const n = refInstanceNorm(
    y.data,
    B,
    D * H * W,
    C,
    w.get(`${prefix}.norm.weight`)!.data,
    w.get(`${prefix}.norm.bias`)!.data,
    a.normEps,
  );
  return { data: n.map((v) => (v > 0 ? v : a.negativeSlope * v)), shape: y.shape };
}

function refCat(a: Img, b: Img): Img {
  const [B, D, H, W, Ca] = a.shape;
  const Cb = b.shape[4];
  const out = new Float64Array(B * D * H * W * (Ca + Cb));
  for (let v = 0; v < B * D * H * W; v++) {
    for (let c = 0; c < Ca; c++) out[v * (Ca + Cb) + c] = a.data[v * Ca + c];
    for (let c = 0; c < Cb; c++) out[v * (Ca + Cb) + Ca + c] = b.data[v * Cb + c];
  }
  return { data: out, shape: [B, D, H, W, Ca + Cb] };
}

/**
 * Float64 PlainConvUNet forward from PyTorch-layout weights, written from the architecture
 * description (spec §6): returns every decoder level's logits, highest resolution first.
 */
export function refUNet(w: RefWeights, a: RefArch, x: Img): Img[] {
  const skips: Img[] = [];
  let h = x;
  for (let s = 0; s < a.nStages; s++) {
    for (let c = 0; c < a.nConvPerStage[s]; c++) {
      const stride = c === 0 ? a.strides[s] : a.strides[s].map(() => 1);
      h = refBlock(h, w, `encoder.stages.${s}.0.convs.${c}`, a, stride);
    }
    skips.push(h);
  }
  const outs: Img[] = [];
  let low = skips[a.nStages - 1];
  for (let j = 0; j < a.nStages - 1; j++) {
    const t = w.get(`decoder.transpconvs.${j}.weight`)!;
    const up = refConvTranspose(
      low,
      t.data,
      w5(t.shape),
      w.get(`decoder.transpconvs.${j}.bias`)?.data,
    );
    h = refCat(up, skips[a.nStages - 2 - j]);
    for (let c = 0; c < a.nConvPerStageDecoder[j]; c++) {
      h = refBlock(
        h,
        w,
        `decoder.stages.${j}.convs.${c}`,
        a,
        a.strides[0].map(() => 1),
      );
    }
    const sw = w.get(`decoder.seg_layers.${j}.weight`)!;
    outs.push(
      refConv(h, sw.data, w5(sw.shape), [1, 1, 1], w.get(`decoder.seg_layers.${j}.bias`)!.data),
    );
    low = h;
  }
  return outs.reverse();
}
