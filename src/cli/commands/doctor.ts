// `fednnunet doctor`: the environment the app will use, in Node and (through the browser
// harness) in Chromium.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from '../command.ts';
import { parse } from '../args.ts';
import { findChromium, INSTALL_HINT, launchChromium } from '../../node/chromium.ts';
import { serveStatic } from '../../node/static-server.ts';
import { adapterName, probeWebGPU, type WebGPUStatus } from '../../gpu/probe.ts';
import { errorMessage } from '../../util/errors.ts';

export interface DoctorReport {
  node: string;
  platform: string;
  tfjs: { version: string; backends: Record<string, boolean> };
  chromium: { path: string | null; version?: string; webgpu?: WebGPUStatus; error?: string };
}

async function tfjsReport(): Promise<DoctorReport['tfjs']> {
  const tf = await import('@tensorflow/tfjs');
  const backends: Record<string, boolean> = {};
  // webgl needs a DOM canvas and is never usable in Node; only report what can run here.
  for (const name of ['cpu']) backends[name] = await tf.setBackend(name).catch(() => false);
  return { version: tf.version.tfjs, backends };
}

async function browserReport(): Promise<DoctorReport['chromium']> {
  const path = findChromium();
  if (!path) return { path, error: `no Chromium found: ${INSTALL_HINT}` };
  // navigator.gpu needs a secure context: serve a blank page from 127.0.0.1.
  const dir = mkdtempSync(join(tmpdir(), 'fednnunet-doctor-'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>doctor</title>');
  const server = await serveStatic(dir);
  const b = await launchChromium({ webgpu: true });
  try {
    const page = await b.newPage();
    await page.goto(server.url);
    const webgpu = await page.evaluate(probeWebGPU);
    return { path, version: b.browser.version(), webgpu };
  } catch (e) {
    return { path, error: errorMessage(e) };
  } finally {
    await b.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const command: Command = {
  summary: 'print the environment: Node, tfjs backends, Chromium and its WebGPU adapter',
  async run(argv) {
    const { values } = parse(argv, { json: { type: 'boolean' }, help: { type: 'boolean' } });
    if (values.help) {
      console.log('fednnunet doctor [--json]');
      return 0;
    }
    const report: DoctorReport = {
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      tfjs: await tfjsReport(),
      chromium: await browserReport(),
    };
    if (values.json) {
      console.log(JSON.stringify(report, null, 2));
    } else {
      const w = report.chromium.webgpu;
      console.log(`node          ${report.node} (${report.platform})`);
      console.log(
        `tfjs          ${report.tfjs.version}; Node backends: ${Object.entries(report.tfjs.backends)
          .map(([k, v]) => `${k} ${v ? 'ok' : 'failed'}`)
          .join(', ')}`,
      );
      console.log(
        `chromium      ${report.chromium.path ?? 'not found'}${report.chromium.version ? ` (${report.chromium.version})` : ''}`,
      );
      if (report.chromium.error) console.log(`              ${report.chromium.error}`);
      if (w) {
        console.log(
          `webgpu        ${w.available ? `available: ${adapterName(w)}` : `unavailable: ${w.reason}`}`,
        );
        if (w.limits)
          for (const [k, v] of Object.entries(w.limits)) console.log(`  ${k.padEnd(44)}${v}`);
        if (w.features) console.log(`  features: ${w.features.join(', ') || '(none)'}`);
      }
    }
    return report.chromium.webgpu?.available ? 0 : 1;
  },
};
export default command;
