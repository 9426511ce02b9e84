// A minimal SVG line chart (no dependency): series of (x, y) points, autoscaled.
const NS = 'http://www.w3.org/2000/svg';

export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
}

/**
 * `empty`: what the chart says before it has a point (an empty box reads as broken). The drawn
 * points are also kept as JSON in the element's data-series (tests read the chart's data, not
 * its pixels).
 */
export function lineChart(
  label: string,
  width = 460,
  height = 160,
  empty = 'No data yet: the chart fills as training runs.',
): { el: SVGSVGElement; draw(series: Series[]): void } {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.classList.add('chart');
  const pad = 28;
  const draw = (series: Series[]) => {
    svg.replaceChildren();
    svg.dataset.series = JSON.stringify(
      series.map((s) => ({ name: s.name, points: s.points.filter(([, y]) => Number.isFinite(y)) })),
    );
    const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
    if (all.length === 0) {
      const t = document.createElementNS(NS, 'text');
      t.setAttribute('x', String(width / 2));
      t.setAttribute('y', String(height / 2));
      t.setAttribute('text-anchor', 'middle');
      t.setAttribute('class', 'empty');
      t.textContent = empty;
      svg.append(t);
      return;
    }
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
    const sx = (x: number) => pad + ((x - x0) / (x1 - x0)) * (width - 2 * pad);
    const sy = (y: number) => height - pad + ((y0 - y) / (y1 - y0)) * (height - 2 * pad);
    const axis = document.createElementNS(NS, 'path');
    axis.setAttribute('d', `M${pad},${pad / 2}V${height - pad}H${width - pad / 2}`);
    axis.setAttribute('class', 'axis');
    svg.append(axis);
    for (const [v, y] of [
      [y1, sy(y1)],
      [y0, sy(y0)],
    ] as const) {
      const t = document.createElementNS(NS, 'text');
      t.setAttribute('x', '2');
      t.setAttribute('y', String(y + 4));
      t.textContent = Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
      svg.append(t);
    }
    series.forEach((s, i) => {
      const pts = s.points.filter(([, y]) => Number.isFinite(y));
      if (!pts.length) return;
      const path = document.createElementNS(NS, 'path');
      path.setAttribute(
        'd',
        pts.map(([x, y], j) => `${j ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(''),
      );
      path.setAttribute('stroke', s.color);
      path.setAttribute('fill', 'none');
      path.setAttribute('stroke-width', '1.8');
      svg.append(path);
      // A dot per point: a series of one point (the first round) has no line to see.
      for (const [x, y] of pts) {
        const dot = document.createElementNS(NS, 'circle');
        dot.setAttribute('cx', sx(x).toFixed(1));
        dot.setAttribute('cy', sy(y).toFixed(1));
        dot.setAttribute('r', pts.length > 60 ? '1' : '2.5');
        dot.setAttribute('fill', s.color);
        svg.append(dot);
      }
      const legend = document.createElementNS(NS, 'text');
      legend.setAttribute('x', String(width - pad - 120));
      legend.setAttribute('y', String(14 + 14 * i));
      legend.setAttribute('fill', s.color);
      legend.textContent = s.name;
      svg.append(legend);
    });
  };
  draw([]);
  return { el: svg, draw };
}

/** The chart under a visible title (the aria-label alone is read only by screen readers). */
export function titledChart(title: string, chart: { el: SVGSVGElement }): HTMLElement {
  const fig = document.createElement('figure');
  fig.className = 'chart-box';
  const cap = document.createElement('figcaption');
  cap.textContent = title;
  fig.append(cap, chart.el);
  return fig;
}
