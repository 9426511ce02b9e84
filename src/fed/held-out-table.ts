// The workshop host's comparison table: `fednnunet compare`'s layout (a row per site, a column
// per method, a mean row; eval/method-comparison.ts) for one finished federation against the
// local runs done in the room. It is assembled from the sites' held-out reports (numbers only,
// protocol.ts HeldOutReport), which the coordinator keeps in its snapshot. Pure, no DOM.
import type { CoordinatorSnapshot } from './coordinator.ts';
import { methodSpec, type Method } from './methods.ts';

export interface HeldOutColumn {
  /** 'local' or the federation's method (its name on the wire). */
  key: 'local' | Method;
  label: string;
}

export interface HeldOutRow {
  siteName: string;
  /** Held-out cases this site's values are means over. */
  cases: number;
  /** Dice per column; null: no value (a site without a local run). */
  dice: (number | null)[];
}

export interface HeldOutTable {
  columns: HeldOutColumn[];
  rows: HeldOutRow[];
  /**
   * Mean over the sites per column, as `fednnunet compare` takes it (each site counts once,
   * whatever its number of cases); null when a site has no value in that column, since a mean
   * over some sites only would not compare with the other column's.
   */
  mean: (number | null)[];
  /** Sites of the federation that have not reported (yet, or hold no case out). */
  waiting: string[];
}

/**
 * The table of the reports for the final round, or undefined while no site has reported (or the
 * federation is not finished). Rows follow the join order.
 */
export function heldOutTable(
  s: Pick<CoordinatorSnapshot, 'config' | 'phase' | 'round' | 'sites'>,
): HeldOutTable | undefined {
  if (s.phase !== 'done') return undefined;
  const method = s.config.method;
  const columns: HeldOutColumn[] = [
    { key: 'local', label: 'local' },
    { key: method, label: methodSpec(method).short },
  ];
  const rows: HeldOutRow[] = [];
  const waiting: string[] = [];
  for (const site of s.sites) {
    const r = site.heldOut;
    if (!r || r.round !== s.round) {
      waiting.push(site.siteName);
      continue;
    }
    rows.push({ siteName: site.siteName, cases: r.cases, dice: [r.local ?? null, r.federated] });
  }
  if (rows.length === 0) return undefined;
  const mean = columns.map((_, j) => {
    const col = rows.map((r) => r.dice[j]);
    if (col.some((d) => d === null)) return null;
    return (col as number[]).reduce((a, b) => a + b, 0) / col.length;
  });
  return { columns, rows, mean, waiting };
}

/** A Dice as the table shows it: 4 places as `fednnunet compare`; "—" for a missing value. */
export const diceCell = (d: number | null): string => (d === null ? '—' : d.toFixed(4));

/** The table as aligned text (the host's log, tests): header, a row per site, the mean row. */
export function formatHeldOutTable(t: HeldOutTable): string {
  const rows = [
    ['site', 'cases', ...t.columns.map((c) => c.label)],
    ...t.rows.map((r) => [r.siteName, String(r.cases), ...r.dice.map(diceCell)]),
    ['mean', '', ...t.mean.map(diceCell)],
  ];
  const width = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  return rows
    .map((r) => r.map((c, j) => (j === 0 ? c.padEnd(width[j]) : c.padStart(width[j]))).join('  '))
    .join('\n');
}
