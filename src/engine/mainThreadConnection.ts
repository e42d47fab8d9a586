// A connection used on the main thread (the shared writer of a file, or a private :memory:
// database), as opposed to the readers' connections in worker threads. A result larger than a page keeps its
// iterator open as a cursor; since better-sqlite3 refuses any other statement while an
// iterator is open, `drain()` turns open iterators into buffered rows first.
import type { Database, Statement } from 'better-sqlite3';
import { StatementCache } from './statementCache';
import { knownShape, readPage, shapeAfterRun } from './reads';
import { bindArgs, type BoundParams } from './values';
import { classify, isBlank } from './sqlText';
import { notDmlError, toRpcError } from '../protocol/errors';
import type { ExecOptions } from './types';

export class OpenIterator {
  buffered: unknown[][] | null = null;
  constructor(readonly iter: IterableIterator<unknown>, readonly owner: MainThreadConnection) {}

  /** Next page, from the live iterator or from what drain() buffered. */
  next(pageRows: number, pageBytes: number): { rows: unknown[][]; done: boolean } {
    if (this.buffered) {
      // Pages of buffered rows honour page_bytes too, as pages read from SQLite do.
      const n = readPage(this.buffered[Symbol.iterator](), pageRows, pageBytes).rows.length;
      const rows = this.buffered.splice(0, n);
      return { rows, done: this.buffered.length === 0 };
    }
    const p = readPage(this.iter, pageRows, pageBytes);
    if (p.done) this.owner.forget(this);
    return p;
  }

  close(): void {
    if (!this.buffered) this.iter.return?.();
    this.buffered = [];
    this.owner.forget(this);
  }
}

export interface RunResult {
  names: string[] | null;
  decltypes?: (string | null)[] | null;
  rows: unknown[][];
  open: OpenIterator | null;
  changes: number;
  /** The connection's last_insert_rowid() after the statement, when the statement changed it. */
  lastrowid: bigint | null;
  /** sqlite3_total_changes() delta: the statement's changes including those of triggers. */
  total_changes: number;
}

export interface WriteCounts {
  changes: number;
  lastrowid: bigint | null;
  total_changes: number;
}

export class MainThreadConnection {
  readonly cache: StatementCache;
  private readonly open = new Set<OpenIterator>();
  // last_insert_rowid() and total_changes() as of the last statement run here. Every
  // statement that can change them goes through run/many/exec, so one query after each
  // write gives exact per-statement deltas on a connection that many sessions share.
  private lastRowid: bigint;
  private totalChanges: bigint;
  /**
   * Bumped whenever this connection's schema may have changed (reads.ts knownShape): the
   * column names of cached statements are read again. A change made inside a transaction
   * bumps it again when the transaction ends (a rollback takes the change back).
   */
  schemaGen = 0;
  private schemaDirty = false;

  constructor(readonly db: Database, cacheSize: number) {
    this.cache = new StatementCache(db, cacheSize, true, () => this.schemaChanged());
    [this.lastRowid, this.totalChanges] = this.counters();
  }

  private counters(): [bigint, bigint] {
    return this.cache.get('SELECT last_insert_rowid(), total_changes()').get() as [bigint, bigint];
  }

  /**
   * What changed since the last mark: the new rowid and the total_changes delta. The rowid
   * is reported when the statement inserted a row (it may equal the last one, e.g. after a
   * rollback), or when it moved; otherwise it may be another session's, on a shared writer.
   */
  private mark(inserted = false): { lastrowid: bigint | null; total_changes: number } {
    const [rowid, total] = this.counters();
    const out = { lastrowid: inserted || rowid !== this.lastRowid ? rowid : null, total_changes: Number(total - this.totalChanges) };
    this.lastRowid = rowid;
    this.totalChanges = total;
    return out;
  }

