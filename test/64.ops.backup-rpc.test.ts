// Backup, restore and check over RPC, scheduled backups and recovery at open, through the
// real binary (issue 6, items 4, 5 and 8).
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dbPath, RpcClient, rpcError, useTempDir } from './helpers/server';

const tmp = useTempDir('sqlite-rpc-backup-rpc-');

/** Python's stdlib sqlite3 opens the file and reports integrity_check and a query's result. */
function pythonReads(file: string, sql: string): { integrity: string; rows: unknown[] } {
  const code = 'import json,sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nprint(json.dumps({"integrity": c.execute("PRAGMA integrity_check").fetchone()[0], "rows": c.execute(sys.argv[2]).fetchall()}))';
  return JSON.parse(execFileSync('python3', ['-c', code, file, sql], { encoding: 'utf8' }));
}

async function until<T>(fn: () => T | Promise<T>, what: string, ms = 20000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('backup over RPC', () => {
  it('takes a backup during 16 concurrent writers that holds every write acknowledged before it started', async () => {
    const file = dbPath(tmp());
    const dest = path.join(tmp(), 'during-writes.backup');
    const c = await RpcClient.start(['--synchronous', 'normal']);
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE w (writer INTEGER, seq INTEGER, PRIMARY KEY (writer, seq))');
      const acked = new Map<number, number>(); // writer -> highest seq acknowledged
      let stop = false;
      const writers = Array.from({ length: 16 }, async (_, i) => {
        const session = 100 + i;
        await c.open(session, file);
        for (let seq = 1; !stop; seq++) {
          await c.exec(session, 'INSERT INTO w VALUES (?, ?)', [i, seq]);
          acked.set(i, seq);
        }
      });
      await until(() => [...acked.values()].reduce((a, b) => a + b, 0) > 800, 'writes to pile up');
      const before = new Map(acked);
      const r = await c.request('backup', { path: file, dest });
      const during = [...acked.values()].reduce((a, b) => a + b, 0);
      stop = true;
      await Promise.all(writers);
      expect(r).toMatchObject({ dest, integrity: 'ok' });
      expect(r.pages).toBeGreaterThan(0);
      const py = pythonReads(dest, 'SELECT writer, max(seq), count(*) FROM w GROUP BY writer ORDER BY writer');
      expect(py.integrity).toBe('ok');
      const got = new Map((py.rows as number[][]).map(([w, max, n]) => [w, { max, n }]));
      for (const [w, seq] of before) {
        expect(got.get(w)?.max ?? 0, `writer ${w}`).toBeGreaterThanOrEqual(seq);
        expect(got.get(w)!.n, `writer ${w} has no gaps`).toBe(got.get(w)!.max);
      }
      // The writers kept going while the backup ran (it blocked nobody).
      expect(during).toBeGreaterThan([...before.values()].reduce((a, b) => a + b, 0));
      const m = (await c.request('metrics')).metrics;
      const b = m.find((x: any) => x.name === 'sqlite_rpc_backups_total').values.find((v: any) => v.labels.outcome === 'ok');
      expect(b.value).toBe(1);
    } finally {
      c.dispose();
    }
  });

  it('backs up a private :memory: database through its session', async () => {
    const dest = path.join(tmp(), 'memory.backup');
    const c = await RpcClient.start();
    try {
      await c.open(1, ':memory:');
      await c.exec(1, 'CREATE TABLE t (a)');
      await c.exec(1, "INSERT INTO t VALUES ('from memory')");
      // Pipelined: a write right behind the backup neither lands in it nor is lost by it.
      const [b, w] = await Promise.all([c.request('backup', { session: 1, dest }), c.exec(1, "INSERT INTO t VALUES ('after')")]);
      expect(b.integrity).toBe('ok');
      expect(w.changes).toBe(1);
      expect(pythonReads(dest, 'SELECT a FROM t').rows).toEqual([['from memory']]);
      expect(await c.all(1, 'SELECT a FROM t ORDER BY rowid')).toEqual([['from memory'], ['after']]);
    } finally {
      c.dispose();
    }
  });

  it('refuses a destination it cannot write, naming it, and leaves the database serving', async () => {
    const file = dbPath(tmp());
    const notADir = path.join(tmp(), 'plain-file');
    fs.writeFileSync(notADir, 'x');
    const c = await RpcClient.start();
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t (a)');
      for (const dest of [path.join(tmp(), 'no-such-dir', 'x.backup'), path.join(notADir, 'x.backup'), '/proc/sqlite-rpc.backup']) {
        const e = await rpcError(c.request('backup', { session: 1, dest }), -32010, 'BackupFailed');
        expect(e.message, dest).toContain(path.dirname(dest));
      }
      const exists = path.join(tmp(), 'exists.backup');
      fs.writeFileSync(exists, 'keep me');
      await rpcError(c.request('backup', { session: 1, dest: exists }), -32010, 'BackupFailed');
      expect(fs.readFileSync(exists, 'utf8')).toBe('keep me');
      await rpcError(c.request('backup', { session: 1, path: file, dest: exists }), -32602, 'InvalidParams');
      await c.exec(1, 'INSERT INTO t VALUES (1)');
      expect(await c.all(1, 'SELECT count(*) FROM t')).toEqual([[1]]);
    } finally {
      c.dispose();
    }
  });
});

