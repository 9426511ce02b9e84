// `fednnunet aggregate-fingerprints`: the relay's FFE step on files. Plain mode is FednnU-Net's
// aggregate_fingerprints; --private merges private summaries (full fingerprints given as input
// are summarised first, as each client would) and writes the merged summary.
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import {
  aggregateFingerprints,
  aggregatePrivateSummaries,
  summarizeFingerprint,
  summaryCaseCount,
  type PrivateFingerprintSummary,
} from '../../fingerprint/ffe.ts';
import type { DatasetFingerprint } from '../../fingerprint/types.ts';

const USAGE =
  'fednnunet aggregate-fingerprints A.json B.json ... -o fed.json [--private] [--weights n1,n2,...]';

function parseWeights(text: string | undefined, n: number): number[] | undefined {
  if (text === undefined) return undefined;
  const w = text.split(',').map(Number);
  if (w.length !== n || w.some((x) => !Number.isFinite(x) || x <= 0))
    throw new UsageError(`--weights needs ${n} positive numbers, got '${text}'`);
  return w;
}

const command: Command = {
  summary: 'FFE: aggregate client dataset fingerprints (FednnU-Net rule, or --private summaries)',
  async run(argv) {
    const { values, positionals } = parse(argv, {
      output: { type: 'string', short: 'o' },
      private: { type: 'boolean' },
      weights: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length === 0 || !values.output) throw new UsageError(`usage: ${USAGE}`);
    const inputs = positionals.map(
      (p) => JSON.parse(readFileSync(p, 'utf8')) as DatasetFingerprint | PrivateFingerprintSummary,
    );
    const weights = parseWeights(values.weights, inputs.length);

    let out: DatasetFingerprint | PrivateFingerprintSummary;
    let cases: number;
    if (values.private) {
      const summaries = inputs.map((x) => ('private_ffe' in x ? x : summarizeFingerprint(x)));
      out = aggregatePrivateSummaries(summaries, weights);
      cases = summaryCaseCount(out);
    } else {
      if (inputs.some((x) => 'private_ffe' in x))
        throw new UsageError('private summaries can only be aggregated with --private');
      out = aggregateFingerprints(inputs as DatasetFingerprint[], weights);
      cases = out.spacings.length;
    }
    // Like nnU-Net's save_json: indent 4 (keys are already in its sorted order).
    writeFileSync(values.output, `${JSON.stringify(out, null, 4)}\n`);
    console.log(
      `aggregated ${inputs.length} fingerprints (${cases} cases${values.private ? ', private' : ''}) -> ${values.output}`,
    );
    return 0;
  },
};
export default command;
