// The subcommand table. Each subcommand lives in its own file under ./commands and is loaded
// lazily, so `fednnunet --version` does not pay for tfjs or playwright.
import type { Command } from './command.ts';

type Loader = () => Promise<Command>;

export const COMMANDS: Record<string, Loader> = {
  doctor: async () => (await import('./commands/doctor.ts')).default,
  info: async () => (await import('./commands/info.ts')).default,
  'aggregate-fingerprints': async () =>
    (await import('./commands/aggregate-fingerprints.ts')).default,
  fingerprint: async () => (await import('./commands/fingerprint.ts')).default,
  plan: async () => (await import('./commands/plan.ts')).default,
  preprocess: async () => (await import('./commands/preprocess.ts')).default,
  'demo-data': async () => (await import('./commands/demo-data.ts')).default,
  serve: async () => (await import('./commands/serve.ts')).default,
  relay: async () => (await import('./commands/relay.ts')).default,
  simulate: async () => (await import('./commands/simulate.ts')).default,
  compare: async () => (await import('./commands/compare.ts')).default,
  train: async () => (await import('./commands/train.ts')).default,
  predict: async () => (await import('./commands/predict.ts')).default,
  'export-onnx': async () => (await import('./commands/export-onnx.ts')).default,
  'export-nnunet': async () => (await import('./commands/export-nnunet.ts')).default,
  'import-nnunet': async () => (await import('./commands/import-nnunet.ts')).default,
  evaluate: async () => (await import('./commands/evaluate.ts')).default,
  'flower-site': async () => (await import('./commands/flower-site.ts')).default,
};
