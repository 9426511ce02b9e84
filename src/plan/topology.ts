// nnU-Net's get_pool_and_conv_props: from the (transposed) spacing and a patch size, how many
// times each axis is downsampled, the per-stage strides and kernels, and the patch padded to a
// multiple of 2^(pools per axis). Reimplemented from the spec (§4.5 step 2) and the upstream
// behaviour, including its quirks, because plans must match nnU-Net exactly.

export interface Topology {
  numPoolPerAxis: number[];
  /** One stride vector per stage; stage 0 is all ones. */
  strides: number[][];
  /** One kernel vector per stage; the last one (bottleneck) is all threes. */
  kernelSizes: number[][];
  /** The input patch padded up to a multiple of mustBeDivisibleBy (may have been fractional). */
  patchSize: number[];
  mustBeDivisibleBy: number[];
}

/** Pads each axis up to the next multiple; an already divisible axis keeps its size. */
export function padShape(shape: readonly number[], divisibleBy: readonly number[]): number[] {
  // Python's float % equals JS % for the positive values here; int() truncates the result.
  return shape.map((s, i) =>
    Math.trunc(s % divisibleBy[i] === 0 ? s : s + divisibleBy[i] - (s % divisibleBy[i])),
  );
}

export function getPoolAndConvProps(
  spacing: readonly number[],
  patchSize: readonly number[],
  minFeatureMapSize = 4,
  maxNumPool = 999999,
): Topology {
  const dim = spacing.length;
  const currentSpacing = [...spacing];
  const currentSize = [...patchSize];
  const strides: number[][] = [new Array(dim).fill(1)];
  const kernelSizes: number[][] = [];
  const numPoolPerAxis = new Array(dim).fill(0);
  const kernel = new Array(dim).fill(1);

  for (;;) {
    let valid = [...Array(dim).keys()].filter((i) => currentSize[i] >= 2 * minFeatureMapSize);
    if (valid.length < 1) break;
    // Upstream keeps the spacings of the size-valid axes in a list and later indexes that list
    // with the axis number d (so with fewer valid axes than dims it reads another axis' spacing).
    // We reproduce that; where upstream would raise IndexError we read the axis' own spacing.
    const spacingsOfAxes = valid.map((i) => currentSpacing[i]);
    const minSpacingOfValid = Math.min(...spacingsOfAxes);
    valid = valid.filter((i) => currentSpacing[i] / minSpacingOfValid < 2);
    valid = valid.filter((i) => numPoolPerAxis[i] < maxNumPool);
    if (valid.length === 1 && !(currentSize[valid[0]] >= 3 * minFeatureMapSize)) break;
    if (valid.length < 1) break;

    const minSpacing = Math.min(...currentSpacing);
    for (let d = 0; d < dim; d++) {
      if (kernel[d] === 3) continue;
      const s = d < spacingsOfAxes.length ? spacingsOfAxes[d] : currentSpacing[d];
      if (s / minSpacing < 2) kernel[d] = 3;
    }

    const stride = new Array(dim).fill(1);
    for (const v of valid) {
      stride[v] = 2;
      numPoolPerAxis[v] += 1;
      currentSpacing[v] *= 2;
      currentSize[v] = Math.ceil(currentSize[v] / 2);
    }
    strides.push(stride);
    kernelSizes.push([...kernel]);
  }

  const mustBeDivisibleBy = numPoolPerAxis.map((n) => 2 ** n);
  kernelSizes.push(new Array(dim).fill(3));
  return {
    numPoolPerAxis,
    strides,
    kernelSizes,
    patchSize: padShape(patchSize, mustBeDivisibleBy),
    mustBeDivisibleBy,
  };
}
