// `--method` and the methods' own options (e.g. FedProx's --mu), shared by `fednnunet relay` and
// `fednnunet simulate`; both the choices and the options come from the METHODS table.
import { choiceOption, UsageError } from './args.ts';
import {
  METHOD_NAMES,
  METHOD_PARAMS,
  methodSpec,
  type Method,
  type MethodParams,
} from '../fed/methods.ts';

type ParamFlags = { [K in keyof MethodParams]-?: { type: 'string' } };

const PARAM_FLAGS = Object.fromEntries(
  METHOD_PARAMS.map((f) => [f, { type: 'string' }]),
) as ParamFlags;

/** Their parseArgs declarations, spread into each command's options. */
export const METHOD_OPTIONS = {
  method: { type: 'string', default: 'ffe' },
  ...PARAM_FLAGS,
} as const;

/** The method and its parameters (defaults from the table); a parameter of another method is a usage error. */
export function methodFromArgs(
  values: { method?: string } & { [K in keyof MethodParams]?: string },
): { method: Method } & MethodParams {
  const method = choiceOption('method', values.method, METHOD_NAMES);
  const spec = methodSpec(method);
  const out: { method: Method } & MethodParams = { method };
  const own = new Set<string>((spec.options ?? []).map((o) => o.flag));
  for (const flag of Object.keys(PARAM_FLAGS) as (keyof MethodParams)[]) {
    if (values[flag] !== undefined && !own.has(flag))
      throw new UsageError(
        `--${flag} is an option of ${METHOD_NAMES.filter((n) => (methodSpec(n).options ?? []).some((o) => o.flag === flag)).join(', ')}, not of --method ${method}`,
      );
  }
  for (const o of spec.options ?? []) {
    const v = values[o.flag];
    const n = v === undefined ? o.default : Number(v);
    if (!Number.isFinite(n) || n < 0)
      throw new UsageError(`--${o.flag} must be a number ≥ 0, got '${v}'`);
    Object.assign(out, { [o.flag]: n });
  }
  return out;
}
