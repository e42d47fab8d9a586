// The backend of a private :memory: session (sessionBackend.ts): its own connection, which
// no other session shares, so statements run on it as they come; BEGIN is the real BEGIN
// with the mode asked for, where the shared engine's transactions are savepoints in its
// writer's outer transaction.
import type { MainThreadConnection } from './mainThreadConnection';
import { execResult, type CursorTable } from './cursors';
import { Savepoint, withSavepoint } from './savepoint';
import { isBlank, type BeginMode } from './sqlText';
import type { BoundParams } from './values';
import type { Session } from './session';
import type { SessionBackend } from './sessionBackend';
import type { ExecOptions, ExecResult, WriteSummary } from './types';
import { RpcError, notDmlError, sqliteError } from '../protocol/errors';
import { SqlRows } from '../transport/msgpack';
import type { DbMetrics } from '../ops/metrics';

/** A statement on a private database under expect_rows: undone by a savepoint when the count differs. */
function guardedRun(conn: MainThreadConnection, sql: string, bound: BoundParams, o: ExecOptions): ReturnType<MainThreadConnection['run']> {
  conn.drain(); // an open cursor of this connection would make SAVEPOINT fail ("busy")
  return withSavepoint(Savepoint.exec(conn.db, 'sqlite_rpc_stmt'), () => {
    const r = conn.run(sql, bound, o);
    if (r.changes !== o.expectRows) {
      throw new RpcError('Conflict', `conflict: the statement changed ${r.changes} row${r.changes === 1 ? '' : 's'}, ${o.expectRows} expected; it was undone`, { expected_rows: o.expectRows!, changes: r.changes });
    }
    return r;
  });
}

export class PrivateBackend implements SessionBackend {
  constructor(
    private readonly conn: MainThreadConnection,
    private readonly cursors: CursorTable,
    readonly dbMetrics: DbMetrics | null,
  ) {}

  execute(s: Session, sql: string, bound: BoundParams, o: ExecOptions): ExecResult {
    // Nothing to run (and nothing to prepare or begin for), as in sqlite3.
    if (isBlank(sql)) return { columns: null, rows: new SqlRows([]), cursor: null, changes: 0, lastrowid: null, in_transaction: s.inTx };
    const conn = this.conn;
    if (o.begin !== null && !conn.db.inTransaction) {
      conn.prepare(sql); // sqlite3 compiles before its implicit BEGIN: a bad statement opens no transaction
      conn.db.exec(`BEGIN ${o.begin.toUpperCase()}`);
    }
    let r;
    const t0 = performance.now();
    try {
      if (o.expectRows != null) {
        if (conn.prepare(sql).readonly) throw new RpcError('InvalidParams', 'invalid params: expect_rows: only a statement that writes rows (INSERT, UPDATE, DELETE, REPLACE) can be guarded', { field: 'expect_rows' });
        r = guardedRun(conn, sql, bound, o);
      } else {
        r = conn.run(sql, bound, o);
      }
    } finally {
      s.inTx = conn.db.inTransaction;
      this.dbMetrics?.statement('other', 'private', (performance.now() - t0) / 1000);
    }
    return execResult(r, s, this.cursors, o);
  }

  executeMany(s: Session, sql: string, boundList: BoundParams[], begin: BeginMode | null): WriteSummary {
    const db = this.conn.db;
    if (begin !== null && !db.inTransaction) {
      if (this.conn.prepare(sql).reader) throw notDmlError();
      db.exec(`BEGIN ${begin.toUpperCase()}`);
    }
    try {
      return { ...this.conn.many(sql, boundList), in_transaction: db.inTransaction };
    } finally {
      s.inTx = db.inTransaction;
    }
  }

  batch(s: Session, items: Array<[string, BoundParams]>, begin: BeginMode | null): unknown {
    const conn = this.conn;
    const db = conn.db;
    if (begin !== null && !db.inTransaction) db.exec(`BEGIN ${begin.toUpperCase()}`);
    const all = { pageRows: 1 << 30, pageBytes: Infinity, decltypes: false, begin: null };
    try {
      const results = withSavepoint(
        Savepoint.exec(db, 'sqlite_rpc_unit'),
        () =>
          items.map(([sql, b]) => {
            const r = conn.run(sql, b, all);
            return { changes: r.changes, lastrowid: r.lastrowid, total_changes: r.total_changes };
          }),
        () => conn.transactionEnded(),
      );
      return { results, in_transaction: db.inTransaction };
    } finally {
      s.inTx = db.inTransaction;
    }
  }

  script(s: Session, sql: string): WriteSummary {
    const db = this.conn.db;
    try {
      return { ...this.conn.exec(sql), in_transaction: db.inTransaction };
    } finally {
      s.inTx = db.inTransaction;
    }
  }

  begin(s: Session, mode: BeginMode): void {
    if (this.conn.db.inTransaction) throw sqliteError('SQLITE_ERROR', 'cannot start a transaction within a transaction');
    this.conn.db.exec(`BEGIN ${mode.toUpperCase()}`);
    s.inTx = true;
  }

  commit(s: Session): void {
    const db = this.conn.db;
    this.conn.drain();
    try {
      if (db.inTransaction) db.exec('COMMIT');
    } finally {
      s.inTx = db.inTransaction;
    }
  }

  rollback(s: Session): void {
    const db = this.conn.db;
    this.conn.drain();
    if (db.inTransaction) db.exec('ROLLBACK');
    this.conn.transactionEnded();
    s.inTx = false;
  }
}
