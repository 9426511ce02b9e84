// Synthetic multi-site phantom datasets for demos, workshops and tests: no real scan needed.
// Each site sees the same kind of anatomy through its own "scanner": its own voxel spacing,
// intensity scale/offset and noise, like the reference phantoms 801/804 (our own simple model,
// not a port of make_phantoms.py). A body (elliptic cylinder) holds an ellipsoid organ (label 1)
// with a darker lesion inside (label 2); a smooth multiplicative bias field and Rician noise
// complete the image. Deterministic per (site, case) seed. Pure: runs in Node and the browser.
import type { Volume } from '../io/volume.ts';
import type { DatasetJson } from '../io/raw-dataset.ts';
import { mulberry32 } from '../util/rng.ts';

export interface SiteProfile {
  name: string;
  /** Voxel size (x, y, z) in mm. */
  spacing: [number, number, number];
  /** Scanner intensity model: stored = gain · signal + offset. */
  gain: number;
  offset: number;
  noise: number;
  cases: number;
}

/** Three sites that differ the way real sites do (spacing, scanner gain, noise). */
export const DEMO_SITES: SiteProfile[] = [
  { name: 'SiteA', spacing: [1.0, 1.0, 1.2], gain: 1.0, offset: 0, noise: 4, cases: 6 },
  { name: 'SiteB', spacing: [0.8, 0.8, 2.0], gain: 1.8, offset: 50, noise: 6, cases: 5 },
  { name: 'SiteC', spacing: [1.25, 1.25, 1.25], gain: 0.7, offset: 20, noise: 3, cases: 5 },
];

/** Field of view in mm (x, y, z): small, so demos train in minutes even on a CPU. */
export const FOV_MM: [number, number, number] = [56, 56, 56];

export interface DemoCase {
  id: string;
  image: Volume;
  label: Volume;
}

export interface DemoDataset {
  /** nnU-Net folder name, e.g. Dataset901_DemoSiteA. */
  name: string;
  datasetJson: DatasetJson;
  cases: DemoCase[];
}

function gaussian(r: () => number): number {
  // Box-Muller; r() is in [0, 1).
  const u = 1 - r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

export function demoCase(site: SiteProfile, siteIndex: number, caseIndex: number): DemoCase {
  const r = mulberry32(((siteIndex + 1) * 7919 + caseIndex * 104729) >>> 0);
  const [sx, sy, sz] = site.spacing;
  const dims: [number, number, number] = [
    Math.round(FOV_MM[0] / sx),
    Math.round(FOV_MM[1] / sy),
    Math.round(FOV_MM[2] / sz),
  ];
  const [nx, ny, nz] = dims;
  const n = nx * ny * nz;
  const img = new Int16Array(n);
  const lab = new Uint8Array(n);
  const jitter = (s: number) => (r() - 0.5) * 2 * s;
  // Anatomy in mm around the FOV centre, varied per case.
  const body = { ax: 24 + jitter(2), ay: 19 + jitter(2) };
  const organ = {
    cx: jitter(5),
    cy: jitter(4),
    cz: jitter(5),
    rx: 11 + jitter(2),
    ry: 8 + jitter(2),
    rz: 10 + jitter(2),
  };
  const lesion = {
    cx: organ.cx + jitter(2),
    cy: organ.cy + jitter(2),
    cz: organ.cz + jitter(2),
    rad: 3.5 + jitter(1),
  };
  const organI = 160 + jitter(10);
  const lesionI = 65 + jitter(10);
  const bias = [jitter(0.12), jitter(0.12), jitter(0.12)];
  for (let k = 0; k < nz; k++) {
    const z = (k + 0.5) * sz - FOV_MM[2] / 2;
    for (let j = 0; j < ny; j++) {
      const y = (j + 0.5) * sy - FOV_MM[1] / 2;
      for (let i = 0; i < nx; i++) {
        const x = (i + 0.5) * sx - FOV_MM[0] / 2;
        const idx = i + nx * (j + ny * k);
        const inBody = (x / body.ax) ** 2 + (y / body.ay) ** 2 <= 1;
        const eo =
          ((x - organ.cx) / organ.rx) ** 2 +
          ((y - organ.cy) / organ.ry) ** 2 +
          ((z - organ.cz) / organ.rz) ** 2;
        const el = Math.hypot(x - lesion.cx, y - lesion.cy, z - lesion.cz) / lesion.rad;
        let s = 0;
        if (inBody) {
          s = 100 * (1 + 0.05 * Math.sin(x / 3) * Math.cos(y / 4));
          if (eo <= 1) {
            s = organI;
            lab[idx] = 1;
            if (el <= 1) {
              s = lesionI;
              lab[idx] = 2;
            }
          }
          s *= 1 + bias[0] * (x / 28) + bias[1] * (y / 28) + bias[2] * (z / 28) ** 2;
        }
        // Rician noise: magnitude of a complex signal with Gaussian noise on both parts.
        const re = s + site.noise * gaussian(r);
        const im = site.noise * gaussian(r);
        const v = site.gain * Math.hypot(re, im) + (inBody ? site.offset : 0);
        img[idx] = Math.round(v);
      }
    }
  }
  const affine = [
    sx,
    0,
    0,
    -FOV_MM[0] / 2,
    0,
    sy,
    0,
    -FOV_MM[1] / 2,
    0,
    0,
    sz,
    -FOV_MM[2] / 2,
    0,
    0,
    0,
    1,
  ];
  const geometry = { dims, channels: 1, spacing: site.spacing, affine } as const;
  return {
    id: `${site.name.toLowerCase()}_${String(caseIndex).padStart(3, '0')}`,
    image: {
      ...geometry,
      dims: [...dims],
      spacing: [...site.spacing],
      affine: [...affine],
      data: img,
      datatype: 'int16',
    },
    label: {
      ...geometry,
      dims: [...dims],
      spacing: [...site.spacing],
      affine: [...affine],
      data: lab,
      datatype: 'uint8',
    },
  };
}

export function demoDataset(site: SiteProfile, siteIndex: number, cases = site.cases): DemoDataset {
  const name = `Dataset${901 + siteIndex}_Demo${site.name}`;
  return {
    name,
    datasetJson: {
      channel_names: { '0': 'T1' },
      labels: { background: 0, organ: 1, lesion: 2 },
      numTraining: cases,
      file_ending: '.nii.gz',
      name,
      description: `Synthetic phantom, ${site.name}: spacing ${site.spacing.join('×')} mm, intensity ${site.gain}·S+${site.offset}, Rician σ ${site.noise}`,
      licence: 'CC0 (synthetic)',
    },
    cases: Array.from({ length: cases }, (_, c) => demoCase(site, siteIndex, c)),
  };
}
