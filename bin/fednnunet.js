#!/usr/bin/env node
// Entry point of the `fednnunet` CLI. The CLI is TypeScript (src/cli); tsx compiles it on the fly
// so the same sources serve Node, the page and workers without a separate build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
