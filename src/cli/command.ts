// The shape of one subcommand. Its own module so that the command files (./commands/*) and the
// table that loads them (./commands.ts) do not import each other.
export interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}
