// The workshop host's held-out comparison (fed/held-out-table.ts) as a table and grouped bars:
// `fednnunet compare`'s layout for the finished federation against the local runs in the room.
// Rendering only; every number comes from the sites' reports.
import { el } from './dom.ts';
import { countOf } from '../util/plural.ts';
import { diceCell, type HeldOutTable } from '../fed/held-out-table.ts';
import { diceBarsSvg } from '../eval/comparison-svg.ts';

/** Replaces `box`'s content with the table (hidden while no site reported). */
export function showHeldOutTable(box: HTMLElement, t: HeldOutTable | undefined): void {
  box.hidden = !t;
  if (!t) return box.replaceChildren();
  const head = el(
    'tr',
    {},
    el('th', { scope: 'col' }, 'site'),
    el('th', { scope: 'col' }, 'held-out cases'),
    ...t.columns.map((c) => el('th', { scope: 'col', 'data-method': c.key }, c.label)),
  );
  const row = (name: string, cases: string, dice: (number | null)[], cls: string) =>
    el(
      'tr',
      { class: cls, 'data-site': name },
      el('th', { scope: 'row' }, name),
      el('td', {}, cases),
      ...dice.map((d, j) =>
        el(
          'td',
          { 'data-method': t.columns[j].key, 'data-dice': d === null ? '' : d.toFixed(4) },
          diceCell(d),
        ),
      ),
    );
  const table = el(
    'table',
    { id: 'ws-compare-table', class: 'compare' },
    el('thead', {}, head),
    el(
      'tbody',
      {},
      ...t.rows.map((r) => row(r.siteName, String(r.cases), r.dice, 'site')),
      row('mean', '', t.mean, 'mean'),
    ),
  );
  // The figure is our own escaped SVG text; parsed as an SVG document, nothing in it runs.
  const svg = new DOMParser().parseFromString(
    diceBarsSvg({
      title: 'Held-out Dice per site: local run vs the federation',
      groups: [...t.rows.map((r) => r.siteName), 'mean'],
      columns: t.columns,
      values: [...t.rows.map((r) => r.dice), t.mean],
      missing: '—',
    }),
    'image/svg+xml',
  ).documentElement;
  box.replaceChildren(
    el('h3', {}, 'Held-out Dice: local runs vs the federation'),
    el(
      'p',
      { class: 'muted' },
      'Each site scored the final model, and the model it trained alone on the Train tab (if any), on cases neither trained on; only these numbers were sent. "—": no local run at that site. A short workshop run shows how the methods compare on these data, not clinical accuracy.',
    ),
    table,
    el('figure', { class: 'compare-figure' }, document.importNode(svg, true)),
    ...(t.waiting.length
      ? [
          el(
            'p',
            { class: 'muted', id: 'ws-compare-waiting' },
            `No report yet from ${countOf(t.waiting.length, 'site')}: ${t.waiting.join(', ')}.`,
          ),
        ]
      : []),
  );
}
