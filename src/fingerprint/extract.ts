// DatasetFingerprintExtractor over a whole dataset, one case in memory at a time: each case is
// loaded, summarised (caseFingerprint: shape/spacing/relative size + compact foreground summary)
// and dropped before the next is loaded, so memory is one case plus the summaries. Platform-free:
// the cases come from a FileSource (a raw nnU-Net folder) or from any (async) iterable of volumes,
// e.g. the browser store's loadCaseVolumes.
import type { FileSource } from '../io/file-source.ts';
import { loadCase, openRawDataset, stackChannels, type OpenedDataset } from '../io/raw-dataset.ts';
import type { Volume } from '../io/volume.ts';
import { caseFingerprint, type CaseFingerprint } from './case.ts';
import { datasetFingerprint } from './dataset.ts';
import type { DatasetFingerprint } from './types.ts';
import { errorMessage } from '../util/errors.ts';

/** One training case: its channels (stacked, or one Volume per channel) and its label map. */
export interface FingerprintCaseInput {
  id: string;
  image: Volume | Volume[];
  label?: Volume;
}

export interface ExtractProgress {
  /** Cases finished. */
  done: number;
  /** Cases expected, when known. */
  total?: number;
  /** The case just finished. */
  caseId: string;
}

export interface ExtractOptions {
  onProgress?: (p: ExtractProgress) => void;
  /** Called with each case's fingerprint as it is finished (e.g. to store it). */
  onCase?: (caseId: string, fp: CaseFingerprint) => void | Promise<void>;
  signal?: AbortSignal;
  /** Number of cases expected (for progress) when the input is an iterable. */
  total?: number;
  /** Distinct foreground values kept per case and channel (see case.ts). */
  maxDistinct?: number;
}

export interface ExtractResult {
  fingerprint: DatasetFingerprint;
  /** Per-case fingerprints in input order. */
  cases: { id: string; fingerprint: CaseFingerprint }[];
}

/** The error a cancelled extraction rejects with: a DOMException named 'AbortError'. */
export function abortError(done: number, total: number | undefined, reason: unknown): DOMException {
  const of = total === undefined ? '' : ` of ${total}`;
  const e = new DOMException(
    `fingerprint extraction cancelled after ${done}${of} case(s)`,
    'AbortError',
  );
  // Keep the caller's reason reachable (DOMException takes no options bag).
  Object.defineProperty(e, 'cause', { value: reason, enumerable: false });
  return e;
}

// In a worker, an abort arrives as a message: let the event loop run between cases so it can.
const tick = () => new Promise<void>((r) => setTimeout(r, 0));

/** Fingerprint of the cases yielded by `cases`, taken one at a time. */
export async function extractFingerprintFromCases(
  cases: Iterable<FingerprintCaseInput> | AsyncIterable<FingerprintCaseInput>,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const { signal, total } = opts;
  const out: ExtractResult['cases'] = [];
  const check = async () => {
    if (signal) {
      await tick();
      if (signal.aborted) throw abortError(out.length, total, signal.reason);
    }
  };
  await check();
  for await (const c of cases) {
    await check();
    if (!c.label)
      throw new Error(`case ${c.id} has no label map; the fingerprint needs one per training case`);
    const image = Array.isArray(c.image)
      ? c.image.length === 1
        ? c.image[0]
        : stackChannels(c.image)
      : c.image;
    let fp: CaseFingerprint;
    try {
      fp = caseFingerprint(image, c.label, { maxDistinct: opts.maxDistinct });
    } catch (e) {
      throw new Error(`case ${c.id}: ${errorMessage(e)}`, { cause: e });
    }
    out.push({ id: c.id, fingerprint: fp });
    await opts.onCase?.(c.id, fp);
    opts.onProgress?.({ done: out.length, total, caseId: c.id });
    await check(); // before the next case is loaded
  }
  if (out.length === 0) throw new Error('no training cases to fingerprint');
  return { fingerprint: datasetFingerprint(out.map((c) => c.fingerprint)), cases: out };
}

/** Cases of an opened raw dataset, read one at a time in its (sorted) case order. */
export async function* rawDatasetCases(
  src: FileSource,
  ds: OpenedDataset,
): AsyncGenerator<FingerprintCaseInput> {
  for (const c of ds.cases) {
    if (!c.label) throw new Error(`case ${c.id} has no label file in labelsTr/`);
    const { images, label } = await loadCase(src, c);
    yield { id: c.id, image: images, label };
  }
}

/**
 * DatasetFingerprintExtractor on a raw nnU-Net dataset folder (dataset.json, imagesTr, labelsTr).
 * Rejects with the folder's problems (one message) before reading any image when the folder is
 * malformed, and with an AbortError when `signal` aborts.
 */
export async function extractFingerprint(
  src: FileSource,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const ds = await openRawDataset(src);
  if (ds.problems.length) throw new Error(`${src.name}: ${ds.problems.join('; ')}`);
  return extractFingerprintFromCases(rawDatasetCases(src, ds), {
    ...opts,
    total: opts.total ?? ds.cases.length,
  });
}
