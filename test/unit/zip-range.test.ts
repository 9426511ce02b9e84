// The zip reader reads by range: a picked/dropped zip (a Blob) or a zip on disk is opened by its
// end record and central directory only, and each entry read is its 30-byte local header plus its
// own data range (STORED: one slice of its size; DEFLATE: its compressed slice, inflated into a
// buffer of its declared size). The archive is never read whole. Malformed archives are refused
// with the same words by the by-range reader and the in-memory one.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipSync } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';
import { setReadLimits } from '../../src/io/read-limits.ts';
import { openZip, openZipBytes, ZipError, type ZipEntry } from '../../src/io/zip-archive.ts';
import { blobReadAt, givenFilesSource, zipSource } from '../../src/io/zip-source.ts';
import { zipFileSource } from '../../src/node/zip-file-source.ts';

const MiB = 1024 ** 2;

/** Incompressible-looking bytes (an LCG), so a STORED entry is as large as its data. */
function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

const A = noise(3 * MiB, 1); // a checkpoint-sized entry, STORED
const B = new TextEncoder().encode('{"plans": 1}\n'.repeat(16_000)); // ~200 KiB, DEFLATE
const C = new TextEncoder().encode('{"name": "Dataset801"}'); // small, STORED
const ZIP = zipSync({
  'm/fold_0/checkpoint_final.pth': [A, { level: 0 }],
  'm/plans.json': [B, { level: 6 }],
  'm/dataset.json': [C, { level: 0 }],
});

/** A Blob that records every slice it gives and refuses to be read whole. */
class CountingBlob extends Blob {
  reads: Array<[offset: number, length: number]> = [];
  override slice(start = 0, end = this.size, type?: string): Blob {
    this.reads.push([start, end - start]);
    return super.slice(start, end, type);
  }
  override arrayBuffer(): Promise<ArrayBuffer> {
    throw new Error('the whole archive was read');
  }
  override bytes(): Promise<Uint8Array<ArrayBuffer>> {
    throw new Error('the whole archive was read');
  }
  override stream(): ReturnType<Blob['stream']> {
    throw new Error('the whole archive was read');
  }
  override text(): Promise<string> {
    throw new Error('the whole archive was read');
  }
  take(): Array<[number, number]> {
    const r = this.reads;
    this.reads = [];
    return r;
  }
}

