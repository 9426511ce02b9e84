// Minimal argument parsing shared by subcommands, on top of node:util parseArgs.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Thrown for bad command-line usage: main() prints the message on one line and exits 2. */
export class UsageError extends Error {}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = true) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}
