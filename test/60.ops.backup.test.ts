// src/ops/backup.ts on real temp files: online backups under a concurrent writer (another
// thread), restore into a live database whose other connections then see the new content,
// integrity checks, the scheduled-backup helpers, the reader worker's backup/check messages,
// and every bad input leaving the files as they were.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { Database as DB } from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { addonPath, loadAddon } from '../src/engine/native';
import { ReaderPool } from '../src/engine/readerPool';
import {
  backupDatabase,
  backupFileName,
  checkDatabaseFile,
  listBackups,
  newestVerifiedBackup,
  pruneBackups,
  restoreDatabase,
} from '../src/ops/backup';
import { RpcError } from '../src/protocol/errors';
import { ROOT, useTempDir } from './helpers/server';

const tmp = useTempDir('sqlite-rpc-backup-');
const nativeBinding = loadAddon();
let n = 0;
const file = (name = 'db') => path.join(tmp(), `${name}-${++n}.sqlite`);

const open: DB[] = [];
function conn(p: string, o: { readonly?: boolean; timeout?: number } = {}): DB {
  const db = new Database(p, { readonly: o.readonly ?? false, timeout: o.timeout ?? 5000, nativeBinding: nativeBinding as unknown as string });
  open.push(db);
  return db;
}
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
});

/** A WAL database with t(id, batch, v): `batches` transactions of 10 rows each. */
function makeDb(p: string, o: { batches?: number; pageSize?: number; wal?: boolean; blob?: number } = {}): string {
  const db = new Database(p, { nativeBinding: nativeBinding as unknown as string });
  if (o.pageSize) db.pragma(`page_size = ${o.pageSize}`);
  if (o.wal ?? true) db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, batch INT NOT NULL, v BLOB); CREATE INDEX t_batch ON t(batch)');
  const ins = db.prepare(`INSERT INTO t(batch, v) VALUES (?, randomblob(${o.blob ?? 100}))`);
  db.transaction(() => {
    for (let b = 1; b <= (o.batches ?? 100); b++) for (let i = 0; i < 10; i++) ins.run(b);
  })();
  db.close();
  return p;
}

const count = (db: DB, sql = 'SELECT count(*) FROM t') => Number(db.prepare(sql).pluck().get());

function sha(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

/** Every file in the dir with its content hash: "nothing changed" means this is equal before and after. */
function dirState(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    out[name] = fs.statSync(p).isFile() ? sha(p) : 'dir';
  }
  return out;
}

function subdir(name: string): string {
  const d = path.join(tmp(), `${name}-${++n}`);
  fs.mkdirSync(d);
  return d;
}

async function rejection(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RpcError);
    return e as RpcError;
  }
  throw new Error('expected a rejection');
}

/** Damage a b-tree page in the middle of the file: the header stays valid, integrity_check fails. */
function corrupt(p: string): void {
  const db = new Database(p, { readonly: true, nativeBinding: nativeBinding as unknown as string });
  const ps = Number(db.pragma('page_size', { simple: true }));
  const pc = Number(db.pragma('page_count', { simple: true }));
  db.close();
  const fd = fs.openSync(p, 'r+');
  fs.writeSync(fd, Buffer.alloc(ps / 2, 0x55), 0, ps / 2, ps * (pc - 2) + 100);
  fs.closeSync(fd);
}