describe('restore over RPC', () => {
  async function seeded(c: RpcClient, session: number, file: string, label: string): Promise<void> {
    await c.open(session, file);
    await c.exec(session, 'CREATE TABLE IF NOT EXISTS t (a TEXT)');
    await c.exec(session, 'DELETE FROM t');
    await c.exec(session, 'INSERT INTO t VALUES (?)', [label]);
  }

  it('replaces the content of a live database; open sessions see it at once', async () => {
    const file = dbPath(tmp());
    const snap = path.join(tmp(), 'snap.backup');
    const c = await RpcClient.start();
    try {
      await seeded(c, 1, file, 'old state');
      await c.request('backup', { session: 1, dest: snap });
      await c.exec(1, "UPDATE t SET a = 'new state'");
      await c.open(2, file);
      expect(await c.all(2, 'SELECT a FROM t')).toEqual([['new state']]);
      const r = await c.request('restore', { path: file, source: snap });
      expect(r).toMatchObject({ aborted_transactions: 0 });
      expect(await c.all(2, 'SELECT a FROM t')).toEqual([['old state']]);
      expect(await c.all(1, 'SELECT a FROM t')).toEqual([['old state']]);
      await c.exec(1, "INSERT INTO t VALUES ('after')");
      expect(pythonReads(file, 'SELECT a FROM t ORDER BY rowid').rows).toEqual([['old state'], ['after']]);
    } finally {
      c.dispose();
    }
  });

  it('refuses while a session holds a transaction, unless forced; the forced rollback is reported to that session', async () => {
    const file = dbPath(tmp());
    const snap = path.join(tmp(), 'snap2.backup');
    const c = await RpcClient.start();
    try {
      await seeded(c, 1, file, 'snapshot');
      await c.request('backup', { session: 1, dest: snap });
      await c.open(2, file);
      await c.request('begin', { session: 2 });
      await c.exec(2, "INSERT INTO t VALUES ('uncommitted')");
      const e = await rpcError(c.request('restore', { session: 1, source: snap }), -32010, 'BackupFailed');
      expect(e.message).toContain('holds a transaction');
      const r = await c.request('restore', { session: 1, source: snap, force: true });
      expect(r.aborted_transactions).toBe(1);
      await rpcError(c.exec(2, 'SELECT 1'), -32004, 'TransactionAborted');
      expect(await c.all(2, 'SELECT a FROM t')).toEqual([['snapshot']]);
    } finally {
      c.dispose();
    }
  });

  it('refuses a source that is not a database or fails integrity_check, changing nothing', async () => {
    const file = dbPath(tmp());
    const junk = path.join(tmp(), 'junk.backup');
    fs.writeFileSync(junk, Buffer.alloc(8192, 0x42));
    const broken = path.join(tmp(), 'broken.backup');
    const b = new Database(broken);
    b.exec('CREATE TABLE t (a TEXT)');
    const ins = b.prepare('INSERT INTO t VALUES (?)');
    b.transaction(() => {
      for (let i = 0; i < 2000; i++) ins.run('y'.repeat(100));
    })();
    b.close();
    const fd = fs.openSync(broken, 'r+');
    const scribble = Buffer.alloc(4096 * 3, 0x5a);
    fs.writeSync(fd, scribble, 0, scribble.length, 4096 * 4);
    fs.closeSync(fd);
    const c = await RpcClient.start();
    try {
      await seeded(c, 1, file, 'precious');
      const e1 = await rpcError(c.request('restore', { session: 1, source: junk }), -32010, 'BackupFailed');
      expect(e1.message).toContain('not a SQLite database');
      const e2 = await rpcError(c.request('restore', { session: 1, source: broken }), -32010, 'BackupFailed');
      expect(e2.message).toMatch(/integrity|malformed/);
      await rpcError(c.request('restore', { session: 1, source: path.join(tmp(), 'missing.backup') }), -32010, 'BackupFailed');
      expect(await c.all(1, 'SELECT a FROM t')).toEqual([['precious']]);
    } finally {
      c.dispose();
    }
  });
});

