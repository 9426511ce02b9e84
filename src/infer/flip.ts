// Flips for mirroring test-time augmentation.

/**
 * Flips a C-order array of shape (lead, ...dims) along the given axes of `dims` (0-based, so
 * axis 0 is the first spatial axis), into a new array. `lead` folds batch and channels.
 */
export function flipAxes(
  src: Float32Array,
  lead: number,
  dims: readonly number[],
  axes: readonly number[],
): Float32Array {
  const n = dims.reduce((a, b) => a * b, 1);
  if (src.length !== lead * n) throw new Error(`flipAxes: length ${src.length} != ${lead}·${n}`);
  const out = new Float32Array(src.length);
  if (axes.length === 0) {
    out.set(src);
    return out;
  }
  // Source offset of every destination voxel within one block, built axis by axis.
  const map = new Int32Array(n);
  let size = 1;
  map[0] = 0;
  for (let a = 0; a < dims.length; a++) {
    const d = dims[a];
    const flip = axes.includes(a);
    // Extend the map over axis a: new index = i*size_prev... done outer-to-inner for C order.
    const next = new Int32Array(size * d);
    for (let o = 0; o < size; o++) {
      for (let i = 0; i < d; i++) next[o * d + i] = map[o] * d + (flip ? d - 1 - i : i);
    }
    map.set(next);
    size *= d;
  }
  for (let b = 0; b < lead; b++) {
    const base = b * n;
    for (let i = 0; i < n; i++) out[base + i] = src[base + map[i]];
  }
  return out;
}

/** Every non-empty combination of `axes`, in itertools order (by size, then lexicographic). */
export function axisCombinations(axes: readonly number[]): number[][] {
  const out: number[][] = [];
  const rec = (k: number, start: number, cur: number[]): void => {
    if (cur.length === k) {
      out.push([...cur]);
      return;
    }
    for (let i = start; i < axes.length; i++) {
      cur.push(axes[i]);
      rec(k, i + 1, cur);
      cur.pop();
    }
  };
  for (let k = 1; k <= axes.length; k++) rec(k, 0, []);
  return out;
}