/** What Python's stdlib sqlite3 sees in a file. */
function python(p: string): { rows: number; integrity: string; journal: string } {
  const script = [
    'import json, sqlite3, sys',
    'c = sqlite3.connect(sys.argv[1])',
    'print(json.dumps({"rows": c.execute("SELECT count(*) FROM t").fetchone()[0],',
    '  "integrity": c.execute("PRAGMA integrity_check").fetchone()[0],',
    '  "journal": c.execute("PRAGMA journal_mode").fetchone()[0]}))',
  ].join('\n');
  const r = spawnSync('python3', ['-c', script, p], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// A writer in another thread: transactions of 10 rows with the same batch number, back to
// back, until told to stop; `committed` holds the last committed batch.
const WRITER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.bs3);
const db = new Database(workerData.path, { timeout: 10000 });
db.pragma('synchronous = OFF');
const ins = db.prepare('INSERT INTO t(batch, v) VALUES (?, randomblob(200))');
const stop = new Int32Array(workerData.stop);
const committed = new Int32Array(workerData.committed);
let batch = workerData.start;
parentPort.postMessage('ready');
while (Atomics.load(stop, 0) === 0) {
  batch++;
  db.exec('BEGIN IMMEDIATE');
  for (let i = 0; i < 10; i++) ins.run(batch);
  db.exec('COMMIT');
  Atomics.store(committed, 0, batch);
}
db.close();
parentPort.postMessage(batch);
`;

function startWriter(p: string, start: number) {
  const stop = new SharedArrayBuffer(4);
  const committed = new SharedArrayBuffer(4);
  Atomics.store(new Int32Array(committed), 0, start);
  const w = new Worker(WRITER, { eval: true, workerData: { path: p, start, stop, committed, bs3: path.join(ROOT, 'node_modules', 'better-sqlite3') } });
  const ready = new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  });
  return {
    ready,
    committed: () => Atomics.load(new Int32Array(committed), 0),
    stop: async (): Promise<number> => {
      const last = new Promise<number>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      Atomics.store(new Int32Array(stop), 0, 1);
      return last;
    },
  };
}

/** The backup holds batches 1..max, every one complete (10 rows): a prefix of the commits. */
function batchesOf(p: string): { max: number; complete: boolean } {
  const db = conn(p, { readonly: true });
  const rows = db.prepare('SELECT batch, count(*) AS n FROM t GROUP BY batch ORDER BY batch').all() as Array<{ batch: number; n: number }>;
  return { max: rows.length ? rows[rows.length - 1].batch : 0, complete: rows.every((r, i) => r.batch === i + 1 && r.n === 10) };
}

describe('backupDatabase', () => {
  it('writes a verified single-file copy that Python opens, with progress down to 0', async () => {
    const src = makeDb(file(), { batches: 400, blob: 300 });
    const dest = file('copy');
    const progress: Array<{ totalPages: number; remainingPages: number }> = [];
    const source = conn(src, { readonly: true });
    const r = await backupDatabase(source, dest, { nativeBinding, onProgress: (p) => progress.push(p) });

    expect(r.dest).toBe(path.resolve(dest));
    expect(r.integrity).toBe('ok');
    expect(r.bytes).toBe(fs.statSync(dest).size);
    expect(r.pages).toBe(Number(source.pragma('page_count', { simple: true })));
    expect(r.pages).toBeGreaterThan(256); // several steps
    expect(progress.length).toBeGreaterThan(1);
    expect(new Set(progress.map((p) => p.totalPages))).toEqual(new Set([r.pages]));
    for (let i = 1; i < progress.length; i++) expect(progress[i].remainingPages).toBeLessThan(progress[i - 1].remainingPages);
    expect(progress.at(-1)!.remainingPages).toBe(0);
    expect(source.inTransaction).toBe(false);

    // A plain single file: rollback journal in the header, nothing beside it, no temp file left.
    const header = fs.readFileSync(dest).subarray(18, 20);
    expect([...header]).toEqual([1, 1]);
    expect(fs.readdirSync(tmp()).filter((f) => f.startsWith(path.basename(dest)) || f.startsWith(`.${path.basename(dest)}`))).toEqual([path.basename(dest)]);
    expect(python(dest)).toEqual({ rows: 4000, integrity: 'ok', journal: 'delete' });
    expect(fs.existsSync(`${dest}-wal`)).toBe(false);
  });

  it('finishes under a writer committing in a tight loop in another thread, holding every commit made before it started and no half transaction', async () => {
    const src = makeDb(file(), { batches: 2000, blob: 200 });
    const writer = startWriter(src, 2000);
    await writer.ready;
    try {
      const source = conn(src, { readonly: true });
      // Let the writer get going, then note what is committed before the backup starts.
      while (writer.committed() < 2100) await new Promise((r) => setTimeout(r, 5));
      const before = writer.committed();
      const dest = file('live');
      const r = await backupDatabase(source, dest, { nativeBinding });
      const after = writer.committed();
      expect(r.integrity).toBe('ok');
      const got = batchesOf(dest);
      expect(got.complete).toBe(true);
      expect(got.max).toBeGreaterThanOrEqual(before);
      expect(got.max).toBeLessThanOrEqual(after);
      // The writer was not held up: it committed while the copy ran.
      expect(after).toBeGreaterThan(before);
      expect(python(dest).integrity).toBe('ok');
    } finally {
      const last = await writer.stop();
      expect(last).toBeGreaterThan(2100);
    }
    // And the source itself holds every batch the writer committed.
    expect(batchesOf(src).complete).toBe(true);
  });

  it('replaces an existing backup only with overwrite', async () => {
    const src = makeDb(file(), { batches: 5 });
    const dest = file('old');
    makeDb(dest, { batches: 1, wal: false });
    const r = await backupDatabase(conn(src, { readonly: true }), dest, { nativeBinding, overwrite: true });
    expect(r.pages).toBeGreaterThan(0);
    expect(count(conn(dest, { readonly: true }))).toBe(50);
  });

  describe('refuses bad input, leaving every file as it was and no temp file behind', () => {
    async function refused(setup: () => { source: DB; dest: string; overwrite?: boolean; watch: string }, re: RegExp): Promise<RpcError> {
      const { source, dest, overwrite, watch } = setup();
      const before = dirState(watch);
      const err = await rejection(backupDatabase(source, dest, { nativeBinding, overwrite }));
      expect(err.data.kind).toBe('BackupFailed');
      expect(err.message).toMatch(re);
      expect(dirState(watch)).toEqual(before);
      return err;
    }

    it('destination folder missing', async () => {
      const d = subdir('nofolder');
      await refused(() => ({ source: conn(makeDb(path.join(d, 'a.db')), { readonly: true }), dest: path.join(d, 'missing', 'b.db'), watch: d }), /destination folder .*missing does not exist/);
    });

    it('destination folder not writable', async () => {
      const d = subdir('ro');
      const src = makeDb(path.join(d, 'a.db'));
      // root writes anywhere a mode allows nothing; /sys refuses even root.
      let target = '/sys';
      if (process.getuid?.() !== 0) {
        target = path.join(d, 'locked');
        fs.mkdirSync(target, { mode: 0o555 });
      }
      await refused(() => ({ source: conn(src, { readonly: true }), dest: path.join(target, 'b.db'), watch: d }), /destination folder .* is not writable/);
      if (target !== '/sys') expect(fs.readdirSync(target)).toEqual([]);
    });

    it('destination exists and overwrite is not set', async () => {
      const d = subdir('exists');
      const src = makeDb(path.join(d, 'a.db'));
      const dest = makeDb(path.join(d, 'b.db'), { batches: 1, wal: false });
      await refused(() => ({ source: conn(src, { readonly: true }), dest, watch: d }), /already exists/);
    });

    it('destination is the database itself (same path, a symlink or a hard link to it)', async () => {
      const d = subdir('self');
      const src = makeDb(path.join(d, 'a.db'));
      fs.symlinkSync(src, path.join(d, 'sym.db'));
      fs.linkSync(src, path.join(d, 'hard.db'));
      for (const dest of [src, path.join(d, 'sym.db'), path.join(d, 'hard.db'), `${src}-wal`]) {
        await refused(() => ({ source: conn(src, { readonly: true }), dest, overwrite: true, watch: d }), /is the database itself/);
      }
    });

    it('source is not a database', async () => {
      const d = subdir('junk');
      const junk = path.join(d, 'junk.db');
      fs.writeFileSync(junk, 'this is a text file, not a SQLite database; '.repeat(40));
      await refused(() => ({ source: conn(junk, { readonly: true }), dest: path.join(d, 'b.db'), watch: d }), /is not a SQLite database/);
    });

    it('source fails integrity_check: the copy does', async () => {
      const d = subdir('corrupt');
      const src = makeDb(path.join(d, 'a.db'), { batches: 200, wal: false });
      corrupt(src);
      const err = await refused(() => ({ source: conn(src, { readonly: true }), dest: path.join(d, 'b.db'), watch: d }), /integrity_check of the copy failed|malformed/);
      if (/integrity_check/.test(err.message)) expect(err.data.problems!.length).toBeGreaterThan(0);
    });

    it('destination is a directory, or a live database with a -wal beside it', async () => {
      const d = subdir('dir');
      const src = makeDb(path.join(d, 'a.db'));
      fs.mkdirSync(path.join(d, 'sub'));
      await refused(() => ({ source: conn(src, { readonly: true }), dest: path.join(d, 'sub'), overwrite: true, watch: d }), /is a directory/);
      const live = makeDb(path.join(d, 'live.db'));
      const holder = conn(live); // keeps live.db-wal in place
      count(holder);
      await refused(() => ({ source: conn(src, { readonly: true }), dest: live, overwrite: true, watch: d }), /-wal file beside it/);
    });

    it('source connection inside a transaction', async () => {
      const d = subdir('intx');
      const source = conn(makeDb(path.join(d, 'a.db')));
      source.exec('BEGIN');
      await refused(() => ({ source, dest: path.join(d, 'b.db'), watch: d }), /inside a transaction/);
      expect(source.inTransaction).toBe(true);
    });
  });
});

describe('checkDatabaseFile', () => {
  it('says ok for a sound file, in both modes, without changing it', () => {
    const p = makeDb(file(), { wal: false });
    const before = sha(p);
    expect(checkDatabaseFile(p, 'quick', { nativeBinding })).toEqual({ ok: true, problems: [] });
    expect(checkDatabaseFile(p, 'full', { nativeBinding })).toEqual({ ok: true, problems: [] });
    expect(sha(p)).toBe(before);
    expect(fs.existsSync(`${p}-wal`)).toBe(false);
  });

  it('reports a missing file, a directory and a non-database as problems, creating nothing', () => {
    const missing = path.join(tmp(), 'nope.db');
    const r1 = checkDatabaseFile(missing, 'quick', { nativeBinding });
    expect(r1.ok).toBe(false);
    expect(r1.problems[0]).toMatch(/no such file/);
    expect(fs.existsSync(missing)).toBe(false);

    expect(checkDatabaseFile(subdir('d'), 'full', { nativeBinding }).problems[0]).toMatch(/not a regular file/);

    const junk = path.join(tmp(), 'junk.txt');
    fs.writeFileSync(junk, 'hello\n'.repeat(100));
    const r3 = checkDatabaseFile(junk, 'full', { nativeBinding });
    expect(r3).toEqual({ ok: false, problems: [`${junk}: not a SQLite database (no SQLite header)`] });

    // The right magic but garbage after it: SQLite's own verdict.
    const fake = path.join(tmp(), 'fake.db');
    fs.writeFileSync(fake, Buffer.concat([Buffer.from('SQLite format 3\0', 'latin1'), Buffer.alloc(4080, 0xff)]));
    const r4 = checkDatabaseFile(fake, 'quick', { nativeBinding });
    expect(r4.ok).toBe(false);
    expect(r4.problems[0]).toMatch(/not a SQLite database|malformed|SQLITE_/);
  });

  it('lists the problems of a damaged database, one per line', () => {
    const p = makeDb(file(), { batches: 200, wal: false });
    corrupt(p);
    for (const mode of ['quick', 'full'] as const) {
      const r = checkDatabaseFile(p, mode, { nativeBinding });
      expect(r.ok).toBe(false);
      expect(r.problems.length).toBeGreaterThan(1);
      expect(r.problems.every((l) => !l.includes('\n') && l.length > 0)).toBe(true);
    }
  });
});

describe('restoreDatabase', () => {
  it('replaces a live WAL database: another open connection sees the restored content, its statements re-prepare', async () => {
    const backupSrc = makeDb(file('good'), { batches: 30 });
    const backup = file('good-backup');
    await backupDatabase(conn(backupSrc, { readonly: true }), backup, { nativeBinding });

    const target = makeDb(file('live'), { batches: 7 });
    const reader = conn(target);
    const writer = conn(target);
    writer.exec('CREATE TABLE extra(x); INSERT INTO extra VALUES (1)');
    const countT = reader.prepare('SELECT count(*) FROM t').pluck();
    expect(Number(countT.get())).toBe(70);
    expect(count(reader, 'SELECT count(*) FROM extra')).toBe(1);

    // A reader inside a transaction keeps its snapshot until it ends (SQLite's isolation).
    const pinned = conn(target);
    pinned.exec('BEGIN');
    expect(count(pinned)).toBe(70);

    const progress: number[] = [];
    const r = await restoreDatabase(backup, target, { nativeBinding, onProgress: (p) => progress.push(p.remainingPages) });
    expect(r.pages).toBe(Number(conn(backup, { readonly: true }).pragma('page_count', { simple: true })));
    expect(progress.at(-1)).toBe(0);

    expect(Number(countT.get())).toBe(300); // the statement prepared before the restore
    expect(() => reader.prepare('SELECT count(*) FROM extra').get()).toThrow(/no such table: extra/);
    expect(count(pinned)).toBe(70);
    pinned.exec('COMMIT');
    expect(count(pinned)).toBe(300);
    expect(String(reader.pragma('journal_mode', { simple: true }))).toBe('wal');
    writer.prepare('INSERT INTO t(batch) VALUES (31)').run();
    expect(count(reader)).toBe(301);
    expect(checkDatabaseFile(target, 'full', { nativeBinding }).ok).toBe(true);
  });

  it('waits for a writer that releases the lock within busyTimeoutMs', async () => {
    const backup = makeDb(file('b'), { batches: 3, wal: false });
    const target = makeDb(file('t'), { batches: 9 });
    const w = conn(target);
    w.exec('BEGIN IMMEDIATE');
    w.prepare('INSERT INTO t(batch) VALUES (99)').run();
    setTimeout(() => w.exec('COMMIT'), 150);
    await restoreDatabase(backup, target, { nativeBinding, busyTimeoutMs: 10_000 });
    expect(w.inTransaction).toBe(false);
    expect(count(conn(target))).toBe(30); // the writer's commit came first, then the restore
  });

  it('fails with "database is locked" and leaves the target alone when a writer holds it too long', async () => {
    const backup = makeDb(file('b'), { batches: 3, wal: false });
    const target = makeDb(file('t'), { batches: 9 });
    const w = conn(target);
    w.exec('BEGIN IMMEDIATE');
    w.prepare('INSERT INTO t(batch) VALUES (99)').run();
    const err = await rejection(restoreDatabase(backup, target, { nativeBinding, busyTimeoutMs: 200 }));
    expect(err.data.kind).toBe('BackupFailed');
    expect(err.message).toMatch(/database is locked/);
    w.exec('COMMIT');
    expect(count(conn(target))).toBe(91);
  });

  it('converts a backup whose page size differs from the WAL target', async () => {
    const backup = makeDb(file('small-pages'), { batches: 50, pageSize: 1024, wal: false });
    const target = makeDb(file('t'), { batches: 2 });
    const other = conn(target);
    expect(Number(other.pragma('page_size', { simple: true }))).toBe(4096);
    const r = await restoreDatabase(backup, target, { nativeBinding });
    expect(r.page_size_converted).toEqual({ from: 1024, to: 4096 });
    expect(count(other)).toBe(500);
    expect(Number(other.pragma('page_size', { simple: true }))).toBe(4096);
    expect(String(other.pragma('journal_mode', { simple: true }))).toBe('wal');
    expect(fs.readdirSync(path.dirname(target)).filter((f) => f.includes('restore-tmp'))).toEqual([]);
  });

  it('creates a missing target, in WAL mode', async () => {
    const backup = makeDb(file('b'), { batches: 4, wal: false });
    const target = path.join(subdir('new'), 'fresh.db');
    await restoreDatabase(backup, target, { nativeBinding });
    const db = conn(target);
    expect(count(db)).toBe(40);
    expect(String(db.pragma('journal_mode', { simple: true }))).toBe('wal');
  });

  describe('refuses bad input, leaving the target as it was', () => {
    async function refused(source: string, target: string, re: RegExp): Promise<void> {
      const dir = path.dirname(target);
      const before = dirState(dir);
      const err = await rejection(restoreDatabase(source, target, { nativeBinding }));
      expect(err.data.kind).toBe('BackupFailed');
      expect(err.message).toMatch(re);
      expect(dirState(dir)).toEqual(before);
    }

    it('source missing, empty, not a database, or failing integrity_check', async () => {
      const d = subdir('bad-src');
      const target = makeDb(path.join(d, 'target.db'), { wal: false });
      await refused(path.join(d, 'missing.db'), target, /does not exist/);
      fs.writeFileSync(path.join(d, 'empty.db'), '');
      await refused(path.join(d, 'empty.db'), target, /is empty/);
      fs.writeFileSync(path.join(d, 'junk.db'), 'not sqlite '.repeat(100));
      await refused(path.join(d, 'junk.db'), target, /is not a SQLite database/);
      const damaged = makeDb(path.join(d, 'damaged.db'), { batches: 200, wal: false });
      corrupt(damaged);
      await refused(damaged, target, /fails integrity_check/);
    });

    it('target not a database, or the source itself', async () => {
      const d = subdir('bad-tgt');
      const backup = makeDb(path.join(d, 'b.db'), { wal: false });
      fs.writeFileSync(path.join(d, 'notes.txt'), 'my notes '.repeat(100));
      await refused(backup, path.join(d, 'notes.txt'), /is not a SQLite database; not overwriting it/);
      await refused(backup, backup, /same file/);
    });
  });
});

describe('scheduled-backup helpers', () => {
  it('names sort by time and list newest first, never temp files or other databases', () => {
    const d = subdir('sched');
    const db = '/data/app.db';
    const times = ['2026-01-02T03:04:05.006Z', '2026-11-26T16:58:00.123Z', '2025-12-31T23:59:59.999Z'].map((t) => new Date(t));
    expect(backupFileName(db, times[1])).toMatch(/^app\.db\.[0-9a-f]{8}\.20261126T165800123Z\.backup$/);
    // Same file name in another folder: another tag, so never taken for this database's backup.
    expect(backupFileName('/elsewhere/app.db', times[1])).not.toBe(backupFileName(db, times[1]));
    fs.writeFileSync(path.join(d, backupFileName('/elsewhere/app.db', times[1])), '');
    for (const t of times) fs.writeFileSync(path.join(d, backupFileName(db, t)), '');
    for (const stray of ['.app.db.20261126T165800123Z.backup.tmp-1-ab', 'other.db.20270101T000000000Z.backup', 'app.db.2026.backup', 'app.db']) {
      fs.writeFileSync(path.join(d, stray), '');
    }
    const names = times.map((t) => backupFileName(db, t));
    expect([...names].sort()).toEqual(names.slice().sort((a, b) => a.localeCompare(b)));
    const list = listBackups(d, db);
    expect(list.map((b) => b.at.toISOString())).toEqual(['2026-11-26T16:58:00.123Z', '2026-01-02T03:04:05.006Z', '2025-12-31T23:59:59.999Z']);
    expect(list.map((b) => b.path)).toEqual([times[1], times[0], times[2]].map((t) => path.join(d, backupFileName(db, t))));
    expect(listBackups(path.join(d, 'missing'), db)).toEqual([]);

    const removed = pruneBackups(d, db, 1);
    expect(removed).toEqual([times[0], times[2]].map((t) => path.join(d, backupFileName(db, t))));
    expect(listBackups(d, db).length).toBe(1);
    expect(fs.existsSync(path.join(d, 'other.db.20270101T000000000Z.backup'))).toBe(true);
    expect(() => pruneBackups(d, db, -1)).toThrow(RangeError);
  });

  it('newestVerifiedBackup skips a damaged newest backup', async () => {
    const d = subdir('verified');
    const src = makeDb(file(), { batches: 200 });
    const db = path.join(d, 'app.db');
    const older = path.join(d, backupFileName(db, new Date('2026-01-01T00:00:00Z')));
    const newer = path.join(d, backupFileName(db, new Date('2026-06-01T00:00:00Z')));
    expect(newestVerifiedBackup(d, db, { nativeBinding })).toBeNull();
    await backupDatabase(conn(src, { readonly: true }), older, { nativeBinding });
    await backupDatabase(conn(src, { readonly: true }), newer, { nativeBinding });
    expect(newestVerifiedBackup(d, db, { nativeBinding })).toBe(newer);
    corrupt(newer);
    expect(newestVerifiedBackup(d, db, { nativeBinding })).toBe(older);
  });
});

describe('reader worker messages', () => {
  it("'backup' and 'check' run in the worker on the worker's database", async () => {
    const src = makeDb(file(), { batches: 50 });
    const pool = new ReaderPool(
      { path: src, addonPath: addonPath(), codec: 'msgpack', cacheSize: 8, busyTimeoutMs: 5000, foreignKeys: false, synchronous: 'normal' },
      1,
      () => undefined,
    );
    try {
      const dest = file('from-worker');
      const ok = await pool.send(0, { t: 'backup', dest, overwrite: false });
      expect(ok.error).toBeUndefined();
      expect(ok.backup).toMatchObject({ dest, integrity: 'ok', bytes: fs.statSync(dest).size });
      expect(count(conn(dest, { readonly: true }))).toBe(500);

      const again = await pool.send(0, { t: 'backup', dest, overwrite: false });
      expect(again.backup).toBeUndefined();
      expect(again.error).toMatchObject({ kind: 'BackupFailed' });
      expect(again.error!.message).toMatch(/already exists/);

      expect((await pool.send(0, { t: 'check', mode: 'full' })).check).toEqual({ ok: true, problems: [] });
      expect((await pool.send(0, { t: 'check', mode: 'quick' })).check).toEqual({ ok: true, problems: [] });
    } finally {
      await pool.close();
    }
  });
});
