// The browser tests' harness lives in src/node/app-session.ts (benchmarks use it too).
export * from '../../src/node/app-session.ts';