describe('check over RPC', () => {
  it('reports ok for a sound database and the problems of a damaged file, without opening it for serving', async () => {
    const good = dbPath(tmp());
    const bad = dbPath(tmp(), 'bad');
    const d = new Database(bad);
    d.pragma('journal_mode = DELETE');
    d.exec('CREATE TABLE t (a TEXT)');
    const ins = d.prepare('INSERT INTO t VALUES (?)');
    d.transaction(() => {
      for (let i = 0; i < 2000; i++) ins.run('z'.repeat(100));
    })();
    d.close();
    const fd = fs.openSync(bad, 'r+');
    const scribble = Buffer.alloc(4096 * 3, 0x33);
    fs.writeSync(fd, scribble, 0, scribble.length, 4096 * 4);
    fs.closeSync(fd);
    const before = fs.readFileSync(bad);
    const c = await RpcClient.start();
    try {
      await c.open(1, good);
      await c.exec(1, 'CREATE TABLE t (a)');
      expect(await c.request('check', { session: 1 })).toMatchObject({ ok: true, problems: [], mode: 'quick' });
      expect(await c.request('check', { path: good, mode: 'full' })).toMatchObject({ ok: true, mode: 'full' });
      const r = await c.request('check', { path: bad, mode: 'full' });
      expect(r.ok).toBe(false);
      expect(r.problems.length).toBeGreaterThan(0);
      expect(fs.readFileSync(bad).equals(before)).toBe(true);
      await rpcError(c.request('check', { path: good, mode: 'deep' }), -32602, 'InvalidParams');
    } finally {
      c.dispose();
    }
  });
});

describe('scheduled backups and recovery at open', () => {
  it('backs up every interval, keeps the newest N, each one verified', async () => {
    const dir = path.join(tmp(), 'scheduled');
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--backup-dir', dir, '--backup-interval-ms', '1000', '--backup-keep', '2']);
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t (a)');
      await c.exec(1, 'INSERT INTO t VALUES (42)');
      await until(() => c.proc.logLines().filter((l) => l.event === 'backup_done').length >= 3, 'three scheduled backups');
      const files = fs.readdirSync(dir).filter((f) => f.endsWith('.backup'));
      expect(files).toHaveLength(2);
      for (const f of files) {
        expect(f.startsWith(path.basename(file))).toBe(true);
        expect(pythonReads(path.join(dir, f), 'SELECT a FROM t')).toEqual({ integrity: 'ok', rows: [[42]] });
      }
    } finally {
      c.dispose();
    }
  });

  it('replaces a database that fails its open check by the newest verified backup, loudly, keeping the damaged file aside', async () => {
    const dir = path.join(tmp(), 'recovery');
    const file = dbPath(tmp(), 'recover-me');
    const c = await RpcClient.start();
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t (a TEXT)');
      await c.exec(1, "INSERT INTO t VALUES ('in the backup')");
      fs.mkdirSync(dir);
      // A folder as dest: the backup gets the scheduled-backup name, which recovery looks for.
      const b = await c.request('backup', { session: 1, dest: dir });
      expect(path.dirname(b.dest)).toBe(dir);
      expect(path.basename(b.dest)).toMatch(new RegExp(`^${path.basename(file).replace(/\./g, '\\.')}\\.[0-9a-f]{8}\\.\\d{8}T\\d{9}Z\\.backup$`));
      // Another database with the same file name, backed up into the same folder later: never
      // taken for this one.
      const twin = path.join(tmp(), 'twin');
      fs.mkdirSync(twin);
      await c.open(2, path.join(twin, path.basename(file)));
      await c.exec(2, 'CREATE TABLE other_tenant (a)');
      await new Promise((r) => setTimeout(r, 5));
      await c.request('backup', { session: 2, dest: dir });
      await c.exec(1, "INSERT INTO t VALUES ('after the backup')");
      for (let i = 0; i < 1500; i++) await c.exec(1, 'INSERT INTO t VALUES (?)', ['x'.repeat(100)]);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
    const fd = fs.openSync(file, 'r+');
    const scribble = Buffer.alloc(4096 * 3, 0x77);
    fs.writeSync(fd, scribble, 0, scribble.length, 4096 * 4);
    fs.closeSync(fd);

    const plain = await RpcClient.start(['--backup-dir', dir]);
    try {
      await rpcError(plain.open(1, file), -32011, 'IntegrityCheckFailed');
    } finally {
      plain.dispose();
    }
    const r = await RpcClient.start(['--backup-dir', dir, '--recover-from-backup']);
    try {
      await r.open(1, file);
      expect(await r.all(1, 'SELECT a FROM t')).toEqual([['in the backup']]);
      const line = r.proc.logLines().find((l) => l.event === 'database_recovered')!;
      expect(line.level).toBe('error');
      const aside = String(line.moved_aside_to);
      expect(fs.existsSync(aside)).toBe(true);
      expect(path.dirname(aside)).toBe(path.dirname(fs.realpathSync(file)));
    } finally {
      r.dispose();
    }
    // With no backup to recover from, the error says so.
    const empty = path.join(tmp(), 'empty-backups');
    const other = dbPath(tmp(), 'no-backup');
    fs.copyFileSync(path.join(path.dirname(fs.realpathSync(file)), fs.readdirSync(path.dirname(fs.realpathSync(file))).find((f) => f.includes('.corrupt-') && !f.endsWith('-wal') && !f.endsWith('-shm'))!), other);
    const n = await RpcClient.start(['--backup-dir', empty, '--recover-from-backup']);
    try {
      const e = await rpcError(n.open(1, other), -32011, 'IntegrityCheckFailed');
      expect(e.message).toContain('no verified backup');
    } finally {
      n.dispose();
    }
  });
});
