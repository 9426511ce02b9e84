#!/usr/bin/env node
// Entry point of the `fednnunet` CLI. The CLI is TypeScript (src/cli); tsx compiles it on the fly
// so the same sources serve Node, the page and workers without a separate build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
// A finished command is done even if a library left a timer behind (the PeerJS server keeps
// intervals it offers no way to stop); give pending output a moment to flush, then exit.
setTimeout(() => process.exit(code), 200);
