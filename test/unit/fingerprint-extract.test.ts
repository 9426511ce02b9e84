import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  extractFingerprint,
  extractFingerprintFromCases,
  type ExtractProgress,
  type FingerprintCaseInput,
} from '../../src/fingerprint/extract.ts';
import { memorySource } from '../../src/io/file-source.ts';
import { fsSource } from '../../src/node/fs-source.ts';
import { expectMatchesReference } from './helpers/fingerprint-ref.ts';
import { loadRawCase } from './helpers/load-nifti.ts';
import { REFERENCE } from '../paths.ts';

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

describe('extractFingerprint on raw dataset folders', () => {
  for (const ds of ['Dataset801_PhantomMR', 'Dataset803_PhantomMR2ch']) {
    it(`${ds}: equals nnU-Net's dataset_fingerprint.json, with progress per case`, async () => {
      const progress: ExtractProgress[] = [];
      const r = await extractFingerprint(fsSource(`${REFERENCE}/raw/${ds}`), {
        onProgress: (p) => progress.push(p),
      });
      expectMatchesReference(
        r.fingerprint,
        json(`${REFERENCE}/fingerprints/${ds}/dataset_fingerprint.json`),
      );
      const ids = Object.keys(
        json(`${REFERENCE}/fingerprints/${ds}/exact_foreground_stats.json`).per_case,
      ).sort();
      expect(r.cases.map((c) => c.id)).toEqual(ids);
      expect(progress).toEqual(
        ids.map((caseId, i) => ({ done: i + 1, total: ids.length, caseId })),
      );
    });
  }

  it('rejects a malformed folder with its problems before reading images', async () => {
    await expect(extractFingerprint(memorySource('Empty', {}))).rejects.toThrow(/Empty is empty/);
    const src = memorySource('NoLabels', {
      'dataset.json': new TextEncoder().encode(
        JSON.stringify({
          channel_names: { 0: 'T1' },
          labels: { background: 0, a: 1 },
          numTraining: 1,
          file_ending: '.nii.gz',
        }),
      ),
      'imagesTr/a_0000.nii.gz': new Uint8Array(10),
    });
    await expect(extractFingerprint(src)).rejects.toThrow(/no labelsTr\/ folder/);
  });
});

describe('extractFingerprintFromCases', () => {
  const DIR = `${REFERENCE}/raw/Dataset801_PhantomMR`;
  const IDS = ['mrA_000', 'mrA_001', 'mrA_002', 'mrA_003', 'mrA_004'];

  /** Cases loaded lazily; `log` records when each is loaded, to check one case at a time. */
  async function* lazy(log: string[], ids = IDS): AsyncGenerator<FingerprintCaseInput> {
    for (const id of ids) {
      log.push(`load ${id}`);
      const { image, label } = loadRawCase(DIR, id, 1);
      yield { id, image: [image], label };
    }
  }

  it('an async iterable gives the same fingerprint as the folder, finishing each case before loading the next', async () => {
    const log: string[] = [];
    const r = await extractFingerprintFromCases(lazy(log), {
      onCase: (id) => void log.push(`done ${id}`),
    });
    expect(log).toEqual(IDS.flatMap((id) => [`load ${id}`, `done ${id}`]));
    const folder = await extractFingerprint(fsSource(DIR));
    expect(r.fingerprint).toEqual(folder.fingerprint);
    expectMatchesReference(
      r.fingerprint,
      json(`${REFERENCE}/fingerprints/Dataset801_PhantomMR/dataset_fingerprint.json`),
    );
  });

  it('cancels with an AbortError between cases, and at once if already aborted', async () => {
    const ac = new AbortController();
    const log: string[] = [];
    const p = extractFingerprintFromCases(lazy(log), {
      signal: ac.signal,
      total: 5,
      onCase: (id) => {
        if (id === 'mrA_001') ac.abort();
      },
    });
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DOMException);
    expect((err as DOMException).name).toBe('AbortError');
    expect((err as DOMException).message).toBe(
      'fingerprint extraction cancelled after 2 of 5 case(s)',
    );
    expect(log.filter((l) => l.startsWith('load'))).toHaveLength(2); // nothing is loaded after the abort
    const pre = new AbortController();
    pre.abort();
    const log2: string[] = [];
    await expect(
      extractFingerprintFromCases(lazy(log2), { signal: pre.signal }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(log2).toEqual([]);
    await expect(extractFingerprint(fsSource(DIR), { signal: pre.signal })).rejects.toMatchObject({
      name: 'AbortError',
    });
  });

  it('names the case for a missing label and refuses an empty input', async () => {
    const { image } = loadRawCase(DIR, 'mrA_000', 1);
    await expect(
      extractFingerprintFromCases([{ id: 'x', image, label: undefined }]),
    ).rejects.toThrow(/case x has no label map/);
    await expect(extractFingerprintFromCases([])).rejects.toThrow(/no training cases/);
  });
});
