// Concurrency through the real binary: readers during a long write transaction, group
// commit under 16 concurrent writer sessions, a session that vanishes mid-transaction.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { dbPath, RpcClient, rpcError, useTempDir } from './helpers/server';

const tmp = useTempDir();

function dbStats(st: any, file: string): any {
  const d = st.databases.find((x: any) => x.path === fs.realpathSync(file));
  if (!d) throw new Error(`no stats for ${file}`);
  return d;
}

describe('concurrency over stdio', () => {
  it('readers get committed data, without waiting, while another session holds a long write transaction', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start();
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
      await c.request('executemany', { session: 1, sql: 'INSERT INTO t VALUES (?, ?)', seq_of_params: Array.from({ length: 50 }, (_, i) => [i + 1, 'old']) });
      for (let s = 2; s <= 5; s++) await c.open(s, file);
      // Session 1 takes the writer and changes things, and does not commit yet.
      await c.request('begin', { session: 1 });
      await c.exec(1, "UPDATE t SET v = 'new'");
      await c.exec(1, "INSERT INTO t VALUES (51, 'new')");
      const reads: Promise<any>[] = [];
      for (let i = 0; i < 25; i++) {
        for (let s = 2; s <= 5; s++) {
          reads.push(c.exec(s, 'SELECT count(*), sum(v = ?) FROM t', ['new']));
        }
      }
      const results = await Promise.all(reads);
      expect(results).toHaveLength(100);
      for (const r of results) expect(r.rows).toEqual([[50, 0]]);
      // All of that happened while session 1 still held the writer.
      expect(dbStats(await c.request('stats'), file).writer_owner).toBe(1);
      expect((await c.exec(1, 'SELECT count(*), sum(v = ?) FROM t', ['new'])).rows).toEqual([[51, 51]]);
      expect(await c.request('commit', { session: 1 })).toEqual({ in_transaction: false });
      expect((await c.exec(3, 'SELECT count(*), sum(v = ?) FROM t', ['new'])).rows).toEqual([[51, 51]]);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
  });

  it('group commit: 16 sessions with 50 inserts each, all in flight, share commits and all land', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start();
    try {
      await c.open(100, file);
      await c.exec(100, 'CREATE TABLE g(session INTEGER, n INTEGER, PRIMARY KEY (session, n))');
      for (let s = 1; s <= 16; s++) await c.open(s, file);
      const writes: Promise<any>[] = [];
      for (let n = 0; n < 50; n++) {
        for (let s = 1; s <= 16; s++) writes.push(c.exec(s, 'INSERT INTO g VALUES (?, ?)', [s, n]));
      }
      const results = await Promise.all(writes);
      expect(results).toHaveLength(800);
      expect(results.every((r) => r.changes === 1 && r.in_transaction === false)).toBe(true);
      expect((await c.exec(1, 'SELECT count(*), count(DISTINCT session) FROM g')).rows).toEqual([[800, 16]]);
      const st = dbStats(await c.request('stats'), file);
      expect(st.group_units).toBeGreaterThanOrEqual(800);
      expect(st.group_commits).toBeGreaterThan(0);
      expect(st.group_commits).toBeLessThan(800);
      expect(st.group_max_units).toBeGreaterThan(1);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
    // Durable: a fresh connection after the server is gone sees every row.
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT count(*) AS n FROM g').get()).toEqual({ n: 800 });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  });

  it('a session that vanishes mid-transaction: its transaction is rolled back at the idle limit and others write after it', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--idle-tx-timeout-ms', '300']);
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)');
      await c.open(2, file, { timeout: 30 });
      await c.request('begin', { session: 1 });
      await c.exec(1, "INSERT INTO t VALUES (1, 'vanished')");
      // Session 1 never comes back. Session 2's write waits for the writer, then proceeds.
      const r = await c.exec(2, "INSERT INTO t VALUES (2, 'survivor')");
      expect(r.changes).toBe(1);
      expect((await c.exec(2, 'SELECT id, who FROM t ORDER BY id')).rows).toEqual([[2, 'survivor']]);
      expect(dbStats(await c.request('stats'), file).writer_owner).toBeNull();
      // If it does come back, it hears about it once.
      const e = await rpcError(c.exec(1, 'SELECT 1'), -32004, 'TransactionAborted');
      expect(e.data.dbapi).toBe('OperationalError');
      expect((await c.exec(1, 'SELECT count(*) FROM t')).rows).toEqual([[1]]);
      const log = c.proc.logLines().find((l) => l.event === 'transaction_aborted');
      expect(log).toMatchObject({ session: 1 });
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT id FROM t ORDER BY id').all()).toEqual([{ id: 2 }]);
    db.close();
  });

  it('a client that dies mid-transaction (stdin closes) leaves nothing of it behind', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start();
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
      await c.exec(1, 'INSERT INTO t VALUES (1)');
      await c.request('begin', { session: 1 });
      await c.exec(1, 'INSERT INTO t VALUES (2)');
      c.proc.child.stdin!.end();
      const exit = await c.proc.waitExit();
      expect(exit.code).toBe(0);
    } finally {
      c.dispose();
    }
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT id FROM t ORDER BY id').all()).toEqual([{ id: 1 }]);
    db.close();
  });

  it('reads keep working while a reader worker is replaced (debug.crash_reader)', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--enable-test-hooks', '--pool-size', '2', '--inline-read-ms', '0']);
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t(x)');
      await c.exec(1, 'INSERT INTO t VALUES (1)');
      expect((await c.exec(1, 'SELECT x FROM t')).rows).toEqual([[1]]);
      await c.request('debug.crash_reader', { path: file });
      for (let i = 0; i < 20; i++) {
        try {
          expect((await c.exec(1, 'SELECT x FROM t')).rows).toEqual([[1]]);
        } catch (e: any) {
          // A read that was on the dying worker may fail with WorkerFailed; never anything else.
          expect(e.code).toBe(-32007);
        }
      }
      expect((await c.exec(1, 'SELECT count(*) FROM t')).rows).toEqual([[1]]);
      const st = dbStats(await c.request('stats'), file);
      expect(st.reader_respawns).toBeGreaterThanOrEqual(1);
      expect(st.readers).toBe(2);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
  });
});
