// Affine helpers shared by the NIfTI and DICOM readers: quaternion <-> rotation (NIfTI qform),
// and nibabel-compatible orientation codes.

/** 4x4 row-major matrix. */
export type Affine = number[];

export function identity(): Affine {
  return [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
}

/** The 3x3 block, as rows. */
function block(a: Affine): number[][] {
  return [0, 1, 2].map((r) => [a[r * 4], a[r * 4 + 1], a[r * 4 + 2]]);
}

function det3(m: number[][]): number {
  return (
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
    m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
    m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
  );
}

function inv3T(m: number[][]): number[][] {
  // Inverse transposed = cofactor matrix / det.
  const d = det3(m);
  const c = (r0: number, r1: number, c0: number, c1: number) =>
    m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
  return [
    [c(1, 2, 1, 2) / d, -c(1, 2, 0, 2) / d, c(1, 2, 0, 1) / d],
    [-c(0, 2, 1, 2) / d, c(0, 2, 0, 2) / d, -c(0, 2, 0, 1) / d],
    [c(0, 1, 1, 2) / d, -c(0, 1, 0, 2) / d, c(0, 1, 0, 1) / d],
  ];
}

/** Closest orthogonal matrix (polar decomposition) by Newton iteration; null when singular. */
function polarRotation(m: number[][]): number[][] | null {
  let r = m.map((row) => row.slice());
  for (let it = 0; it < 100; it++) {
    if (Math.abs(det3(r)) < 1e-12) return null;
    const t = inv3T(r);
    const next = r.map((row, i) => row.map((v, j) => (v + t[i][j]) / 2));
    let diff = 0;
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++) diff = Math.max(diff, Math.abs(next[i][j] - r[i][j]));
    r = next;
    if (diff < 1e-15) break;
  }
  return r;
}

/**
 * Orientation code of the voxel axes, like nibabel's `aff2axcodes` (e.g. 'RAS', 'LPS'): each axis
 * is matched to the world axis it moves along most, after removing zooms and shears, choosing
 * greedily in axis order so two voxel axes never share a world axis.
 */
export function axcodes(a: Affine): string {
  const m = block(a);
  const zooms = [0, 1, 2].map((c) => Math.hypot(m[0][c], m[1][c], m[2][c]) || 1);
  const rs = m.map((row) => row.map((v, c) => v / zooms[c]));
  // A singular matrix cannot be polar-decomposed this way; the normalised columns are then the best guess.
  const r = polarRotation(rs) ?? rs;
  const labels = [
    ['L', 'R'],
    ['P', 'A'],
    ['I', 'S'],
  ];
  let out = '';
  for (let c = 0; c < 3; c++) {
    const col = [r[0][c], r[1][c], r[2][c]];
    if (col.every((v) => Math.abs(v) < 1e-8)) {
      out += '?';
      continue;
    }
    let best = 0;
    for (let i = 1; i < 3; i++) if (Math.abs(col[i]) > Math.abs(col[best])) best = i;
    out += labels[best][col[best] < 0 ? 0 : 1];
    for (let j = 0; j < 3; j++) r[best][j] = 0;
  }
  return out;
}

/** Rotation matrix of a quaternion (w, x, y, z); non-unit quaternions are normalised. */
export function quatToMatrix(w: number, x: number, y: number, z: number): number[][] {
  const n = w * w + x * x + y * y + z * z;
  if (n < Number.EPSILON)
    return [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ];
  const s = 2 / n;
  const X = x * s,
    Y = y * s,
    Z = z * s;
  const wX = w * X,
    wY = w * Y,
    wZ = w * Z;
  const xX = x * X,
    xY = x * Y,
    xZ = x * Z;
  const yY = y * Y,
    yZ = y * Z,
    zZ = z * Z;
  return [
    [1 - (yY + zZ), xY - wZ, xZ + wY],
    [xY + wZ, 1 - (xX + zZ), yZ - wX],
    [xZ - wY, yZ + wX, 1 - (xX + yY)],
  ];
}

