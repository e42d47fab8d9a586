// Running statements directly on one connection (the writer inside a session's
// transaction, or a private :memory: database). A result larger than a page keeps its
// iterator open as a cursor; since better-sqlite3 refuses any other statement while an
// iterator is open, `drain()` turns open iterators into buffered rows first.
import type { Database } from 'better-sqlite3';
import { StatementCache } from './statementCache';
import { readPage, shapeOf } from './reads';
import { bindArgs, type BoundParams } from './values';
import { classify, isBlank } from './sqlText';
import { SqlRows } from '../transport/msgpack';
import { RpcError } from '../protocol/errors';
import type { ExecOptions } from './types';

export class OpenIterator {
  buffered: unknown[][] | null = null;
  constructor(readonly iter: IterableIterator<unknown>, readonly owner: DirectConnection) {}

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

export interface DirectResult {
  names: string[] | null;
  decltypes?: (string | null)[] | null;
  rows: unknown[][];
  open: OpenIterator | null;
  changes: number;
  lastrowid: bigint | null;
}

export class DirectConnection {
  readonly cache: StatementCache;
  private readonly open = new Set<OpenIterator>();

  constructor(readonly db: Database, cacheSize: number) {
    this.cache = new StatementCache(db, cacheSize, true);
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

  run(sql: string, bound: BoundParams, o: ExecOptions): DirectResult {
    this.drain();
    if (isBlank(sql)) return { names: null, rows: [], open: null, changes: 0, lastrowid: null };
    const stmt = this.cache.get(sql);
    const args = bindArgs(bound);
    const shape = shapeOf(stmt);
    if (!stmt.reader) {
      const info = stmt.run(...args);
      const changes = Number(info.changes);
      const insert = changes > 0 && classify(sql) === 'insert';
      return { names: null, rows: [], open: null, changes, lastrowid: insert ? BigInt(info.lastInsertRowid) : null };
    }
    const res: DirectResult = { names: shape.names, rows: [], open: null, changes: 0, lastrowid: null };
    if (o.decltypes) res.decltypes = shape.decltypes;
    if (!stmt.readonly) {
      // A write that returns rows (RETURNING): run it to completion so it is applied whole.
      res.rows = stmt.all(...args) as unknown[][];
      res.changes = Number((this.cache.get('SELECT changes()').get() as [bigint])[0]);
      return res;
    }
    const iter = stmt.iterate(...args);
    const p = readPage(iter, o.pageRows, o.pageBytes);
    res.rows = p.rows;
    if (!p.done) {
      res.open = new OpenIterator(iter, this);
      this.open.add(res.open);
    }
    return res;
  }

  many(sql: string, boundList: BoundParams[]): { changes: number; lastrowid: bigint | null } {
    this.drain();
    const stmt = this.cache.get(sql);
    if (stmt.reader) {
      throw new RpcError('SqliteError', 'executemany() can only execute DML statements.', { dbapi: 'ProgrammingError' });
    }
    let changes = 0;
    let lastrowid: bigint | null = null;
    const insert = classify(sql) === 'insert';
    for (const b of boundList) {
      const info = stmt.run(...bindArgs(b));
      changes += Number(info.changes);
      if (insert && info.changes > 0) lastrowid = BigInt(info.lastInsertRowid);
    }
    return { changes, lastrowid };
  }

  exec(sql: string): void {
    this.drain();
    this.db.exec(sql);
  }

  rowsOf(r: DirectResult): SqlRows {
    return new SqlRows(r.rows);
  }
}