  /** Run fn; an error leaving changes behind (executemany midway, a script) says how many. */
  private counted<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const m = this.mark();
      if (m.total_changes !== 0 || m.lastrowid !== null) {
        const err = toRpcError(e);
        err.data.total_changes = m.total_changes;
        if (m.lastrowid !== null) err.data.lastrowid = m.lastrowid;
        throw err;
      }
      throw e;
    }
  }

  /** The schema may have changed (DDL, a script, another process's ALTER TABLE seen here). */
  schemaChanged(): void {
    this.schemaGen++;
    if (this.db.inTransaction) this.schemaDirty = true;
  }

  /** A transaction ended here, wholly or back to a savepoint: a schema change in it may be undone, or now committed. */
  transactionEnded(): void {
    if (!this.schemaDirty) return;
    this.schemaGen++;
    this.schemaDirty = this.db.inTransaction;
  }

  forget(it: OpenIterator): void {
    this.open.delete(it);
  }

  /** Buffer every open iterator so the connection is free for the next statement. */
  drain(): void {
    for (const it of this.open) {
      const rows: unknown[][] = [];
      for (const r of it.iter) rows.push(r as unknown[]);
      it.buffered = rows;
    }
    this.open.clear();
  }

  /** Compile sql (errors as SQLite reports them), before any BEGIN is issued for it. */
  prepare(sql: string): Statement {
    this.drain();
    return this.cache.get(sql);
  }

  run(sql: string, bound: BoundParams, o: ExecOptions): RunResult {
    this.drain();
    if (isBlank(sql)) return { names: null, rows: [], open: null, changes: 0, lastrowid: null, total_changes: 0 };
    const stmt = this.cache.get(sql);
    const args = bindArgs(bound);
    if (!stmt.reader) {
      let info;
      try {
        info = this.counted(() => stmt.run(...args));
      } finally {
        // Read-only statements that return nothing: BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE.
        if (stmt.readonly) this.transactionEnded();
        else if (mayChangeSchema(sql)) this.schemaChanged();
      }
      return { names: null, rows: [], open: null, changes: Number(info.changes), ...this.mark(Number(info.changes) > 0 && classify(sql) === 'insert') };
    }
    const known = knownShape(stmt, this.schemaGen);
    const res: RunResult = { names: null, rows: [], open: null, changes: 0, lastrowid: null, total_changes: 0 };
    if (!stmt.readonly) {
      // A write that returns rows (RETURNING): run it to completion so it is applied whole.
      res.rows = this.counted(() => stmt.all(...args) as unknown[][]);
      res.changes = Number((this.cache.get('SELECT changes()').get() as [bigint])[0]);
      Object.assign(res, this.mark(res.changes > 0 && classify(sql) === 'insert'));
    } else {
      const iter = stmt.iterate(...args);
      const p = readPage(iter, o.pageRows, o.pageBytes);
      res.rows = p.rows;
      if (!p.done) {
        res.open = new OpenIterator(iter, this);
        this.open.add(res.open);
      }
    }
    const shape = shapeAfterRun(stmt, this.schemaGen, known, res.rows[0]);
    res.names = shape.names;
    if (o.decltypes) res.decltypes = shape.decltypes;
    return res;
  }

  many(sql: string, boundList: BoundParams[]): WriteCounts {
    const stmt = this.prepare(sql);
    if (stmt.reader) throw notDmlError();
    let changes = 0;
    this.counted(() => {
      for (const b of boundList) changes += Number(stmt.run(...bindArgs(b)).changes);
    });
    return { changes, ...this.mark() };
  }

  /** A script (several statements); returns its counts. */
  exec(sql: string): WriteCounts {
    this.drain();
    try {
      this.counted(() => this.db.exec(sql));
    } finally {
      this.schemaChanged(); // a script may hold DDL, and may end (or open) a transaction
      this.transactionEnded();
    }
    const m = this.mark();
    return { changes: m.total_changes, ...m };
  }

}

/**
 * Statements after which cached result shapes are read again: DDL, ATTACH, DETACH, and
 * statements of no known kind that write. Not INSERT, UPDATE, DELETE (the hot path), nor
 * PRAGMA (run at every connect by some frameworks; none renames a column).
 */
function mayChangeSchema(sql: string): boolean {
  const k = classify(sql);
  return k === 'ddl' || k === 'other' || k === 'attach' || k === 'detach';
}
