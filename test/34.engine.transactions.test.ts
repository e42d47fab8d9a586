// Session transactions (src/engine/database.ts, registry.ts): the owner holds the writer,
// waiters time out with "database is locked", idle transactions are rolled back and reported
// once with TransactionAborted (PROTOCOL.md §7).
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Registry } from '../src/engine/registry';
import type { Session } from '../src/engine/session';
import { all, exec, failure, makeRegistry, openSession, until, useDbFiles, type LogEntry } from './helpers/engine';

const files = useDbFiles();

function countOutside(file: string, where = '1'): number {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM t WHERE ${where}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('transactions', () => {
  let reg: Registry;
  let file = '';
  let a: Session;
  let b: Session;

  beforeAll(async () => {
    reg = makeRegistry();
    file = files.db();
    a = openSession(reg, 1, file);
    b = openSession(reg, 2, file, { timeoutMs: 150 });
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
    await exec(reg, a, "INSERT INTO t VALUES (1, 'committed')");
  });
  afterAll(async () => {
    await reg.closeAll();
  });

  const stats = () => reg.stats().databases[0];

  it('the owner reads its own writes; nobody else sees them until COMMIT', async () => {
    await reg.begin(a, 'deferred');
    expect(a.inTx).toBe(true);
    expect(stats().writer_owner).toBe(1);
    const ins = await exec(reg, a, "INSERT INTO t VALUES (2, 'in tx')");
    expect(ins).toMatchObject({ changes: 1, in_transaction: true });
    expect(await all(reg, a, 'SELECT id FROM t ORDER BY id')).toEqual([[1], [2]]);
    expect(await all(reg, b, 'SELECT id FROM t ORDER BY id')).toEqual([[1]]);
    expect(countOutside(file)).toBe(1);
    await reg.commit(a);
    expect(a.inTx).toBe(false);
    expect(stats().writer_owner).toBeNull();
    expect(countOutside(file)).toBe(2);
    expect(await all(reg, b, 'SELECT id FROM t ORDER BY id')).toEqual([[1], [2]]);
  });

  it('ROLLBACK discards the transaction', async () => {
    await reg.begin(a, 'immediate');
    await exec(reg, a, "INSERT INTO t VALUES (3, 'doomed')");
    await exec(reg, a, "UPDATE t SET v = 'changed' WHERE id = 1");
    reg.rollback(a);
    expect(a.inTx).toBe(false);
    expect(await all(reg, a, 'SELECT id, v FROM t ORDER BY id')).toEqual([[1, 'committed'], [2, 'in tx']]);
    expect(stats().writer_owner).toBeNull();
  });

  it('another session waiting longer than its timeout gets SQLITE_BUSY "database is locked"; nothing of it is applied', async () => {
    await reg.begin(a, 'deferred');
    await exec(reg, a, "INSERT INTO t VALUES (10, 'owner')");
    const write = await failure(() => exec(reg, b, "INSERT INTO t VALUES (11, 'waiter')"));
    expect(write.message).toBe('database is locked');
    expect(write.data).toMatchObject({ kind: 'SqliteError', dbapi: 'OperationalError', sqlite_code: 'SQLITE_BUSY', sqlite_errno: 5 });
    const begin = await failure(() => reg.begin(b, 'deferred'));
    expect(begin.message).toBe('database is locked');
    const many = await failure(() => reg.executeMany(b, 'INSERT INTO t VALUES (?, ?)', [[12, 'x']], null));
    expect(many.message).toBe('database is locked');
    const script = await failure(() => reg.script(b, "INSERT INTO t VALUES (13, 'x');"));
    expect(script.message).toBe('database is locked');
    expect(b.inTx).toBe(false);
    await reg.commit(a);
    expect(await all(reg, b, 'SELECT id FROM t WHERE id >= 10 ORDER BY id')).toEqual([[10]]);
    // The writer is free again.
    expect((await exec(reg, b, "INSERT INTO t VALUES (11, 'now')")).changes).toBe(1);
  });

  it('a waiter whose timeout has not run out gets the writer when the owner commits', async () => {
    const c = openSession(reg, 3, file, { timeoutMs: 20_000 });
    await reg.begin(a, 'deferred');
    await exec(reg, a, "INSERT INTO t VALUES (20, 'first')");
    const waiting = exec(reg, c, "INSERT INTO t VALUES (21, 'second')");
    const waitingTx = Promise.resolve(reg.begin(c, 'immediate')).then(() => 'began');
    await until(() => stats().queued_writes + stats().writer_waiters >= 2, 5000, 'the waiters to queue');
    const committedA = reg.commit(a);
    expect(await waitingTx).toBe('began');
    expect(stats().writer_owner).toBe(3);
    await exec(reg, c, "INSERT INTO t VALUES (22, 'third')");
    const committedC = reg.commit(c);
    await Promise.all([committedA, committedC]);
    expect((await waiting).changes).toBe(1);
    expect(countOutside(file, 'id IN (20, 21, 22)')).toBe(3);
    reg.close(3);
  });

  it('commit() and rollback() without a transaction are no-ops; COMMIT in SQL text is an error', async () => {
    expect(a.inTx).toBe(false);
    await reg.commit(a);
    reg.rollback(a);
    expect(a.inTx).toBe(false);
    const e = await failure(() => exec(reg, a, 'COMMIT'));
    expect(e.message).toMatch(/cannot commit - no transaction is active/);
    expect(e.data.dbapi).toBe('OperationalError');
    const r = await failure(() => exec(reg, a, 'ROLLBACK'));
    expect(r.message).toMatch(/cannot rollback - no transaction is active/);
  });

  it('BEGIN / COMMIT in SQL text act on the session transaction; a nested BEGIN is an error', async () => {
    const r = await exec(reg, a, 'BEGIN');
    expect(r.in_transaction).toBe(true);
    expect(stats().writer_owner).toBe(1);
    const nested = await failure(() => exec(reg, a, 'BEGIN IMMEDIATE'));
    expect(nested.message).toMatch(/cannot start a transaction within a transaction/);
    const nested2 = await failure(() => reg.begin(a, 'deferred'));
    expect(nested2.message).toMatch(/within a transaction/);
    expect(a.inTx).toBe(true);
    await exec(reg, a, "INSERT INTO t VALUES (30, 'sql text')");
    const c = await exec(reg, a, 'COMMIT');
    expect(c.in_transaction).toBe(false);
    expect(countOutside(file, 'id = 30')).toBe(1);
    expect(stats().writer_owner).toBeNull();
  });

  it('SAVEPOINT / ROLLBACK TO / RELEASE work inside a transaction', async () => {
    await reg.begin(a, 'deferred');
    await exec(reg, a, "INSERT INTO t VALUES (40, 'keep')");
    await exec(reg, a, 'SAVEPOINT sp1');
    await exec(reg, a, "INSERT INTO t VALUES (41, 'undo')");
    await exec(reg, a, 'ROLLBACK TO sp1');
    await exec(reg, a, 'RELEASE sp1');
    expect(a.inTx).toBe(true);
    await reg.commit(a);
    expect(countOutside(file, 'id IN (40, 41)')).toBe(1);
    expect(countOutside(file, 'id = 40')).toBe(1);
  });

  it('a SAVEPOINT outside a transaction starts one; RELEASE of it commits', async () => {
    const r = await exec(reg, a, 'SAVEPOINT outer_sp');
    expect(r.in_transaction).toBe(true);
    await exec(reg, a, "INSERT INTO t VALUES (45, 'savepoint tx')");
    expect(countOutside(file, 'id = 45')).toBe(0);
    const rel = await exec(reg, a, 'RELEASE outer_sp');
    expect(rel.in_transaction).toBe(false);
    expect(countOutside(file, 'id = 45')).toBe(1);
    expect(stats().writer_owner).toBeNull();
  });

  it("execute with begin starts the session's transaction before a write (the client's implicit BEGIN)", async () => {
    const r = await exec(reg, a, "INSERT INTO t VALUES (50, 'implicit')", undefined, { begin: 'deferred' });
    expect(r.in_transaction).toBe(true);
    expect(countOutside(file, 'id = 50')).toBe(0);
    // A read with begin does not start one (as sqlite3: no implicit BEGIN before SELECT).
    const c = openSession(reg, 4, file);
    const read = await exec(reg, c, 'SELECT count(*) FROM t', undefined, { begin: 'deferred' });
    expect(read.in_transaction).toBe(false);
    reg.close(4);
    await reg.commit(a);
    expect(countOutside(file, 'id = 50')).toBe(1);
  });

  it('executemany and batch inside a transaction are part of it', async () => {
    await reg.begin(a, 'deferred');
    const m = await reg.executeMany(a, 'INSERT INTO t VALUES (?, ?)', [[60, 'm'], [61, 'm']], null);
    expect(m).toMatchObject({ changes: 2, in_transaction: true });
    const bt = (await reg.batch(a, [['INSERT INTO t VALUES (62, ?)', ['b']]], null)) as { in_transaction: boolean };
    expect(bt.in_transaction).toBe(true);
    // A failing batch inside the transaction undoes only itself.
    const e = await failure(() => reg.batch(a, [['INSERT INTO t VALUES (63, ?)', ['b']], ['INSERT INTO t VALUES (60, ?)', ['dup']]], null));
    expect(e.data.dbapi).toBe('IntegrityError');
    expect(a.inTx).toBe(true);
    reg.rollback(a);
    expect(countOutside(file, 'id BETWEEN 60 AND 63')).toBe(0);
  });

  it('a script that leaves a transaction open gives it to the session', async () => {
    const r = await reg.script(a, "BEGIN; INSERT INTO t VALUES (70, 'script');");
    expect(r.in_transaction).toBe(true);
    expect(a.inTx).toBe(true);
    expect(stats().writer_owner).toBe(1);
    expect(countOutside(file, 'id = 70')).toBe(0);
    await reg.commit(a);
    expect(countOutside(file, 'id = 70')).toBe(1);
    expect(stats().writer_owner).toBeNull();
  });

  it('closing a session rolls back its transaction and frees the writer', async () => {
    const c = openSession(reg, 5, file);
    await reg.begin(c, 'deferred');
    await exec(reg, c, "INSERT INTO t VALUES (80, 'closed')");
    expect(reg.close(5)).toEqual({ closed: true });
    expect(stats().writer_owner).toBeNull();
    expect(countOutside(file, 'id = 80')).toBe(0);
    expect((await exec(reg, b, "INSERT INTO t VALUES (81, 'after close')")).changes).toBe(1);
    const gone = await failure(() => reg.session(5));
    expect(gone.data.kind).toBe('SessionNotFound');
  });
});

describe('idle transactions', () => {
  it('are rolled back after the idle limit; the session hears TransactionAborted once; others proceed', async () => {
    const logs: LogEntry[] = [];
    const reg = makeRegistry({ idleTxMs: 100 }, logs);
    try {
      const file = files.db();
      const a = openSession(reg, 1, file);
      const b = openSession(reg, 2, file, { timeoutMs: 20_000 });
      await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
      await reg.begin(a, 'deferred');
      await exec(reg, a, 'INSERT INTO t VALUES (1)');
      // b's write waits for the writer; a never comes back.
      const bWrite = exec(reg, b, 'INSERT INTO t VALUES (2)');
      expect((await bWrite).changes).toBe(1);
      expect(reg.stats().databases[0].writer_owner).toBeNull();
      expect(logs.some((l) => l.event === 'transaction_aborted' && l.fields.session === 1)).toBe(true);
      // Reported once, on a's next request...
      const e = await failure(() => reg.session(1));
      expect(e.code).toBe(-32004);
      expect(e.data).toMatchObject({ kind: 'TransactionAborted', dbapi: 'OperationalError' });
      // ...then the session carries on, outside any transaction.
      const s = reg.session(1);
      expect(s.inTx).toBe(false);
      expect(await all(reg, s, 'SELECT id FROM t ORDER BY id')).toEqual([[2]]);
      expect(countOutside(file)).toBe(1);
    } finally {
      await reg.closeAll();
    }
  });

  it('a transaction that keeps working is not rolled back', async () => {
    const reg = makeRegistry({ idleTxMs: 300 });
    try {
      const file = files.db();
      const a = openSession(reg, 1, file);
      await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
      await reg.begin(a, 'deferred');
      for (let i = 1; i <= 8; i++) {
        await exec(reg, a, 'INSERT INTO t VALUES (?)', [i]);
        await new Promise((r) => setTimeout(r, 60));
      }
      expect(reg.session(1).inTx).toBe(true);
      await reg.commit(a);
      expect(countOutside(file)).toBe(8);
    } finally {
      await reg.closeAll();
    }
  });
});

describe('a commit and the transactions that start after it', () => {
  // c begins while a's transaction holds the writer. c gets the writer as soon as a's COMMIT
  // has run (at full: before its fsync, issue 13), and a's reply never waits for c's
  // transaction to end (c stays idle here until the idle limit would roll it back).
  async function scenario(synchronous: 'normal' | 'full') {
    const reg = makeRegistry({ synchronous, idleTxMs: 1500 });
    const file = files.db();
    const a = openSession(reg, 1, file);
    const c = openSession(reg, 3, file, { timeoutMs: 20_000 });
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    await reg.begin(a, 'deferred');
    await exec(reg, a, 'INSERT INTO t VALUES (1)');
    const cBegan = Promise.resolve(reg.begin(c, 'deferred'));
    await until(() => reg.stats().databases[0].writer_waiters === 1, 5000, 'c to wait for the writer');
    // When a's commit completes, is c (which began after it and is idle) still in its transaction?
    const aCommitted = Promise.resolve(reg.commit(a)).then(() => ({ cStillInTx: c.inTx && c.abortedReason === null, visible: countOutside(file, 'id = 1') }));
    await cBegan;
    expect(reg.stats().databases[0].writer_owner).toBe(3);
    const r = await aCommitted;
    await reg.closeAll();
    return r;
  }

  it.each(['normal', 'full'] as const)('at %s, a commit is visible when it returns and does not wait for a transaction that began after it', async (sync) => {
    expect(await scenario(sync)).toEqual({ cStillInTx: true, visible: 1 });
  });
});
