// nnU-Net's default normalization schemes (spec §5 step 5), in place on float32 channels.
// Arithmetic mirrors numpy's float32 ops: each step is rounded to float32 (Math.fround), statistics are
// accumulated in float64 and rounded to float32 like numpy's float32 mean/std results.
import type { ChannelIntensityProperties } from '../fingerprint/types.ts';

/** What the normalisation reads of a channel's fingerprint statistics (the rest may be present). */
export type IntensityProperties = Pick<
  ChannelIntensityProperties,
  'mean' | 'std' | 'percentile_00_5' | 'percentile_99_5'
> &
  Partial<ChannelIntensityProperties>;

export type NormalizationScheme =
  | 'CTNormalization'
  | 'ZScoreNormalization'
  | 'NoNormalization'
  | 'RescaleTo01Normalization'
  | 'RGBTo01Normalization';

const f = Math.fround;
const EPS = 1e-8;

/** mean and population std (ddof 0) of img where sel(i), two-pass in float64. */
function meanStd(
  img: Float32Array,
  sel: ((i: number) => boolean) | null,
): { mean: number; std: number; n: number } {
  let s = 0,
    n = 0;
  for (let i = 0; i < img.length; i++)
    if (!sel || sel(i)) {
      s += img[i];
      n++;
    }
  const mean = n ? s / n : NaN;
  let q = 0;
  for (let i = 0; i < img.length; i++)
    if (!sel || sel(i)) {
      const d = img[i] - mean;
      q += d * d;
    }
  return { mean, std: Math.sqrt(q / n), n };
}

/**
 * Normalises one channel in place. `seg` is the cropped seg of the case (-1 outside the nonzero mask);
 * ZScore with `useMaskForNorm` only touches (and measures) voxels with seg >= 0.
 */
export function normalizeChannel(
  img: Float32Array,
  scheme: string,
  opts: {
    useMaskForNorm?: boolean;
    seg?: ArrayLike<number>;
    intensityProperties?: IntensityProperties;
  },
): void {
  switch (scheme as NormalizationScheme) {
    case 'ZScoreNormalization': {
      if (opts.useMaskForNorm) {
        const seg = opts.seg;
        if (!seg) throw new Error('ZScoreNormalization with use_mask_for_norm needs the seg');
        const { mean, std } = meanStd(img, (i) => seg[i] >= 0);
        const m = f(mean),
          s = f(Math.max(f(std), EPS));
        for (let i = 0; i < img.length; i++) if (seg[i] >= 0) img[i] = f(f(img[i] - m) / s);
      } else {
        const { mean, std } = meanStd(img, null);
        const m = f(mean),
          s = f(Math.max(f(std), EPS));
        for (let i = 0; i < img.length; i++) img[i] = f(f(img[i] - m) / s);
      }
      return;
    }
    case 'CTNormalization': {
      const p = opts.intensityProperties;
      if (!p)
        throw new Error('CTNormalization needs the foreground intensity properties of the channel');
      // numpy casts the Python-float stats to float32 before operating on a float32 array.
      const lo = p.percentile_00_5,
        hi = p.percentile_99_5,
        m = f(p.mean),
        s = f(Math.max(p.std, EPS));
      for (let i = 0; i < img.length; i++) {
        const v = img[i] < lo ? f(lo) : img[i] > hi ? f(hi) : img[i];
        img[i] = f(f(v - m) / s);
      }
      return;
    }
    case 'NoNormalization':
      return;
    case 'RescaleTo01Normalization': {
      let mn = Infinity;
      for (let i = 0; i < img.length; i++) if (img[i] < mn) mn = img[i];
      let mx = -Infinity;
      for (let i = 0; i < img.length; i++) {
        img[i] = f(img[i] - mn);
        if (img[i] > mx) mx = img[i];
      }
      const d = f(Math.max(mx, EPS));
      for (let i = 0; i < img.length; i++) img[i] = f(img[i] / d);
      return;
    }
    case 'RGBTo01Normalization': {
      for (let i = 0; i < img.length; i++) {
        if (img[i] < 0 || img[i] > 255)
          throw new Error('RGBTo01Normalization expects values in [0, 255]');
        img[i] = f(img[i] / 255);
      }
      return;
    }
    default:
      throw new Error(`unknown normalization scheme '${scheme}'`);
  }
}

/** Normalises every channel of a (C, ...) float32 array in place, per the configuration. */
export function normalize(
  data: Float32Array,
  channels: number,
  seg: ArrayLike<number>,
  schemes: readonly string[],
  useMaskForNorm: readonly boolean[],
  intensityProperties: Record<string, IntensityProperties> | undefined,
): void {
  const n = data.length / channels;
  if (schemes.length < channels)
    throw new Error(`normalization: ${channels} channels but ${schemes.length} schemes`);
  for (let c = 0; c < channels; c++) {
    normalizeChannel(data.subarray(c * n, (c + 1) * n), schemes[c], {
      useMaskForNorm: useMaskForNorm[c],
      seg,
      intensityProperties: intensityProperties?.[String(c)],
    });
  }
}
