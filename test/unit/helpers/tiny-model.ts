// The smallest nnU-Net model the unit tests save, load, score and export: plans with one
// 3d_fullres configuration of two stages (strides 1 and 2) on an 8³ patch at 1 mm spacing
// (tinyPlans, infer-helpers.ts), and a seed-1 PlainConvUNet of them on the cpu backend.
import { useBackend } from '../../../src/model/tf-backend.ts';
import { PlainConvUNet } from '../../../src/model/unet.ts';
import { DATASET_JSON, tinyPlans } from '../infer-helpers.ts';

/** The two-stage plans; `features` per stage as tinyPlans' default unless given. */
export function twoStagePlans(features?: number[]): ReturnType<typeof tinyPlans> {
  return tinyPlans({
    patch: [8, 8, 8],
    spacing: [1, 1, 1],
    strides: [
      [1, 1, 1],
      [2, 2, 2],
    ],
    features,
  });
}

/** A model folder's contents (no provenance) for the two-stage plans: weights of seed 1. */
export async function twoStageModel(features?: number[]) {
  await useBackend('cpu');
  const { plans, configuration } = twoStagePlans(features);
  const m = PlainConvUNet.fromPlan(plans.configurations[configuration] as never, 1, 3, { seed: 1 });
  try {
    return { plans, datasetJson: DATASET_JSON, configuration, weights: await m.namedWeights() };
  } finally {
    m.dispose();
  }
}