/**
 * NIfTI qform parameters of an affine: rotation quaternion (b, c, d with a >= 0), zooms, qfac.
 * Shears are dropped (the sform keeps them).
 */
export function affineToQform(a: Affine): {
  b: number;
  c: number;
  d: number;
  qfac: number;
  zooms: number[];
  offset: number[];
} {
  const m = block(a);
  const zooms = [0, 1, 2].map((c) => Math.hypot(m[0][c], m[1][c], m[2][c]) || 1);
  let r = m.map((row) => row.map((v, c) => v / zooms[c]));
  r = polarRotation(r) ?? [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ];
  let qfac = 1;
  if (det3(r) < 0) {
    qfac = -1;
    for (let i = 0; i < 3; i++) r[i][2] = -r[i][2];
  }
  // Quaternion from a proper rotation (the standard trace-based branches).
  const tr = r[0][0] + r[1][1] + r[2][2];
  let w: number, x: number, y: number, z: number;
  if (tr > 0) {
    const s = Math.sqrt(tr + 1) * 2;
    w = s / 4;
    x = (r[2][1] - r[1][2]) / s;
    y = (r[0][2] - r[2][0]) / s;
    z = (r[1][0] - r[0][1]) / s;
  } else if (r[0][0] > r[1][1] && r[0][0] > r[2][2]) {
    const s = Math.sqrt(1 + r[0][0] - r[1][1] - r[2][2]) * 2;
    w = (r[2][1] - r[1][2]) / s;
    x = s / 4;
    y = (r[0][1] + r[1][0]) / s;
    z = (r[0][2] + r[2][0]) / s;
  } else if (r[1][1] > r[2][2]) {
    const s = Math.sqrt(1 + r[1][1] - r[0][0] - r[2][2]) * 2;
    w = (r[0][2] - r[2][0]) / s;
    x = (r[0][1] + r[1][0]) / s;
    y = s / 4;
    z = (r[1][2] + r[2][1]) / s;
  } else {
    const s = Math.sqrt(1 + r[2][2] - r[0][0] - r[1][1]) * 2;
    w = (r[1][0] - r[0][1]) / s;
    x = (r[0][2] + r[2][0]) / s;
    y = (r[1][2] + r[2][1]) / s;
    z = s / 4;
  }
  if (w < 0) {
    w = -w;
    x = -x;
    y = -y;
    z = -z;
  }
  return { b: x, c: y, d: z, qfac, zooms, offset: [a[3], a[7], a[11]] };
}

/**
 * Refuses geometry no world-space computation can use: spacing that is NaN, zero or negative, a
 * non-finite affine, or voxel axes that are zero or collinear (a singular direction matrix).
 * Every reader calls it, so a bad header fails at import and not as NaNs in preprocessing.
 */
export function assertValidGeometry(
  what: string,
  spacing: readonly number[],
  affine: Affine,
): void {
  if (!spacing.every((s) => Number.isFinite(s) && s > 0))
    throw new Error(
      `${what}: invalid voxel spacing ${spacing.join(' x ')} (every spacing must be a finite number > 0)`,
    );
  if (affine.length !== 16 || !affine.every(Number.isFinite))
    throw new Error(`${what}: the voxel-to-world matrix has NaN or infinite entries`);
  const m = block(affine);
  const norms = [0, 1, 2].map((c) => Math.hypot(m[0][c], m[1][c], m[2][c]));
  if (Math.abs(det3(m)) <= 1e-6 * norms[0] * norms[1] * norms[2] || norms.some((n) => n === 0)) {
    throw new Error(
      `${what}: degenerate orientation: the voxel axes are zero or collinear (direction matrix ${m.map((r) => r.map((x) => +x.toPrecision(4)).join(' ')).join(' | ')})`,
    );
  }
}
