// The subcommand table. Each subcommand lives in its own file under ./commands and is loaded
// lazily, so `fednnunet --version` does not pay for tfjs or playwright.
export interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

type Loader = () => Promise<Command>;

export const COMMANDS: Record<string, Loader> = {
  doctor: async () => (await import('./commands/doctor.ts')).default,
  info: async () => (await import('./commands/info.ts')).default,
  'aggregate-fingerprints': async () => (await import('./commands/aggregate-fingerprints.ts')).default,
  plan: async () => (await import('./commands/plan.ts')).default,
  serve: async () => (await import('./commands/serve.ts')).default,
  relay: async () => (await import('./commands/relay.ts')).default,
  train: async () => (await import('./commands/train.ts')).default,
};
