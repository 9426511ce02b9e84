// A QR code of the workshop join link, for a room whose participants type nothing. The encoding is
// uqr's (a small, dependency-free, maintained encoder); the drawing is a few SVG rects.
import { encode } from 'uqr';

/** The modules of `text`'s QR code (true = dark), with uqr's quiet zone. */
export function qrModules(text: string): boolean[][] {
  return encode(text, { ecc: 'M', border: 4 }).data;
}

const NS = 'http://www.w3.org/2000/svg';

/** An SVG of `text`'s QR code, `size` CSS pixels wide, labelled for screen readers. */
export function qrSvg(text: string, label: string, size = 200): SVGSVGElement {
  const m = qrModules(text);
  const n = m.length;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${n} ${n}`);
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('shape-rendering', 'crispEdges');
  const bg = document.createElementNS(NS, 'rect');
  bg.setAttribute('width', String(n));
  bg.setAttribute('height', String(n));
  bg.setAttribute('fill', '#fff');
  // One path for all dark modules: a few kB of markup instead of thousands of elements.
  const d: string[] = [];
  m.forEach((row, y) => row.forEach((on, x) => on && d.push(`M${x},${y}h1v1h-1z`)));
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', d.join(''));
  path.setAttribute('fill', '#000');
  svg.append(bg, path);
  svg.dataset.text = text;
  return svg;
}
