// Which network the Train tab offers on this adapter: nnU-Net's full configuration (the
// planner's unmodified plan) where it fits both the adapter's binding limits (largest tensor vs
// maxStorageBufferBindingSize / maxBufferSize, src/gpu/binding-limit.ts) and the memory budget
// derived from the adapter's limits (plan/budget.ts); else the planner's reduced plan for that
// budget, saying which limit or tensor the full one exceeds; or nothing, saying why.
import { bindingLimitProblem, type BindingLimits } from '../gpu/binding-limit.ts';
import type { ConfigurationPlan } from './types.ts';

export interface TrainFitInput {
  /** nnU-Net's own plan of the configuration (planned without a browser budget). */
  full: ConfigurationPlan;
  /** The same configuration planned with `budgetMB` (carries browser_budget). */
  reduced: ConfigurationPlan;
  budgetMB: number;
  limits: BindingLimits;
  inChannels: number;
  numClasses: number;
}

export interface NetSummary {
  patch: number[];
  batch: number;
  features: number[];
}

export interface TrainFit {
  offer: 'full' | 'reduced' | 'none';
  /** The network offered (the full one when offer is 'none', for the message). */
  network: NetSummary;
  full: NetSummary;
  /** One sentence: why this offer. */
  reason: string;
}

const summary = (c: ConfigurationPlan): NetSummary => ({
  patch: [...c.patch_size],
  batch: c.batch_size,
  features: [...c.architecture.arch_kwargs.features_per_stage],
});
const describe = (n: NetSummary) =>
  `patch ${n.patch.join('×')}, batch ${n.batch}, features ${n.features.join('-')}`;

export function chooseTrainFit(i: TrainFitInput): TrainFit {
  const full = summary(i.full);
  const net = (c: ConfigurationPlan) => c as unknown as Parameters<typeof bindingLimitProblem>[0];
  const fullBinding = bindingLimitProblem(
    net(i.full),
    i.full.batch_size,
    i.inChannels,
    i.numClasses,
    i.limits,
  );
  const changed = i.reduced.browser_budget?.changed ?? [];
  const overBudget = changed.length > 0;
  if (!fullBinding && !overBudget)
    return {
      offer: 'full',
      network: full,
      full,
      reason: `nnU-Net's full configuration (${describe(full)}) fits this GPU: its largest tensor is within the adapter's binding limits and its feature maps within the ${i.budgetMB} MB budget`,
    };
  const why: string[] = [];
  if (overBudget)
    why.push(
      `its feature maps exceed the ${i.budgetMB} MB memory budget derived from the adapter's limits (${i.reduced.browser_budget!.reason})`,
    );
  if (fullBinding)
    why.push(fullBinding.replace(/^this plan does not fit this GPU: /, '').split('. ')[0]);
  const reduced = summary(i.reduced);
  const reducedBinding = bindingLimitProblem(
    net(i.reduced),
    i.reduced.batch_size,
    i.inChannels,
    i.numClasses,
    i.limits,
  );
  const fullWhy = `nnU-Net's full configuration (${describe(full)}) does not fit: ${why.join('; and ')}`;
  if (reducedBinding || i.reduced.browser_budget?.reason.startsWith('budget too small'))
    return {
      offer: 'none',
      network: full,
      full,
      reason: `${fullWhy}. The reduced plan (${describe(reduced)}) does not fit either: ${reducedBinding ?? i.reduced.browser_budget!.reason}`,
    };
  return {
    offer: 'reduced',
    network: reduced,
    full,
    reason: `${fullWhy}. Offering the reduced plan for this budget: ${describe(reduced)}`,
  };
}
