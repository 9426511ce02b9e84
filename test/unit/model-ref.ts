// Naive float64 reference implementations (plain loops, PyTorch semantics) for model tests.
// Images are channels-last [B, D, H, W, C] flat arrays; 2-D images use D = 1.

export interface Img { data: Float64Array | Float32Array; shape: [number, number, number, number, number] }

/** PyTorch ConvNd: weight [out, in, kd, kh, kw], padding (k−1)//2, stride s, optional bias. */
export function refConv(x: Img, w: ArrayLike<number>, wShape: number[], stride: number[], bias?: ArrayLike<number>): Img {
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
                    s += x.data[(((b * D + id) * H + ih) * W + iw) * C + c] *
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
export function refConvTranspose(x: Img, w: ArrayLike<number>, wShape: number[], bias?: ArrayLike<number>): Img {
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
                    s += x.data[(((b * D + d) * H + h) * W + ww) * C + c] * w[(((c * O + o) * KD + kd) * KH + kh) * KW + kw];
                  }
                  const oi = (((b * OD + d * KD + kd) * OH + h * KH + kh) * OW + ww * KW + kw) * O + o;
                  y[oi] = s + (bias ? bias[o] : 0);
                }
  return { data: y, shape: [B, OD, OH, OW, O] };
}

/** Per (sample, channel) statistics over N for a [B, N, C] array. */
export function refInstanceNorm(x: ArrayLike<number>, B: number, N: number, C: number, g: ArrayLike<number>, beta: ArrayLike<number>, eps: number): Float64Array {
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
