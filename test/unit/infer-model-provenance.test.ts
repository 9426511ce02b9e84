// What the Predict tab says about a model (issue 19, item 5): provenance in words, a caution for
// short demo models, and each stored case's role (trained on / validation / held out).
import { describe, expect, it } from 'vitest';
import { caseRole, describeProvenance } from '../../src/infer/model-provenance.ts';
import type { ModelProvenance } from '../../src/model/model-folder.ts';

const demo: ModelProvenance = {
  trained_by: 'browser federation',
  method: 'ffe',
  sites: 2,
  rounds: 3,
  iterations: 15,
  validation_dice: 0.4213,
  validation: 'nnU-Net pseudo-Dice (EMA over epochs, validation patches)',
  training_cases: { dataset: 'Dataset901_DemoSiteA', train: ['a_000', 'a_001'], val: ['a_002'] },
};

describe('model provenance in the Predict tab', () => {
  it('says how the model was trained and warns about a 15-iteration demo', () => {
    const d = describeProvenance(demo);
    expect(d.text).toBe(
      'Model: federated (FFE), browser federation, 2 sites, 3 rounds, 15 iterations per site, validation Dice 0.42 (nnU-Net pseudo-Dice (EMA over epochs, validation patches)).',
    );
    expect(d.caution).toMatch(/^Trained for only 15 iterations/);
    const long = describeProvenance({
      trained_by: 'fednnunet train',
      method: 'local',
      sites: 1,
      epochs: 10,
      iterations: 2500,
    });
    expect(long.text).toBe(
      'Model: trained at one site, fednnunet train, 1 site, 10 epochs, 2500 iterations per site, no validation Dice recorded.',
    );
    expect(long.caution).toBeUndefined();
    expect(describeProvenance(undefined).text).toMatch(/not recorded/);
  });

  it("marks a stored case by its role in the model's training", () => {
    expect(caseRole(demo, 'Dataset901_DemoSiteA', 'a_000')).toBe('training');
    expect(caseRole(demo, 'Dataset901_DemoSiteA', 'a_002')).toBe('validation');
    expect(caseRole(demo, 'Dataset901_DemoSiteA', 'a_009')).toBe('held-out');
    expect(caseRole(demo, 'Dataset902_DemoSiteB', 'a_000')).toBe('held-out');
    // Not recorded (an imported model): no claim either way.
    expect(caseRole({ trained_by: 'x' }, 'Dataset901_DemoSiteA', 'a_000')).toBeUndefined();
    expect(
      caseRole({ trained_by: 'x', training_cases: { dataset: 'D', train: 'a' } }, 'D', 'a'),
    ).toBeUndefined();
  });
});
