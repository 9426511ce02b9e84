// nnU-Net's `--folds 0 1 …` for the commands that take it (predict, import-nnunet).

/** nnU-Net style `--folds 0 1` → `--folds=0 --folds=1` (node's parseArgs takes one value per flag). */
export function expandFolds(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] !== '--folds' && argv[i] !== '-f') {
      out.push(argv[i]);
      continue;
    }
    let any = false;
    while (i + 1 < argv.length && /^\d+$/.test(argv[i + 1])) {
      out.push(`--folds=${argv[++i]}`);
      any = true;
    }
    if (!any) out.push(argv[i]);
  }
  return out;
}
