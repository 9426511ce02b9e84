import { describe, expect, it } from 'vitest';
import { IDBFactory } from 'fake-indexeddb';
import { unwrap, wrap, type IDBPDatabase } from 'idb';
import { DB_NAME, DB_VERSION, MIGRATIONS, openStore, type StoreDB } from '../../src/store/db.ts';
import { loadMembership, saveMembership } from '../../src/store/fed-state.ts';
import { loadSiteKey, siteKeyStore } from '../../src/store/site-key.ts';
import { siteIdentity } from '../../src/fed/identity/kept-key.ts';
import { saveHostedFederation, unfinishedHostedFederations } from '../../src/fed/hosted-state.ts';
import { hostedRows } from '../../src/store/hosted-federation.ts';
import {
  findDatasetByName,
  importDataset,
  listDatasets,
  loadCaseVolumes,
  type ImportProgress,
} from '../../src/store/datasets.ts';
import type { LocksLike } from '../../src/store/env.ts';
import {
  caseStream,
  dump,
  freshStore,
  makeCase,
  makeVolume,
  meta,
  noEnv,
} from './store-helpers.ts';

function describeSchema(db: StoreDB) {
  const raw = unwrap(db) as IDBDatabase;
  const names = [...raw.objectStoreNames];
  const tx = raw.transaction(names);
  return names.map((n) => {
    const s = tx.objectStore(n);
    const indexes = [...s.indexNames].map((i) => ({
      name: i,
      keyPath: s.index(i).keyPath,
      unique: s.index(i).unique,
    }));
    return { name: n, keyPath: s.keyPath, autoIncrement: s.autoIncrement, indexes };
  });
}

/** The v1 layout exactly as released, kept here so the test does not depend on today's code. */
async function createV1Database(factory: IDBFactory) {
  const req = factory.open(DB_NAME, 1);
  req.onupgradeneeded = () => {
    const db = req.result;
    db.createObjectStore('datasets', { keyPath: 'id' });
    db.createObjectStore('cases', { keyPath: ['datasetId', 'caseId'] });
    db.createObjectStore('volumes', { keyPath: ['datasetId', 'caseId', 'role'] });
  };
  const db = (await wrap(req)) as unknown as IDBPDatabase;
  const vols = [makeVolume(1), makeVolume(2, 'uint8'), makeVolume(3), makeVolume(4, 'uint8')];
  const header = (v: (typeof vols)[number]) => {
    const { data, ...h } = v;
    return { ...h, byteLength: data.byteLength };
  };
  const v1Dataset = {
    id: 'ds-old',
    name: 'Dataset002_Heart',
    datasetJson: { name: 'Heart' },
    channelNames: ['MRI'],
    labels: { background: 0, LA: 1 },
    numCases: 2,
    createdAt: 123,
  };
  await db.put('datasets', v1Dataset);
  for (const [i, caseId] of ['la_003', 'la_004'].entries()) {
    const [img, lab] = [vols[2 * i], vols[2 * i + 1]];
    await db.put('cases', {
      datasetId: 'ds-old',
      caseId,
      images: [header(img)],
      label: header(lab),
      problems: i ? ['odd spacing'] : [],
      bytes: img.data.byteLength + lab.data.byteLength,
    });
    await db.put('volumes', {
      datasetId: 'ds-old',
      caseId,
      role: 'image:0',
      dtype: img.datatype,
      data: img.data.buffer,
      byteLength: img.data.byteLength,
    });
    await db.put('volumes', {
      datasetId: 'ds-old',
      caseId,
      role: 'label',
      dtype: lab.datatype,
      data: lab.data.buffer,
      byteLength: lab.data.byteLength,
    });
  }
  db.close();
  return { v1Dataset, vols };
}