/** Byte equality (vitest's toEqual walks a 3 MiB array element by element, slowly). */
const same = (a: Uint8Array, b: Uint8Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
const total = (reads: Array<[number, number]>) => reads.reduce((n, [, l]) => n + l, 0);
const entry = (zip: Uint8Array, name: string): ZipEntry =>
  openZipBytes(zip).entries.find((e) => e.name === name)!;
const dataAt = (zip: Uint8Array, e: ZipEntry) => {
  const v = new DataView(zip.buffer, zip.byteOffset + e.localHeaderOffset);
  return e.localHeaderOffset + 30 + v.getUint16(26, true) + v.getUint16(28, true);
};

describe('zip read by range from a Blob', () => {
  it('opening reads the end records and the directory only; each entry, its header and data', async () => {
    expect(ZIP.length).toBeGreaterThan(3 * MiB);
    const blob = new CountingBlob([ZIP]);
    const src = await givenFilesSource([{ path: 'export/model.zip', file: blob }]);
    expect(src.name).toBe('model.zip');
    const open = blob.take();
    const cdSize = new DataView(ZIP.buffer).getUint32(ZIP.length - 22 + 12, true);
    expect(open).toEqual([
      [ZIP.length - Math.min(ZIP.length, 22 + 0xffff), Math.min(ZIP.length, 22 + 0xffff)],
      [ZIP.length - 22 - cdSize, cdSize],
    ]);
    expect(total(open)).toBeLessThan(70 * 1024);
    expect(await src.list()).toEqual([
      'm/dataset.json',
      'm/fold_0/checkpoint_final.pth',
      'm/plans.json',
    ]);
    expect(src.size!('m/fold_0/checkpoint_final.pth')).toBe(A.length);

    // STORED, small: its local header, then exactly its bytes.
    const c = entry(ZIP, 'm/dataset.json');
    expect(same(await src.read('m/dataset.json'), C)).toBe(true);
    expect(blob.take()).toEqual([
      [c.localHeaderOffset, 30],
      [dataAt(ZIP, c), C.length],
    ]);
    // Opening and reading one small file read under 3 % of the archive.
    expect(total(open) + 30 + C.length).toBeLessThan(ZIP.length * 0.03);

    // STORED, large: one slice of its size.
    const a = entry(ZIP, 'm/fold_0/checkpoint_final.pth');
    expect(same(await src.read('m/fold_0/checkpoint_final.pth'), A)).toBe(true);
    expect(blob.take()).toEqual([
      [a.localHeaderOffset, 30],
      [dataAt(ZIP, a), A.length],
    ]);

    // DEFLATE: its compressed slice only, inflated to its declared size.
    const b = entry(ZIP, 'm/plans.json');
    expect(b.method).toBe(8);
    expect(b.compressedSize).toBeLessThan(B.length / 10);
    expect(same(await src.read('m/plans.json'), B)).toBe(true);
    const rb = blob.take();
    expect(rb).toEqual([
      [b.localHeaderOffset, 30],
      [dataAt(ZIP, b), b.compressedSize],
    ]);
    expect(total(rb)).toBe(30 + b.compressedSize);
  });

  it('a zip larger than the read limit opens; an entry over it is refused before it is read', async () => {
    const old = setReadLimits({ maxVolumeBytes: MiB });
    try {
      const blob = new CountingBlob([ZIP]);
      const src = await givenFilesSource([{ path: 'model.zip', file: blob }]);
      blob.take();
      await expect(src.read('m/fold_0/checkpoint_final.pth')).rejects.toThrow(
        /model\.zip: m\/fold_0\/checkpoint_final\.pth declares 3 MiB, more than the 1 MiB read limit/,
      );
      expect(blob.take()).toEqual([]);
      expect(same(await src.read('m/plans.json'), B)).toBe(true);
    } finally {
      setReadLimits(old);
    }
  });

  it('a read that comes back short or fails is an error naming the archive', async () => {
    const short = zipSource('s.zip', ZIP.length, async (o, n) => ZIP.slice(o, o + n - 1));
    await expect(short).rejects.toThrow(
      /s\.zip: read \d+ bytes at \d+, expected \d+ \(file changed\?\)/,
    );
    const blob = new Blob([ZIP]);
    const readAt = blobReadAt('g.zip', blob);
    await expect(readAt(ZIP.length - 10, 11)).rejects.toThrow(/g\.zip: read past the end/);
    const gone = {
      size: ZIP.length,
      slice: () => ({ arrayBuffer: () => Promise.reject(new Error('NotReadableError')) }),
    };
    await expect(blobReadAt('h.zip', gone as unknown as Blob)(0, 10)).rejects.toThrow(
      /h\.zip: cannot read bytes 0–10 \(NotReadableError; was the file changed or removed\?\)/,
    );
  });
});

/** The byte offset of `name`'s central directory record. */
function cdRecord(zip: Uint8Array, name: string): number {
  const v = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const end = zip.length - 22;
  let p = v.getUint32(end + 16, true);
  const dec = new TextDecoder();
  for (;;) {
    const n = v.getUint16(p + 28, true);
    if (dec.decode(zip.subarray(p + 46, p + 46 + n)) === name) return p;
    p += 46 + n + v.getUint16(p + 30, true) + v.getUint16(p + 32, true);
  }
}

function edit(f: (v: DataView, z: Uint8Array) => void): Uint8Array<ArrayBuffer> {
  const z = ZIP.slice();
  f(new DataView(z.buffer), z);
  return z;
}

const PTH = 'm/fold_0/checkpoint_final.pth';
const PLANS = 'm/plans.json';
const DS = 'm/dataset.json';

// [what, archive, entry to read (undefined: refused when opened), expected error]
const MALFORMED: Array<[string, Uint8Array<ArrayBuffer>, string | undefined, RegExp]> = [
  ['too short', ZIP.slice(0, 10), undefined, /too short to be a zip/],
  ['not a zip', new Uint8Array(40), undefined, /no end of central directory/],
  ['cut off at the end', ZIP.slice(0, ZIP.length - 10), undefined, /no end of central directory/],
  [
    'a part of the data missing',
    new Uint8Array([...ZIP.subarray(0, 1000), ...ZIP.subarray(2000)]),
    undefined,
    /central directory lies outside the file/,
  ],
  [
    'a directory that claims most of the file',
    edit((v, z) => {
      v.setUint16(z.length - 22 + 8, 1, true);
      v.setUint16(z.length - 22 + 10, 1, true);
      v.setUint32(z.length - 22 + 12, z.length - 22, true);
      v.setUint32(z.length - 22 + 16, 0, true);
    }),
    undefined,
    /central directory declares more bytes than its entries can hold/,
  ],
  [
    'a broken directory record',
    edit((v) => v.setUint32(cdRecord(ZIP, PTH), 0x12345678, true)),
    undefined,
    /central directory entry 0 malformed/,
  ],
  [
    'an entry outside the file',
    edit((v) => v.setUint32(cdRecord(ZIP, DS) + 42, ZIP.length - 40, true)),
    undefined,
    /m\/dataset\.json lies outside the file/,
  ],
  [
    'an encrypted entry',
    edit((v) => v.setUint16(cdRecord(ZIP, DS) + 8, 1, true)),
    undefined,
    /m\/dataset\.json is encrypted/,
  ],
  [
    'a damaged entry (CRC)',
    edit((_, z) => void (z[dataAt(ZIP, entry(ZIP, PTH)) + 1234] ^= 0xff)),
    PTH,
    /checkpoint_final\.pth: CRC-32 mismatch \(damaged file\)/,
  ],
  [
    'a broken local header',
    edit((v) => v.setUint32(entry(ZIP, DS).localHeaderOffset, 0, true)),
    DS,
    /m\/dataset\.json: local header malformed/,
  ],
  [
    'an unsupported method',
    edit((v) => v.setUint16(cdRecord(ZIP, DS) + 10, 12, true)),
    DS,
    /m\/dataset\.json: compression method 12 is not supported/,
  ],
  [
    'a stored entry with two sizes',
    edit((v) => v.setUint32(cdRecord(ZIP, DS) + 20, C.length + 1, true)),
    DS,
    /m\/dataset\.json: stored entry with two different sizes/,
  ],
  [
    'a deflated entry larger than declared',
    edit((v) => v.setUint32(cdRecord(ZIP, PLANS) + 24, B.length - 100, true)),
    PLANS,
    // fflate stops at the end of the buffer: the CRC tells the data is not the entry's
    /m\/plans\.json: (inflates to a different size than declared|cannot inflate|CRC-32 mismatch)/,
  ],
  [
    'a deflated entry smaller than declared',
    edit((v) => v.setUint32(cdRecord(ZIP, PLANS) + 24, B.length + 100, true)),
    PLANS,
    /m\/plans\.json: inflates to a different size than declared/,
  ],
  [
    'a deflated entry whose compressed size is far beyond its data',
    edit((v) => {
      v.setUint16(cdRecord(ZIP, PTH) + 10, 8, true);
      v.setUint32(cdRecord(ZIP, PTH) + 24, 10, true);
    }),
    PTH,
    /checkpoint_final\.pth: 3145728 compressed bytes for 10 bytes of data/,
  ],
  [
    'damaged deflate data',
    edit((_, z) =>
      z.fill(0xff, dataAt(ZIP, entry(ZIP, PLANS)), dataAt(ZIP, entry(ZIP, PLANS)) + 64),
    ),
    PLANS,
    /m\/plans\.json: (cannot inflate|inflates to a different size|CRC-32 mismatch)/,
  ],
];

describe('malformed zips are refused by range as in memory, in the same words', () => {
  for (const [what, zip, name, err] of MALFORMED) {
    it(what, async () => {
      let sync: unknown;
      try {
        const z = openZipBytes(zip, 'bad.zip');
        z.read(z.entries.find((e) => e.name === name)!);
      } catch (e) {
        sync = e;
      }
      expect(sync).toBeInstanceOf(ZipError);
      expect((sync as Error).message).toMatch(err);
      const blob = new CountingBlob([zip]);
      const z = openZip(zip.length, blobReadAt('bad.zip', blob), 'bad.zip');
      if (name === undefined) {
        await expect(z).rejects.toThrow((sync as Error).message);
      } else {
        const opened = await z;
        blob.take();
        await expect(opened.read(opened.entries.find((e) => e.name === name)!)).rejects.toThrow(
          (sync as Error).message,
        );
        // Refused having read at most the entry's header and its own range.
        const e = opened.entries.find((x) => x.name === name)!;
        expect(total(blob.take())).toBeLessThanOrEqual(30 + Math.min(e.compressedSize, zip.length));
      }
    });
  }

  it('refuses before reading: an entry whose data range (or declared size) cannot be right', async () => {
    // The compressed-size guard fires before the local header is read.
    const zip = MALFORMED.find(([w]) => w.startsWith('a deflated entry whose compressed'))![1];
    const blob = new CountingBlob([zip]);
    const z = await openZip(zip.length, blobReadAt('x.zip', blob), 'x.zip');
    blob.take();
    await expect(z.read(z.entries.find((e) => e.name === PTH)!)).rejects.toThrow(ZipError);
    expect(blob.take()).toEqual([]);
  });
});

describe('zip on disk (Node) read by range', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zip-range-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads entries as the Blob reader does; a cut-off file and a folder are refused', async () => {
    const p = join(dir, 'model.zip');
    writeFileSync(p, ZIP);
    const src = await zipFileSource(p);
    expect(src.name).toBe('model.zip');
    expect(await src.list()).toEqual([DS, PTH, PLANS]);
    expect(same(await src.read(PLANS), B)).toBe(true);
    expect(same(await src.read(PTH), A)).toBe(true);
    const cut = join(dir, 'cut.zip');
    writeFileSync(cut, ZIP.subarray(0, ZIP.length - 10));
    await expect(zipFileSource(cut)).rejects.toThrow(/cut\.zip: no end of central directory/);
    const crc = join(dir, 'crc.zip');
    writeFileSync(crc, MALFORMED.find(([w]) => w === 'a damaged entry (CRC)')![1]);
    await expect((await zipFileSource(crc)).read(PTH)).rejects.toThrow(/CRC-32 mismatch/);
    mkdirSync(join(dir, 'folder.zip'));
    await expect(zipFileSource(join(dir, 'folder.zip'))).rejects.toThrow(/not a regular file/);
  });
});
