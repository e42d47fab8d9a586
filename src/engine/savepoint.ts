// Savepoints on one connection. The engine's writer nests three of them (names starting
// with sqlite_rpc_ are reserved, PROTOCOL.md):
//   sqlite_rpc_tx    a session's transaction inside the writer's outer BEGIN IMMEDIATE
//   sqlite_rpc_unit  one autocommit unit (a write, a batch) inside the outer transaction
//   sqlite_rpc_stmt  one statement that must be undoable (audited, expect_rows)
// A private :memory: session uses the same names on its own connection.
import type { Database } from 'better-sqlite3';

type Run = () => void;

export class Savepoint {
  private constructor(
    private readonly db: Database,
    /** SAVEPOINT name */
    readonly open: Run,
    /** RELEASE name */
    readonly release: Run,
    /** ROLLBACK TO name: undoes, and keeps the savepoint open (release it after). */
    readonly rollbackTo: Run,
  ) {}

  /** Prepared once: for a connection that runs the savepoint on every write. */
  static prepared(db: Database, name: string): Savepoint {
    const p = (sql: string): Run => {
      const st = db.prepare(sql);
      return () => {
        st.run();
      };
    };
    return new Savepoint(db, p(`SAVEPOINT ${name}`), p(`RELEASE ${name}`), p(`ROLLBACK TO ${name}`));
  }

  /** Run as plain exec: for a one-off use. */
  static exec(db: Database, name: string): Savepoint {
    return new Savepoint(
      db,
      () => db.exec(`SAVEPOINT ${name}`),
      () => db.exec(`RELEASE ${name}`),
      () => db.exec(`ROLLBACK TO ${name}`),
    );
  }

  /**
   * Undo everything since the savepoint and drop it (ROLLBACK TO, RELEASE). False when no
   * transaction is left to undo in: a statement with ON CONFLICT ROLLBACK or RAISE(ROLLBACK)
   * rolled back the whole transaction, the savepoint with it.
   */
  undo(): boolean {
    if (!this.db.inTransaction) return false;
    this.rollbackTo();
    this.release();
    return true;
  }
}

/**
 * fn under the savepoint: released when fn returns, undone when fn (or the release) throws.
 * onError runs after the undo, before the error is rethrown; undone is undo()'s answer.
 * An error of the SAVEPOINT itself, or of the undo, propagates as it is.
 */
export function withSavepoint<T>(sp: Savepoint, fn: () => T, onError?: (e: unknown, undone: boolean) => void): T {
  sp.open();
  try {
    const out = fn();
    sp.release();
    return out;
  } catch (e) {
    const undone = sp.undo();
    onError?.(e, undone);
    throw e;
  }
}
