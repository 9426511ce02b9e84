// The layers of src/, checked over the import lines of every module (a small scan rather than a
// dependency-graph package: the rules are a handful of path prefixes, and the modules use one
// import style). Fails on an import cycle or an import across a forbidden layer boundary.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');

function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) return tsFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every module specifier a file imports: static, type-only, re-exports, dynamic and `typeof import()`. */
function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const re of [
    /\b(?:import|export)\s[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*(?:\/\*[^*]*\*\/\s*)?['"]([^'"]+)['"]\s*\)/g,
  ]) {
    for (const m of code.matchAll(re)) out.push(m[1]);
  }
  return out;
}

interface Edge {
  from: string;
  /** A repository path for relative imports ('src/fed/host.ts'), else the package or node: name. */
  to: string;
}

const FILES = [...tsFiles('src'), ...tsFiles('workers')];
const EDGES: Edge[] = FILES.flatMap((from) =>
  importsOf(readFileSync(join(ROOT, from), 'utf8')).map((spec) => ({
    from,
    to: spec.startsWith('.')
      ? relative(ROOT, resolve(ROOT, dirname(from), spec.replace(/\?.*$/, '')))
      : spec,
  })),
);

const under = (p: string, ...dirs: string[]) => dirs.some((d) => p === d || p.startsWith(`${d}/`));
const isNodeBuiltin = (to: string) => to.startsWith('node:');

/** Import cycles whose fix belongs to a branch not merged yet; remove each when it is gone. */
const KNOWN_CYCLES: string[][] = [];

/** Node built-ins outside src/node and src/cli, each with why it is there for now. */
const KNOWN_NODE_IMPORTS: Array<{ from: string; to: string }> = [];

function violations(rule: (e: Edge) => boolean): string[] {
  return EDGES.filter(rule).map((e) => `${e.from} → ${e.to}`);
}

/** Strongly connected components of more than one module (Tarjan), each sorted. */
function cycles(): string[][] {
  const graph = new Map<string, string[]>(FILES.map((f) => [f, []]));
  for (const e of EDGES) if (graph.has(e.to) && e.to !== e.from) graph.get(e.from)!.push(e.to);
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

describe('layering of src/', () => {
  it('finds the imports of every kind', () => {
    expect(
      importsOf(
        `import a from './a.ts';\nimport type { B } from "../b.ts";\nexport { c } from './c.ts';\nimport {\n  d,\n  e,\n} from './d.ts';\nimport './side.ts';\nconst f = await import('./f.ts');\ntype G = typeof import('node:fs');\n// import x from './commented.ts';\n/* import y from './blocked.ts'; */`,
      ),
    ).toEqual(['./a.ts', '../b.ts', './c.ts', './d.ts', './side.ts', './f.ts', 'node:fs']);
    // The scan sees the real tree: the store's own modules, and the fed core's.
    expect(
      EDGES.some((e) => e.from === 'src/store/datasets.ts' && e.to === 'src/store/db.ts'),
    ).toBe(true);
    expect(
      EDGES.some((e) => e.from === 'src/fed/host.ts' && e.to === 'src/fed/coordinator.ts'),
    ).toBe(true);
  });

  it('the store persists records and bytes: it imports no stage that reads them (infer, fed, train, pipeline) and no app layer', () => {
    expect(
      violations(
        (e) =>
          under(e.from, 'src/store') &&
          under(
            e.to,
            'src/infer',
            'src/fed',
            'src/train',
            'src/pipeline',
            'src/ui',
            'src/cli',
            'src/node',
          ),
      ),
    ).toEqual([]);
  });

  it('the fed core is platform-free: no Node built-ins, no Node server packages, no store, UI, CLI or src/node', () => {
    expect(
      violations(
        (e) =>
          under(e.from, 'src/fed') &&
          (isNodeBuiltin(e.to) ||
            ['express', 'ws', 'peer'].includes(e.to) ||
            under(e.to, 'src/node', 'src/cli', 'src/ui', 'src/store', 'src/pipeline')),
      ),
    ).toEqual([]);
  });

  it('only src/node and src/cli import Node built-ins or the Node server packages', () => {
    const found = violations(
      (e) =>
        !under(e.from, 'src/node', 'src/cli') &&
        (isNodeBuiltin(e.to) || ['express', 'ws', 'peer'].includes(e.to)),
    );
    const known = KNOWN_NODE_IMPORTS.map((k) => `${k.from} → ${k.to}`);
    expect(found.filter((v) => !known.includes(v))).toEqual([]);
  });

  it('src/ never imports the workers, the tests or the page', () => {
    expect(
      violations(
        (e) =>
          under(e.from, 'src') &&
          !under(e.from, 'src/ui') &&
          under(e.to, 'workers', 'test', 'bench', 'src/ui'),
      ),
    ).toEqual([]);
    expect(violations((e) => under(e.from, 'src') && under(e.to, 'test', 'bench'))).toEqual([]);
  });

  it('has no import cycles (type-only and lazy imports included)', () => {
    const found = cycles().map((c) => c.join(' ⇄ '));
    const known = KNOWN_CYCLES.map((c) => [...c].sort().join(' ⇄ '));
    expect(
      found.filter((c) => !known.includes(c)),
      'new import cycles',
    ).toEqual([]);
    expect(
      known.filter((c) => !found.includes(c)),
      'cycles fixed since: remove them from KNOWN_CYCLES',
    ).toEqual([]);
  });
});
