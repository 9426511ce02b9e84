// Synthetic training data in memory: a noisy body with one ellipsoid "lesion" (label 1) that is
// brighter than its surroundings. Seeded, so every test sees the same cases.
import type { Volume } from '../io/volume.ts';
import type { DatasetJson } from '../plan/types.ts';
import { mulberry32 } from '../util/rng.ts';

export const PHANTOM_DATASET_JSON: DatasetJson = {
  channel_names: { '0': 'T1' },
  labels: { background: 0, lesion: 1 },
  numTraining: 0,
  file_ending: '.nii.gz',
};

function volume(data: Float32Array | Int16Array, n: number, spacing: number): Volume {
  return {
    data,
    dims: [n, n, n],
    channels: 1,
    spacing: [spacing, spacing, spacing],
    affine: [spacing, 0, 0, 0, 0, spacing, 0, 0, 0, 0, spacing, 0, 0, 0, 0, 1],
    datatype: data instanceof Float32Array ? 'float32' : 'int16',
  };
}

/** One case of edge n: background ~ N(100, σ), ellipsoid ~ N(170, σ), radii 0.15..0.3·n. */
export function ellipsoidPhantom(
  seed: number,
  n = 32,
  spacing = 1,
  noise = 20,
): { image: Volume; label: Volume } {
  const r = mulberry32(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const radii = [0, 1, 2].map(() => n * (0.15 + 0.15 * r()));
  const centre = radii.map((rad) => rad + 1 + r() * (n - 2 * rad - 2));
  const img = new Float32Array(n ** 3);
  const lab = new Int16Array(n ** 3);
  for (let z = 0; z < n; z++)
    for (let y = 0; y < n; y++)
      for (let x = 0; x < n; x++) {
        const i = (z * n + y) * n + x;
        const d =
          ((x - centre[0]) / radii[0]) ** 2 +
          ((y - centre[1]) / radii[1]) ** 2 +
          ((z - centre[2]) / radii[2]) ** 2;
        const fg = d <= 1;
        lab[i] = fg ? 1 : 0;
        img[i] = (fg ? 170 : 100) + noise * gauss();
      }
  return { image: volume(img, n, spacing), label: volume(lab, n, spacing) };
}
