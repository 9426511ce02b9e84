// Accessibility (issue 19): axe-core (the npm package, injected into the page) over every tab of the
// app, reached from the keyboard only, with demo data imported so lists and forms are filled. No
// serious or critical violation of WCAG 2.1 A/AA is allowed.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApp, screenshot, type AppSession } from './harness.ts';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

interface Finding {
  id: string;
  impact: string | null;
  help: string;
  targets: string[];
}

let s: AppSession;
beforeAll(async () => {
  s = await openApp({ webgpu: true });
});
afterAll(async () => s?.close());

async function axe(): Promise<Finding[]> {
  return s.page.evaluate(async () => {
    const a = (window as unknown as { axe: typeof import('axe-core') }).axe;
    const r = await a.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact ?? null,
      help: v.help,
      targets: v.nodes.map((n) => n.target.join(' ')),
    }));
  });
}

describe('accessibility', () => {
  it('every tab, reached by keyboard, has no serious or critical axe violation', async () => {
    const page = s.page;
    // Demo data by keyboard: the button is reachable and works with Enter.
    await page.focus('#use-demo');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#import-result p.ok', { timeout: 120_000 });
    await page.addScriptTag({ content: AXE });
    const tabs = await page.$$eval('[role="tab"]', (b) => b.map((x) => x.id));
    expect(tabs.length).toBeGreaterThanOrEqual(5);
    await page.focus(`#${tabs[0]}`);
    const report: Record<string, Finding[]> = {};
    for (const [i, id] of tabs.entries()) {
      if (i > 0) await page.keyboard.press('ArrowRight');
      await page.waitForFunction(
        (t) => document.getElementById(t)?.getAttribute('aria-selected') === 'true',
        id,
      );
      expect(await page.evaluate(() => document.activeElement?.id)).toBe(id);
      const serious = (await axe()).filter(
        (f) => f.impact === 'serious' || f.impact === 'critical',
      );
      if (serious.length) report[id] = serious;
      await screenshot(page, `a11y-${id}`);
    }
    expect(report).toEqual({});
    expect(s.errors).toEqual([]);
  });
});
