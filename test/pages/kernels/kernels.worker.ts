// Test-only worker: the kernel suite (test/kernels/kernel-suite.ts) in Chromium's WebGPU, loaded
// by the test page beside it (main.ts), not by the app.
import * as Comlink from 'comlink';
import { kernelSuite } from '../../kernels/kernel-suite.ts';

Comlink.expose(kernelSuite);
