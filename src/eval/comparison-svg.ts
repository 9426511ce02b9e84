// compare.svg: grouped bars of Dice per site (and the mean), one bar per method, as text. Written
// by hand on purpose: it is a few dozen rects and labels with fixed axes (Dice in [0, 1]), which
// needs no layout engine; a charting library (vega, d3 + jsdom) would add a large dependency, and
// a DOM in Node, for one static figure. Each bar carries its numbers (data-site, data-method,
// data-dice) so the figure can be checked against summary.json.
import { COMPARE_LABELS, type ComparisonSummary } from './method-comparison.ts';

// Colour-blind-safe (Okabe–Ito), one per method column.
const COLOURS = ['#E69F00', '#56B4E9', '#009E73', '#CC79A7', '#0072B2', '#D55E00', '#F0E442'];

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** What the figure draws: a group of bars per row (sites, then the mean), a bar per column. */
export interface DiceBars {
  /** The figure's heading (also its <title>). */
  title: string;
  groups: string[];
  /** Column keys (data-method) and legend labels. */
  columns: { key: string; label: string }[];
  /** Dice per group and column; null is drawn as `missing`. */
  values: (number | null)[][];
  /** What a null value reads (default "n/a"; data-dice stays "n/a"). */
  missing?: string;
}

export function comparisonSvg(s: ComparisonSummary): string {
  return diceBarsSvg({
    title: `Held-out Dice per site and method (${s.settings.rounds} × ${s.settings.iters} iterations, ${s.settings.holdout} case(s) per site)`,
    groups: [...s.table.sites, 'mean'],
    columns: s.table.methods.map((m) => ({ key: m, label: COMPARE_LABELS[m] })),
    values: [...s.table.dice, s.table.mean],
  });
}

/** Grouped bars of Dice (the workshop host's table draws with it too, fed/held-out-table.ts). */
export function diceBarsSvg(o: DiceBars): string {
  const { groups, values } = o;
  const methods = o.columns;
  const bar = 18;
  const gap = 24;
  // Wide enough for its label under it (11 px sans-serif: ~6.5 px a character).
  const groupW = Math.max(
    methods.length * bar + gap,
    Math.max(...groups.map((g) => g.length)) * 6.5 + 8,
  );
  const left = 48;
  const top = 40;
  const plotH = 220;
  const legendW = methods.reduce((a, m) => a + 28 + m.label.length * 7, 0);
  // ...and for the title (13 px: ~7 px a character).
  const width = Math.max(
    left + groups.length * groupW + 16,
    left + legendW,
    left + o.title.length * 7,
  );
  const legendY = top + plotH + 40;
  const height = legendY + 24;
  const y = (d: number) => top + plotH - d * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${esc(o.title)}</title>`,
    `<text x="${left}" y="20" font-size="13">${esc(o.title)}</text>`,
  ];
  for (let t = 0; t <= 10; t += 2) {
    const v = t / 10;
    out.push(
      `<line x1="${left}" x2="${width - 16}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(1)}</text>`,
    );
  }
  out.push(
    `<text x="12" y="${top + plotH / 2}" transform="rotate(-90 12 ${top + plotH / 2})" text-anchor="middle">Dice</text>`,
  );
  groups.forEach((g, gi) => {
    const x0 = left + gap / 2 + gi * groupW;
    methods.forEach((m, mi) => {
      const d = values[gi][mi];
      const x = x0 + mi * bar;
      if (d === null) {
        out.push(
          `<text x="${x + bar / 2}" y="${y(0) - 4}" text-anchor="middle" font-size="9" data-site="${esc(g)}" data-method="${esc(m.key)}" data-dice="n/a">${esc(o.missing ?? 'n/a')}</text>`,
        );
        return;
      }
      out.push(
        `<rect x="${x}" y="${y(d).toFixed(2)}" width="${bar - 2}" height="${(d * plotH).toFixed(2)}" fill="${COLOURS[mi % COLOURS.length]}" data-site="${esc(g)}" data-method="${esc(m.key)}" data-dice="${d.toFixed(4)}"><title>${esc(g)} · ${esc(m.label)}: ${d.toFixed(4)}</title></rect>`,
      );
    });
    out.push(
      `<text x="${x0 + (methods.length * bar) / 2}" y="${top + plotH + 16}" text-anchor="middle">${esc(g)}</text>`,
    );
  });
  out.push(`<line x1="${left}" x2="${width - 16}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`);
  let lx = left;
  methods.forEach((m, mi) => {
    out.push(
      `<rect x="${lx}" y="${legendY - 10}" width="12" height="12" fill="${COLOURS[mi % COLOURS.length]}"/>`,
      `<text x="${lx + 16}" y="${legendY}">${esc(m.label)}</text>`,
    );
    lx += 28 + m.label.length * 7;
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
