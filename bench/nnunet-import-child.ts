// Child process of nnunet-import.bench.ts: imports an nnU-Net model (folder or export zip) into
// model folders, fold by fold, and prints JSON with its memory: RSS and ArrayBuffer bytes after
// the modules loaded (baseline), after each fold, and the process's peak RSS (VmHWM) at the end.
import { readFileSync } from 'node:fs';
import { readNnUNetFolds } from '../src/infer/nnunet-folds.ts';
import { nnunetModelSource } from '../src/node/nnunet-source-fs.ts';
import { writeModelFolder } from '../src/node/model-folder-fs.ts';

/**
 * Peak RSS of this process: VmHWM belongs to the address space made at exec, whereas getrusage's
 * maxRSS also counts the forked parent's pages before exec (the benchmark parent is large).
 */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

const [src, out, only] = process.argv.slice(2);
const gc = (globalThis as { gc?: () => void }).gc;
const mem = () => {
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, arrayBuffers: m.arrayBuffers, heapUsed: m.heapUsed };
};
const baseline = mem();
const t0 = performance.now();
const folds: Array<
  { fold: number; seconds: number; checkpointBytes: number } & ReturnType<typeof mem>
> = [];
for await (const f of readNnUNetFolds(await nnunetModelSource(src), {
  folds: only === undefined ? undefined : [Number(only)],
})) {
  await writeModelFolder(`${out}/fold_${f.fold}`, f.model);
  folds.push({
    fold: f.fold,
    seconds: (performance.now() - t0) / 1000,
    checkpointBytes: f.checkpointBytes,
    ...mem(),
  });
}
console.log(
  JSON.stringify({
    baseline,
    folds,
    seconds: (performance.now() - t0) / 1000,
    maxRssBytes: peakRss(),
  }),
);
