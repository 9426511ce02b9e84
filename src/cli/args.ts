// Minimal argument parsing shared by subcommands, on top of node:util parseArgs.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorMessage } from '../util/errors.ts';

/** Thrown for bad command-line usage: main() prints the message on one line and exits 2. */
export class UsageError extends Error {}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  allowPositionals = true,
) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError(errorMessage(e));
  }
}

/** An integer option ≥ min (`dflt` when absent, if given). */
export function intOption(name: string, v: string | undefined, min: number, dflt?: number): number {
  if (v === undefined && dflt !== undefined) return dflt;
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${v}'`);
  return n;
}

/** One of a fixed set of values. */
export function choiceOption<T extends string>(
  name: string,
  v: string | undefined,
  allowed: readonly T[],
): T {
  if (!allowed.includes(v as T))
    throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got '${v}'`);
  return v as T;
}
