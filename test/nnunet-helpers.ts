// The reference nnU-Net v2 models (test/reference) as the nnU-Net import, predict and export tests
// use them: their paths, plans and dataset.json, their files as a folder drop gives them, and a way
// to edit a checkpoint's network_weights before matching them to the plans' network.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { matchNetworkWeights } from '../src/infer/nnunet-model.ts';
import type { PredictorDatasetJson, PredictorPlans } from '../src/infer/predictor.ts';
import { readNifti } from '../src/io/nifti.ts';
import { readNnUNetCheckpoint } from '../src/io/torch-checkpoint.ts';
import type { Volume } from '../src/io/volume.ts';
import type { UNetArch } from '../src/model/arch.ts';
import { REFERENCE } from './paths.ts';

export const NNUNET_DS = join(REFERENCE, 'nnunet-model', 'Dataset801_PhantomMR');
export const NNUNET_TRAINER = 'nnUNetTrainer__nnUNetPlans__3d_fullres';
/** Dataset801_PhantomMR, 3d_fullres, folds 0 and 1 (PlainConvUNet), trained by nnU-Net. */
export const NNUNET_MODEL = join(NNUNET_DS, NNUNET_TRAINER);
/** A tiny random-weight ResidualEncoderUNet saved as an nnU-Net results folder (its README). */
export const RESENC_MODEL = join(
  REFERENCE,
  'resenc',
  'nnUNetTrainer__nnUNetResEncUNetPlans__3d_fullres',
);

type Plans = PredictorPlans & {
  configurations: Record<
    string,
    { architecture: { network_class_name: string; arch_kwargs: Record<string, unknown> } }
  >;
};

/** A results folder's plans.json and dataset.json. */
export function resultsJson(dir: string): {
  plans: Plans;
  datasetJson: PredictorDatasetJson & Record<string, unknown>;
} {
  const read = (n: string) => JSON.parse(readFileSync(join(dir, n), 'utf8'));
  return { plans: read('plans.json') as Plans, datasetJson: read('dataset.json') };
}

/** Every file below `dir`, with paths relative to `base` (a folder drop: `base` = dir/..). */
export function filesUnder(
  dir: string,
  base = dir,
): Array<{ path: string; bytes: Uint8Array<ArrayBuffer> }> {
  const out: Array<{ path: string; bytes: Uint8Array<ArrayBuffer> }> = [];
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p, base));
    else out.push({ path: relative(base, p), bytes: new Uint8Array(readFileSync(p)) });
  }
  return out;
}

/**
 * fold_0's network_weights of the results folder `dir`, to edit: `edit(f)` applies f to a copy and
 * returns a call of matchNetworkWeights on it (for expect(...).toThrow).
 */
export function networkWeightsEditor(dir: string, arch: UNetArch) {
  const ck = readNnUNetCheckpoint(
    new Uint8Array(readFileSync(join(dir, 'fold_0', 'checkpoint_final.pth'))),
  );
  return (f: (m: typeof ck.networkWeights) => void) => {
    const m = new Map(ck.networkWeights);
    f(m);
    return () => matchNetworkWeights(arch, m);
  };
}

/** A 28×28×20 block of the reference case mrA_000: one 32³ tile, so a prediction takes seconds. */
export function smallNnUNetCase(): Volume {
  const v = readNifti(
    new Uint8Array(
      readFileSync(
        join(REFERENCE, 'raw', 'Dataset801_PhantomMR', 'imagesTr', 'mrA_000_0000.nii.gz'),
      ),
    ),
  );
  const [X, Y] = v.dims;
  const d: [number, number, number] = [28, 28, 20];
  const o = [20, 18, 16];
  const data = new Float32Array(d[0] * d[1] * d[2]);
  for (let z = 0; z < d[2]; z++)
    for (let y = 0; y < d[1]; y++)
      for (let x = 0; x < d[0]; x++)
        data[(z * d[1] + y) * d[0] + x] = v.data[((z + o[2]) * Y + y + o[1]) * X + x + o[0]];
  return { ...v, data, dims: d, datatype: 'float32' };
}
