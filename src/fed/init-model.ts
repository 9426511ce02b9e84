// Fine-tuning: a federation that starts from a pretrained model (an imported nnU-Net checkpoint or
// one of this app's model folders) instead of the first site's random initialisation. The relay
// holds the weights (Coordinator `initialWeights`: they join the shared key set like one more site
// and are round 1's global); the sites learn, through config.initModel, the model's labels and —
// for the methods that train one network everywhere (FFE, FedAvg, FedProx) — its plans, and train
// with those: the weights only fit that network and that preprocessing. AsymFedAvg sites keep
// their own plans and share the tensors whose name and shape match the checkpoint's.
import type { FederationConfig, InitModelInfo } from './protocol.ts';
import { methodSpec } from './methods.ts';
import type { ConfigurationPlan, Plans } from '../plan/types.ts';

export class InitModelError extends Error {
  override name = 'InitModelError';
}

/** What the sites are told about a pretrained model (plans only where the method needs them). */
export function initModelInfo(
  config: Pick<FederationConfig, 'method' | 'configuration'>,
  model: {
    name: string;
    plans: object;
    configuration: string;
    datasetJson: { labels: Record<string, number | number[]> };
  },
): InitModelInfo {
  if (model.configuration !== config.configuration)
    throw new InitModelError(
      `the initial model ${model.name} is a ${model.configuration} model; the federation trains ${config.configuration} (--config ${model.configuration})`,
    );
  return {
    name: model.name,
    labels: model.datasetJson.labels,
    ...(methodSpec(config.method).sameArchitecture
      ? { plans: model.plans as Record<string, unknown> }
      : {}),
  };
}

const sameLabels = (a: Record<string, unknown>, b: Record<string, unknown>): boolean => {
  const key = (o: Record<string, unknown>) =>
    JSON.stringify(
      Object.keys(o)
        .sort()
        .map((k) => [k, o[k]]),
    );
  return key(a) === key(b);
};

/** The fields of a configuration that decide whether two plans give the same network and inputs. */
function planDifferences(a: ConfigurationPlan, b: ConfigurationPlan): string[] {
  const out: string[] = [];
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  if (!same(a.patch_size, b.patch_size))
    out.push(`patch ${a.patch_size.join('×')} vs ${b.patch_size.join('×')}`);
  if (!same(a.spacing, b.spacing))
    out.push(`spacing ${a.spacing.join('×')} vs ${b.spacing.join('×')}`);
  if (!same(a.normalization_schemes, b.normalization_schemes))
    out.push(
      `normalization ${a.normalization_schemes.join(',')} vs ${b.normalization_schemes.join(',')}`,
    );
  if (!same(a.architecture, b.architecture)) {
    const ka = a.architecture.arch_kwargs as { n_stages?: number; features_per_stage?: number[] };
    const kb = b.architecture.arch_kwargs as { n_stages?: number; features_per_stage?: number[] };
    out.push(
      `network ${ka.n_stages} stages [${ka.features_per_stage?.join(',')}] vs ${kb.n_stages} stages [${kb.features_per_stage?.join(',')}]`,
    );
  }
  return out;
}

/**
 * A site's side of a pretrained start: refuses a dataset with other labels, and returns the plans to
 * train with (the checkpoint's), or undefined when the site plans as usual (no initial model, or
 * AsymFedAvg). When FFE's pooled plan would differ from the checkpoint's, it says so through `log`
 * and keeps the checkpoint's: its weights fit nothing else.
 */
export function checkInitModel(
  config: FederationConfig,
  datasetJson: { labels: Record<string, unknown> },
  pooled: Plans | undefined,
  log: (line: string) => void,
): Plans | undefined {
  const init = config.initModel;
  if (!init) return undefined;
  if (!sameLabels(init.labels, datasetJson.labels))
    throw new InitModelError(
      `this dataset's labels ${JSON.stringify(datasetJson.labels)} are not the initial model's (${init.name}: ${JSON.stringify(init.labels)})`,
    );
  if (!init.plans) return undefined;
  const plans = init.plans as unknown as Plans;
  const cfgName = config.configuration;
  const mine = plans.configurations?.[cfgName] as ConfigurationPlan | undefined;
  if (!mine?.architecture)
    throw new InitModelError(`the initial model's plans have no ${cfgName} configuration`);
  const theirs = pooled?.configurations?.[cfgName] as ConfigurationPlan | undefined;
  if (theirs) {
    const d = planDifferences(mine, theirs);
    log(
      d.length
        ? `the pooled (FFE) plan would differ from the initial model's (${d.join('; ')}, initial vs pooled); training with ${init.name}'s plans, which its weights fit`
        : `the pooled (FFE) plan matches the initial model's; training with ${init.name}'s plans`,
    );
  } else log(`training with the initial model's plans (${init.name})`);
  return plans;
}