describe('store: schema and migrations', () => {
  it('migrates a v1 database to the current version without losing data', async () => {
    const factory = new IDBFactory();
    const { v1Dataset, vols } = await createV1Database(factory);
    const v1Dump = await (async () => {
      const req = factory.open(DB_NAME, 1);
      const db = (await wrap(req)) as unknown as StoreDB;
      const d = await dump(db);
      db.close();
      return d;
    })();

    const db = await openStore({ factory, env: noEnv });
    expect(db.version).toBe(DB_VERSION);
    const after = await dump(db);
    expect(after.cases).toEqual(v1Dump.cases);
    expect(after.volumes).toEqual(v1Dump.volumes);
    const bytes = vols.reduce((s, v) => s + v.data.byteLength, 0);
    expect(await listDatasets(db)).toEqual([
      { ...v1Dataset, status: 'complete', bytes, casesWithProblems: 1 },
    ]);
    expect((await findDatasetByName(db, 'Dataset002_Heart'))?.id).toBe('ds-old');
    const c = await loadCaseVolumes(db, 'ds-old', 'la_004');
    expect(c!.images[0].data).toEqual(vols[2].data);
    expect(c!.label!.data).toEqual(vols[3].data);
    expect(c!.label!.data).toBeInstanceOf(Uint8Array);

    // The migrated database has exactly the schema of a fresh one, and works like one.
    const fresh = await freshStore();
    expect(describeSchema(db)).toEqual(describeSchema(fresh.db));
    const res = await importDataset(db, meta('Dataset002_Heart'), caseStream([makeCase(1)]), {
      env: noEnv,
    });
    expect(res.replacedId).toBe('ds-old');
    expect((await dump(db)).volumes.some(([k]) => (k as string[])[0] === 'ds-old')).toBe(false);
  });

  it('migrates a v2 database (datasets, federation memberships) without losing data; the site key store starts empty', async () => {
    const factory = new IDBFactory();
    // The v2 layout, made by the released migrations 1 and 2 (migrations are never edited).
    const req = factory.open(DB_NAME, 2);
    req.onupgradeneeded = () => {
      const run = async () => {
        for (const m of MIGRATIONS.filter((x) => x.version <= 2))
          await m.up(wrap(req.result) as never, wrap(req.transaction!) as never);
      };
      void run().catch((e) => {
        console.error(e);
        req.transaction!.abort();
      });
    };
    const v2 = (await wrap(req)) as unknown as StoreDB;
    expect([...v2.objectStoreNames]).not.toContain('identity');
    const res = await importDataset(
      v2,
      meta('Dataset007_Old'),
      caseStream([makeCase(1), makeCase(2)]),
      { env: noEnv },
    );
    await saveMembership(v2, {
      datasetId: res.dataset.id,
      federationId: 'ws://r/fed|tok',
      relayUrl: 'ws://r/fed',
      token: 'tok',
      siteName: 'a',
      siteId: 'site-1',
      tiny: false,
      backend: 'cpu',
      status: 'running',
      round: 2,
    });
    const before = await dump(v2);
    v2.close();

    const db = await openStore({ factory, env: noEnv });
    expect(db.version).toBe(DB_VERSION);
    const after = await dump(db);
    expect(after).toEqual({ ...before, identity: [], hostedFederations: [], egressLog: [] });
    expect(before.volumes.length).toBeGreaterThan(0);
    expect((await loadMembership(db, res.dataset.id, 'ws://r/fed|tok'))?.siteId).toBe('site-1');
    expect(await loadSiteKey(db)).toBeUndefined();
    const { identity, created } = await siteIdentity(siteKeyStore(db));
    expect(created).toBe(true);
    expect((await loadSiteKey(db))?.fingerprint).toBe(identity.fingerprint);
  });

  it('migrates a v3 database (dataset, membership, site key) to v4 without losing data; hosted federations start empty', async () => {
    const factory = new IDBFactory();
    // The v3 layout, made by the released migrations 1–3.
    const req = factory.open(DB_NAME, 3);
    req.onupgradeneeded = () => {
      const run = async () => {
        for (const m of MIGRATIONS.filter((x) => x.version <= 3))
          await m.up(wrap(req.result) as never, wrap(req.transaction!) as never);
      };
      void run().catch((e) => {
        console.error(e);
        req.transaction!.abort();
      });
    };
    const v3 = (await wrap(req)) as unknown as StoreDB;
    expect([...v3.objectStoreNames]).not.toContain('hostedFederations');
    const res = await importDataset(v3, meta('Dataset008_Three'), caseStream([makeCase(1)]), {
      env: noEnv,
    });
    await saveMembership(v3, {
      datasetId: res.dataset.id,
      federationId: 'workshop:wk|wk',
      relayUrl: 'workshop:wk',
      token: 'wk',
      siteName: 'b',
      siteId: 'site-2',
      tiny: false,
      backend: 'cpu',
      status: 'running',
      round: 1,
    });
    const { identity } = await siteIdentity(siteKeyStore(v3));
    const before = await dump(v3);
    v3.close();

    const db = await openStore({ factory, env: noEnv });
    expect(db.version).toBe(DB_VERSION);
    const after = await dump(db);
    // The key pair holds CryptoKeys: compare the identity store by fingerprint, the rest whole.
    const { identity: idAfter, hostedFederations, egressLog, ...restAfter } = after;
    const { identity: idBefore, ...restBefore } = before;
    expect(restAfter).toEqual(restBefore);
    expect(hostedFederations).toEqual([]);
    expect(egressLog).toEqual([]);
    expect(idAfter.length).toBe(1);
    expect(idBefore.length).toBe(1);
    expect((await loadSiteKey(db))?.fingerprint).toBe(identity.fingerprint);
    expect((await loadMembership(db, res.dataset.id, 'workshop:wk|wk'))?.siteId).toBe('site-2');
    await saveHostedFederation(hostedRows(db), {
      code: 'wk',
      token: 'wk',
      state: {
        config: {
          method: 'fedavg',
          configuration: '3d_fullres',
          rounds: 2,
          itersPerRound: 1,
          minSites: 1,
          roundDeadlineMs: 1,
          weighting: 'uniform',
          encoding: 'fp16',
          expectedSites: 1,
        },
        phase: 'join',
        round: 0,
        sites: [],
        history: [],
      },
      globalEntries: null,
      globalBytes: null,
      updatedAt: 1,
    });
    expect((await unfinishedHostedFederations(hostedRows(db))).map((x) => x.code)).toEqual(['wk']);
  });

  it('gives v1 datasets sharing a name distinct names, as v2 requires', async () => {
    const factory = new IDBFactory();
    const { v1Dataset } = await createV1Database(factory);
    const v1 = (await wrap(factory.open(DB_NAME, 1))) as unknown as IDBPDatabase;
    await v1.put('datasets', { ...v1Dataset, id: 'ds-old2', numCases: 0 });
    await v1.put('datasets', { ...v1Dataset, id: 'ds-old3', numCases: 0 });
    v1.close();
    const db = await openStore({ factory, env: noEnv });
    expect((await listDatasets(db)).map((d) => [d.id, d.name])).toEqual([
      ['ds-old', 'Dataset002_Heart'],
      ['ds-old2', 'Dataset002_Heart (2)'],
      ['ds-old3', 'Dataset002_Heart (3)'],
    ]);
  });

  it('a fresh database has every store, keyed by dataset id first', async () => {
    const { db } = await freshStore();
    const schema = describeSchema(db);
    expect(schema.map((s) => s.name).sort()).toEqual([
      'cases',
      'checkpoints',
      'datasets',
      'egressLog',
      'fedState',
      'fingerprints',
      'hostedFederations',
      'identity',
      'imports',
      'plans',
      'preprocessed',
      'volumes',
    ]);
    for (const s of schema) {
      if (s.name === 'datasets')
        expect(s.indexes).toEqual([{ name: 'byName', keyPath: 'name', unique: true }]);
      else if (s.name === 'identity') expect(s.keyPath).toBe('id');
      else if (s.name === 'hostedFederations') expect(s.keyPath).toBe('code');
      else if (s.name === 'egressLog') expect([s.keyPath, s.autoIncrement]).toEqual(['seq', true]);
      else if (s.name !== 'imports') expect((s.keyPath as string[])[0]).toBe('datasetId');
    }
    // Without a factory, openStore goes through idb's openDB on the global indexedDB: same schema.
    const viaGlobal = await openStore({ env: noEnv, name: `global-${Date.now()}` });
    expect(describeSchema(viaGlobal)).toEqual(schema);
  });
});

describe('store: crashed imports are swept on open', () => {
  /** Starts an import that stalls after `n` cases, as a tab that is closed mid-import would. */
  async function stalledImport(db: StoreDB, n: number, env = noEnv) {
    let resume!: () => void;
    const gate = new Promise<void>((r) => (resume = r));
    let staged!: () => void;
    const stagedN = new Promise<void>((r) => (staged = r));
    const onProgress = (p: ImportProgress) =>
      p.casesDone === n && p.phase === 'staging' && staged();
    const done = importDataset(
      db,
      meta('Stalled'),
      caseStream(
        [0, 1, 2, 3].map((i) => makeCase(i)),
        { [n]: () => gate },
      ),
      { env, onProgress },
    );
    await stagedN;
    return { resume, done };
  }

  it('keeps a live import, sweeps it once stale, and the stalled import then fails without a trace', async () => {
    const { db, factory } = await freshStore();
    await importDataset(db, meta('Kept'), caseStream([makeCase(9)]), { env: noEnv });
    const before = await dump(db);
    const imp = await stalledImport(db, 2);
    const staged = await dump(db);
    expect(staged.imports).toHaveLength(1);
    expect(staged.volumes.length).toBe(before.volumes.length + 4);

    // Another tab opening the database: the journal entry is fresh, so the import may be alive.
    const other = await openStore({ factory, env: noEnv });
    expect(await dump(other)).toEqual(staged);
    // Once the entry is older than staleAfterMs, it counts as crashed.
    const later = await openStore({ factory, env: { now: () => Date.now() + 11 * 60_000 } });
    expect(await dump(later)).toEqual(before);

    imp.resume();
    await expect(imp.done).rejects.toThrow(/was swept/);
    expect(await dump(db)).toEqual(before);
  });

  it('with Web Locks, sweeps exactly the imports whose lock nobody holds', async () => {
    const held = new Set<string>();
    const locks: LocksLike = {
      async request(name, opts, cb) {
        if (held.has(name)) {
          if (opts.ifAvailable) return cb(null);
          throw new Error('test lock manager does not queue');
        }
        held.add(name);
        try {
          return await cb({ name });
        } finally {
          held.delete(name);
        }
      },
    };
    const env = { locks, now: () => Date.now() + 3600_000 }; // everything looks stale by age
    const { db, factory } = await freshStore({ env });
    await importDataset(db, meta('Kept'), caseStream([makeCase(9)]), { env });
    expect(held.size).toBe(0);
    const before = await dump(db);

    // Remnants of a tab that died mid-import: journal + staged records, no lock held.
    await db.put('imports', {
      importId: 'ds-dead',
      name: 'Dead',
      startedAt: Date.now(),
      touchedAt: Date.now(),
    });
    const v = makeVolume(5);
    const { data, ...h } = v;
    await db.put('cases', {
      datasetId: 'ds-dead',
      caseId: 'c',
      images: [{ ...h, byteLength: data.byteLength }],
      problems: [],
      bytes: data.byteLength,
    });
    await db.put('volumes', {
      datasetId: 'ds-dead',
      caseId: 'c',
      role: 'image:0',
      dtype: 'float32',
      data: data.buffer as ArrayBuffer,
      byteLength: data.byteLength,
    });
    await db.put('fingerprints', { datasetId: 'ds-dead', caseId: 'c' });

    const imp = await stalledImport(db, 1, env);
    expect(held.size).toBe(1);
    const withLive = await dump(db);

    const reopened = await openStore({ factory, env });
    const after = await dump(reopened);
    // The dead import is gone, the live one (lock held) kept despite its "stale" age.
    const strip = (d: typeof withLive, id: string) =>
      Object.fromEntries(
        Object.entries(d).map(([s, rows]) => [
          s,
          rows.filter(([k]) => (Array.isArray(k) ? k[0] : k) !== id),
        ]),
      );
    expect(after).toEqual(strip(withLive, 'ds-dead'));
    expect(after.imports.map(([k]) => k)).toEqual([
      withLive.imports.find(([k]) => k !== 'ds-dead')![0],
    ]);

    imp.resume();
    const res = await imp.done;
    expect(held.size).toBe(0);
    expect((await listDatasets(reopened)).map((d) => d.name)).toEqual(['Kept', 'Stalled']);
    expect((await dump(reopened)).imports).toEqual([]);
    expect(res.dataset.numCases).toBe(4);
    expect(before.datasets).toHaveLength(1);
  });

  it('skipSweep leaves remnants in place', async () => {
    const { db, factory } = await freshStore();
    await db.put('imports', { importId: 'ds-x', name: 'X', startedAt: 0, touchedAt: 0 });
    expect(
      (await dump(await openStore({ factory, env: noEnv, skipSweep: true }))).imports,
    ).toHaveLength(1);
    expect((await dump(await openStore({ factory, env: noEnv }))).imports).toHaveLength(0);
  });
});
