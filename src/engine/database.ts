// One database file: one writer connection on the main thread, one read-only connection
// on the main thread for statements known to be fast, and a pool of reader workers.
//
// Writes outside a transaction are group-committed: every unit queued during one turn of
// the event loop runs inside one BEGIN IMMEDIATE ... COMMIT, each unit in its own
// SAVEPOINT, and every reply waits for that COMMIT. A session that begins a transaction
// owns the writer until it commits or rolls back; other writers wait up to their timeout.
import type { Database, Statement } from 'better-sqlite3';
import { openConnection, type SynchronousMode } from './connection';
import { DirectConnection, OpenIterator } from './direct';
import { ReaderPool } from './readerPool';
import { readPage, shapeOf } from './reads';
import { StatementCache } from './statementCache';
import { beginMode, classify, isBlank, type BeginMode, type StatementKind } from './sqlText';
import { bindArgs, type BoundParams } from './values';
import type { Session } from './session';
import type { CursorTable } from './cursors';
import type { ExecOptions, ExecResult, LogFn, WriteSummary } from './types';
import { RpcError, sqliteError, toRpcError } from '../protocol/errors';
import { RawEncoded, SqlRows } from '../transport/msgpack';
import type { CodecName } from '../transport/codec';

export interface EngineOptions {
  poolSize: number;
  cacheSize: number;
  synchronous: SynchronousMode;
  /** Busy wait of the reader connections (SQLite's own busy handler). */
  readerBusyTimeoutMs: number;
  idleTxMs: number;
  foreignKeys: boolean;
  readOnly: boolean;
  /** Reads measured below this many microseconds run on the main thread (no worker hop). */
  inlineReadMicros: number;
  maxGroupUnits: number;
  journalSizeLimit: number;
  codec: CodecName;
  addonPath: string | null;
  nativeBinding: unknown;
}

type Route = 'read' | 'write' | 'direct' | 'tx';
const INLINE_UNKNOWN = 0, INLINE_YES = 1, INLINE_NO = 2;
/** Up to this many rows, a main-thread read uses all(). */
const SMALL_RESULT = 64;

interface StmtInfo {
  kind: StatementKind;
  route: Route;
  inline: number;
  workerSamples: number;
  /** Consecutive inline runs over the threshold; one GC pause must not evict a point query. */
  slowStreak: number;
  /** Largest result seen, to pick all() (small) or a paged iterator (large). */
  maxRows: number;
}

type UnitWork =
  | { t: 'exec'; sql: string; bound: BoundParams; opts: ExecOptions }
  | { t: 'many'; sql: string; boundList: BoundParams[] }
  | { t: 'batch'; items: Array<[string, BoundParams]> };

interface Unit {
  session: Session;
  work: UnitWork;
  deadline: number;
  resolve: (r: unknown) => void;
  reject: (e: unknown) => void;
  timer?: NodeJS.Timeout;
  result?: unknown;
}

interface Waiter {
  session: Session;
  begin: string | null;
  deadline: number;
  resolve: () => void;
  reject: (e: unknown) => void;
  timer?: NodeJS.Timeout;
}

export interface EngineStats {
  path: string;
  readers: number;
  readers_busy: number;
  reader_respawns: number;
  sessions: number;
  writer_owner: number | null;
  writer_waiters: number;
  queued_writes: number;
  group_commits: number;
  group_units: number;
  group_max_units: number;
  busy_retries: number;
  inline_reads: number;
  worker_reads: number;
  statement_cache: { writer: ReturnType<StatementCache['counters']>; inline: ReturnType<StatementCache['counters']> };
}

function locked(): RpcError {
  return sqliteError('SQLITE_BUSY', 'database is locked');
}

function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

export class DatabaseEngine {
  private readonly writer: DirectConnection;
  private readonly inline: StatementCache;
  private readonly inlineDb: Database;
  private readonly pool: ReaderPool | null;
  private readonly info = new Map<string, StmtInfo>();
  private readonly sql: Record<'beginImmediate' | 'beginExclusive' | 'savepoint' | 'release' | 'rollbackTo' | 'commit' | 'rollback', Statement>;

  private owner: Session | null = null;
  private readonly waiters: Waiter[] = [];
  private queue: Unit[] = [];
  private flushScheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelay = 1;
  private closed = false;
  readonly sessions = new Set<Session>();

  private groupCommits = 0;
  private groupUnits = 0;
  private groupMax = 0;
  private busyRetries = 0;
  private inlineReads = 0;
  private workerReads = 0;

  constructor(readonly path: string, private readonly o: EngineOptions, private readonly cursors: CursorTable, private readonly log: LogFn) {
    const writerDb = openConnection(path, {
      readonly: o.readOnly,
      create: !o.readOnly,
      synchronous: o.synchronous,
      busyTimeoutMs: 0, // never block the event loop inside SQLite: busy is retried in flush()
      foreignKeys: o.foreignKeys,
      nativeBinding: o.nativeBinding,
      setWal: !o.readOnly,
      journalSizeLimit: o.journalSizeLimit,
    });
    this.writer = new DirectConnection(writerDb, o.cacheSize);
    try {
      this.inlineDb = openConnection(path, {
        readonly: true,
        create: false,
        synchronous: o.synchronous,
        busyTimeoutMs: 0,
        foreignKeys: o.foreignKeys,
        nativeBinding: o.nativeBinding,
        setWal: false,
        journalSizeLimit: 0,
      });
    } catch (e) {
      writerDb.close();
      throw e;
    }
    this.inline = new StatementCache(this.inlineDb, o.cacheSize, true);
    const p = (s: string) => writerDb.prepare(s);
    this.sql = {
      beginImmediate: p('BEGIN IMMEDIATE'),
      beginExclusive: p('BEGIN EXCLUSIVE'),
      savepoint: p('SAVEPOINT sqlite_rpc_unit'),
      release: p('RELEASE sqlite_rpc_unit'),
      rollbackTo: p('ROLLBACK TO sqlite_rpc_unit'),
      commit: p('COMMIT'),
      rollback: p('ROLLBACK'),
    };
    this.pool =
      o.poolSize > 0
        ? new ReaderPool(
            {
              path,
              addonPath: o.addonPath,
              codec: o.codec,
              cacheSize: o.cacheSize,
              busyTimeoutMs: o.readerBusyTimeoutMs,
              foreignKeys: o.foreignKeys,
              synchronous: o.synchronous,
              maxConnections: 17,
            },
            o.poolSize,
            log,
          )
        : null;
  }

  // ---- routing -------------------------------------------------------------------------

  private infoFor(sql: string): StmtInfo {
    let i = this.info.get(sql);
    if (i !== undefined) return i;
    const kind = classify(sql);
    let route: Route;
    if (kind === 'begin' || kind === 'commit' || kind === 'rollback' || kind === 'savepoint' || kind === 'release' || kind === 'rollback_to') route = 'tx';
    else if (kind === 'pragma' || kind === 'vacuum' || kind === 'attach' || kind === 'detach') route = 'direct';
    else {
      // Prepared on the writer: it sees the newest schema, and the statement is cached for the write path.
      this.writer.drain();
      const stmt = this.writer.cache.get(sql);
      route = stmt.readonly && stmt.reader ? 'read' : 'write';
    }
    i = { kind, route, inline: INLINE_UNKNOWN, workerSamples: 0, slowStreak: 0, maxRows: 0 };
    if (this.info.size > 4 * this.o.cacheSize + 1024) this.info.clear(); // bound memory for ad-hoc SQL
    this.info.set(sql, i);
    return i;
  }

  execute(s: Session, sql: string, bound: BoundParams, o: ExecOptions): ExecResult | Promise<ExecResult> {
    if (isBlank(sql)) return this.emptyResult(s);
    const info = this.infoFor(sql);
    if (s.readonly) {
      // Read-only sessions never use the writer: everything runs on read-only connections.
      if (info.route === 'tx') return this.txStatement(s, sql, info.kind);
      return this.read(s, sql, bound, o, info.route === 'read' ? info : null);
    }
    if (info.route === 'tx') return this.txStatement(s, sql, info.kind);
    if (s.inTx) return this.onWriter(s, sql, bound, o);
    if (o.begin !== null && info.route === 'write') {
      return this.acquire(s, o.begin, s.timeoutMs).then(() => this.onWriter(s, sql, bound, o));
    }
    if (info.route === 'read') return this.read(s, sql, bound, o, info);
    if (info.route === 'direct') return this.withWriter(s, () => this.onWriter(s, sql, bound, o));
    return this.enqueue(s, { t: 'exec', sql, bound, opts: o }) as Promise<ExecResult>;
  }

  executeMany(s: Session, sql: string, boundList: BoundParams[], begin: BeginMode | null): WriteSummary | Promise<WriteSummary> {
    if (s.inTx) {
      this.touch(s);
      return { ...this.writer.many(sql, boundList), in_transaction: true };
    }
    if (begin !== null) {
      return this.acquire(s, begin, s.timeoutMs).then(() => {
        this.touch(s);
        return { ...this.writer.many(sql, boundList), in_transaction: true };
      });
    }
    return this.enqueue(s, { t: 'many', sql, boundList }) as Promise<WriteSummary>;
  }

  batch(s: Session, items: Array<[string, BoundParams]>, begin: BeginMode | null): unknown {
    if (s.inTx || begin !== null) {
      const run = () => {
        this.touch(s);
        this.sql.savepoint.run();
        try {
          const out = this.applyBatch(items);
          this.sql.release.run();
          return { results: out, in_transaction: true };
        } catch (e) {
          if (this.writer.db.inTransaction) {
            this.sql.rollbackTo.run();
            this.sql.release.run();
          }
          this.syncTx(s);
          throw e;
        }
      };
      return s.inTx ? run() : this.acquire(s, begin!, s.timeoutMs).then(run);
    }
    return this.enqueue(s, { t: 'batch', items });
  }

  script(s: Session, sql: string): Promise<WriteSummary> | WriteSummary {
    const run = (): WriteSummary => {
      const before = this.writer.db.prepare('SELECT total_changes()').raw(true).get() as [bigint];
      try {
        this.writer.exec(sql);
      } finally {
        this.syncTx(s);
      }
      const after = this.writer.db.prepare('SELECT total_changes()').raw(true).get() as [bigint];
      return { changes: Number(after[0] - before[0]), lastrowid: null, in_transaction: s.inTx };
    };
    if (s.inTx) return run();
    return this.withWriter(s, run);
  }

  private emptyResult(s: Session): ExecResult {
    return { columns: null, rows: new SqlRows([]), cursor: null, changes: 0, lastrowid: null, in_transaction: s.inTx };
  }

  // ---- reads outside a transaction -----------------------------------------------------

  private read(s: Session, sql: string, bound: BoundParams, o: ExecOptions, info: StmtInfo | null): ExecResult | Promise<ExecResult> {
    if (this.pool === null || (info !== null && info.inline === INLINE_YES)) {
      const r = this.readInline(s, sql, bound, o, info);
      if (r !== null) return r;
    }
    return this.readOnWorker(s, sql, bound, o, info);
  }

  /**
   * A read on the main thread. Returns null when it must move to a worker (the result is
   * larger than a page, and a cursor must not pin the main-thread connection).
   */
  private readInline(s: Session, sql: string, bound: BoundParams, o: ExecOptions, info: StmtInfo | null): ExecResult | null {
    const stmt = this.inline.get(sql);
    const args = bindArgs(bound);
    const shape = shapeOf(stmt);
    if (!stmt.reader) {
      stmt.run(...args);
      return this.emptyResult(s);
    }
    const t0 = performance.now();
    let rows: unknown[][];
    let cursor: number | null = null;
    if (this.pool === null) {
      // No workers (--pool-size 0): results are materialized here and paged from memory.
      rows = stmt.all(...args) as unknown[][];
      if (rows.length > o.pageRows) {
        const it = this.bufferedCursor(rows.splice(o.pageRows));
        cursor = this.cursors.add({ kind: 'direct', session: s.id, it, lastUsed: Date.now() });
        s.cursors.add(cursor);
      }
    } else if (info !== null && info.maxRows <= SMALL_RESULT && o.pageRows >= SMALL_RESULT) {
      // Known-small results: all() is cheaper than stepping an iterator.
      rows = stmt.all(...args) as unknown[][];
      if (rows.length > SMALL_RESULT) info.maxRows = rows.length;
    } else {
      const iter = stmt.iterate(...args) as IterableIterator<unknown>;
      const page = readPage(iter, o.pageRows, o.pageBytes);
      if (!page.done) {
        iter.return?.();
        if (info !== null) info.inline = INLINE_NO;
        return null;
      }
      rows = page.rows;
      if (info !== null && rows.length > info.maxRows) info.maxRows = rows.length;
    }
    if (info !== null) {
      const micros = (performance.now() - t0) * 1000;
      if (micros <= this.o.inlineReadMicros) info.slowStreak = 0;
      else if (++info.slowStreak >= 3 || micros > 20 * this.o.inlineReadMicros) info.inline = INLINE_NO;
    }
    this.inlineReads++;
    const r: ExecResult = { columns: shape.names, rows: new SqlRows(rows), cursor, changes: 0, lastrowid: null, in_transaction: s.inTx };
    if (o.decltypes) r.decltypes = shape.decltypes;
    return r;
  }

  private bufferedCursor(rows: unknown[][]): OpenIterator {
    const it = new OpenIterator(([] as unknown[])[Symbol.iterator]() as IterableIterator<unknown>, this.writer);
    it.buffered = rows;
    return it;
  }

  private async readOnWorker(s: Session, sql: string, bound: BoundParams, o: ExecOptions, info: StmtInfo | null): Promise<ExecResult> {
    const pool = this.pool!;
    const slot = pool.pick();
    const generation = pool.generationOf(slot);
    const rep = await pool.send(slot, { t: 'query', sql, params: bound as unknown[], pageRows: o.pageRows, pageBytes: o.pageBytes, types: o.decltypes });
    if (rep.error) throw new RpcError(rep.error.kind as never, rep.error.message, rep.error.data);
    this.workerReads++;
    if (info !== null && info.inline === INLINE_UNKNOWN) {
      if (rep.cursor === 0 && (rep.micros ?? Infinity) <= this.o.inlineReadMicros) {
        info.inline = INLINE_YES;
        info.maxRows = rep.count ?? 0;
      } else if (++info.workerSamples >= 3) info.inline = INLINE_NO;
    }
    let cursor: number | null = null;
    if (rep.cursor) {
      cursor = this.cursors.add({ kind: 'worker', session: s.id, pool, slot, generation, local: rep.cursor, lastUsed: Date.now() });
      s.cursors.add(cursor);
    }
    const r: ExecResult = { columns: rep.names ?? null, rows: new RawEncoded(rep.rows!), cursor, changes: 0, lastrowid: null, in_transaction: s.inTx };
    if (o.decltypes) r.decltypes = rep.decltypes ?? null;
    return r;
  }

  // ---- the writer: session transactions ------------------------------------------------

  private touch(s: Session): void {
    s.lastActivity = Date.now();
  }

  /** After any statement on the writer: did it end (or start) the session's transaction? */
  private syncTx(s: Session): void {
    const inTx = this.writer.db.inTransaction;
    if (inTx && (this.owner === null || this.owner === s)) {
      this.owner = s;
      s.inTx = true;
    } else if (!inTx && this.owner === s) {
      this.releaseOwner(s);
    }
  }

  private onWriter(s: Session, sql: string, bound: BoundParams, o: ExecOptions): ExecResult {
    this.touch(s);
    let r;
    try {
      r = this.writer.run(sql, bound, o);
    } finally {
      this.syncTx(s);
    }
    let cursor: number | null = null;
    if (r.open) {
      cursor = this.cursors.add({ kind: 'direct', session: s.id, it: r.open, lastUsed: Date.now() });
      s.cursors.add(cursor);
    }
    const res: ExecResult = { columns: r.names, rows: new SqlRows(r.rows), cursor, changes: r.changes, lastrowid: r.lastrowid, in_transaction: s.inTx };
    if (o.decltypes) res.decltypes = r.decltypes ?? null;
    return res;
  }

  private txStatement(s: Session, sql: string, kind: StatementKind): ExecResult | Promise<ExecResult> {
    if (s.readonly) {
      // A read-only session never touches the writer; BEGIN/COMMIT only track the flag.
      if (kind === 'begin') s.inTx = true;
      else if (kind === 'commit' || kind === 'rollback') s.inTx = false;
      return this.emptyResult(s);
    }
    const o: ExecOptions = { pageRows: 1, pageBytes: 1, decltypes: false, begin: null };
    if (s.inTx) return this.onWriter(s, sql, [], o);
    switch (kind) {
      case 'begin':
        return this.acquire(s, beginMode(sql), s.timeoutMs).then(() => this.emptyResult(s));
      case 'commit':
        throw sqliteError('SQLITE_ERROR', 'cannot commit - no transaction is active');
      case 'rollback':
        throw sqliteError('SQLITE_ERROR', 'cannot rollback - no transaction is active');
      case 'savepoint':
        return this.acquire(s, null, s.timeoutMs).then(() => this.onWriter(s, sql, [], o));
      default:
        throw sqliteError('SQLITE_ERROR', `no such savepoint: ${sql.trim().split(/\s+/).pop()}`);
    }
  }

  begin(s: Session, mode: BeginMode): Promise<void> | void {
    if (s.readonly) {
      s.inTx = true;
      return;
    }
    if (s.inTx) throw sqliteError('SQLITE_ERROR', 'cannot start a transaction within a transaction');
    return this.acquire(s, mode, s.timeoutMs);
  }

  commit(s: Session): void {
    if (!s.inTx) return; // sqlite3: commit() with no transaction is a no-op
    if (s.readonly) {
      s.inTx = false;
      return;
    }
    this.writer.drain();
    try {
      this.sql.commit.run();
    } finally {
      this.syncTx(s);
    }
  }

  rollback(s: Session): void {
    if (!s.inTx) return;
    if (s.readonly) {
      s.inTx = false;
      return;
    }
    this.writer.drain();
    try {
      if (this.writer.db.inTransaction) this.sql.rollback.run();
    } finally {
      this.syncTx(s);
      if (this.owner === s) this.releaseOwner(s);
    }
  }

  /**
   * Take the writer for session `s` (optionally beginning a transaction), waiting up to
   * timeoutMs for another session's transaction. Queued autocommit writes go first.
   */
  private acquire(s: Session, mode: BeginMode | null, timeoutMs: number): Promise<void> {
    const begin = mode === null ? null : mode === 'exclusive' ? 'exclusive' : 'immediate';
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { session: s, begin, deadline: Date.now() + timeoutMs, resolve, reject };
      this.waiters.push(w);
      w.timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(locked());
        }
      }, timeoutMs);
      this.grant();
    });
  }

  /** Run fn holding the writer outside any transaction (PRAGMA, VACUUM, ATTACH, scripts). */
  private withWriter<T>(s: Session, fn: () => T): Promise<T> {
    return this.acquire(s, null, s.timeoutMs).then(() => {
      try {
        return fn();
      } finally {
        if (this.owner === s && !this.writer.db.inTransaction) this.releaseOwner(s);
      }
    });
  }

  /** Hand the writer to the next waiter when it is free. */
  private grant(): void {
    while (this.owner === null && this.waiters.length > 0) {
      if (this.queue.length > 0) {
        this.flush();
        if (this.queue.length > 0) return; // busy retry pending; grant() runs again after it
      }
      const w = this.waiters[0];
      if (w.begin !== null) {
        try {
          (w.begin === 'exclusive' ? this.sql.beginExclusive : this.sql.beginImmediate).run();
        } catch (e) {
          if (isBusy(e)) {
            this.scheduleRetry();
            return;
          }
          this.waiters.shift();
          clearTimeout(w.timer);
          w.reject(toRpcError(e));
          continue;
        }
      }
      this.waiters.shift();
      clearTimeout(w.timer);
      this.owner = w.session;
      w.session.inTx = w.begin !== null;
      this.touch(w.session);
      w.resolve();
    }
  }

  private releaseOwner(s: Session): void {
    if (this.owner !== s) return;
    this.owner = null;
    s.inTx = false;
    this.writer.drain();
    if (this.queue.length > 0) this.scheduleFlush();
    if (this.waiters.length > 0) queueMicrotask(() => this.grant());
  }

  /** Roll back a transaction whose session went idle or away, and free the writer. */
  abortTransaction(s: Session, reason: string): void {
    if (this.owner !== s) return;
    try {
      if (this.writer.db.inTransaction) {
        this.writer.drain();
        this.sql.rollback.run();
      }
    } catch (e) {
      this.log('rollback_failed', { path: this.path, session: s.id, error: String(e) });
    }
    s.abortedReason = reason;
    this.log('transaction_aborted', { path: this.path, session: s.id, reason });
    this.releaseOwner(s);
  }

  /** Sessions whose transaction has been idle longer than the limit. */
  idleOwner(now: number): Session | null {
    const s = this.owner;
    if (s !== null && s.inTx && now - s.lastActivity > this.o.idleTxMs) return s;
    return null;
  }

  // ---- the writer: group commit --------------------------------------------------------

  private enqueue(s: Session, work: UnitWork): Promise<unknown> {
    if (this.closed) return Promise.reject(new RpcError('ShuttingDown', 'the database is closing'));
    return new Promise((resolve, reject) => {
      const u: Unit = { session: s, work, deadline: Date.now() + s.timeoutMs, resolve, reject };
      this.queue.push(u);
      if (this.owner !== null || this.retryTimer !== null) this.armExpiry(u);
      this.scheduleFlush();
    });
  }

  private armExpiry(u: Unit): void {
    if (u.timer) return;
    u.timer = setTimeout(() => {
      const i = this.queue.indexOf(u);
      if (i >= 0) {
        this.queue.splice(i, 1);
        u.reject(locked());
      }
    }, Math.max(0, u.deadline - Date.now()));
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
      if (this.waiters.length > 0) this.grant();
    });
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null) return;
    this.busyRetries++;
    for (const u of this.queue) this.armExpiry(u);
    // Exponential backoff with jitter, capped: another process holds the write lock.
    const delay = this.retryDelay * (0.5 + Math.random());
    this.retryDelay = Math.min(this.retryDelay * 2, 50);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.flush();
      this.grant();
    }, delay);
  }

  private applyUnit(work: UnitWork): unknown {
    switch (work.t) {
      case 'exec': {
        const r = this.writer.run(work.sql, work.bound, work.opts);
        // A write never leaves an iterator open here: RETURNING runs to completion in run().
        const res: ExecResult = { columns: r.names, rows: new SqlRows(r.rows), cursor: null, changes: r.changes, lastrowid: r.lastrowid, in_transaction: false };
        if (work.opts.decltypes) res.decltypes = r.decltypes ?? null;
        return res;
      }
      case 'many':
        return { ...this.writer.many(work.sql, work.boundList), in_transaction: false };
      case 'batch':
        return { results: this.applyBatch(work.items), in_transaction: false };
    }
  }

  private applyBatch(items: Array<[string, BoundParams]>): Array<{ changes: number; lastrowid: bigint | null }> {
    const o: ExecOptions = { pageRows: 1 << 30, pageBytes: Infinity, decltypes: false, begin: null };
    return items.map(([sql, bound]) => {
      const r = this.writer.run(sql, bound, o);
      return { changes: r.changes, lastrowid: r.lastrowid };
    });
  }

  private flush(): void {
    if (this.owner !== null || this.queue.length === 0 || this.retryTimer !== null) return;
    const units = this.queue.splice(0, this.o.maxGroupUnits);
    try {
      this.sql.beginImmediate.run();
    } catch (e) {
      this.queue.unshift(...units);
      if (isBusy(e)) this.scheduleRetry();
      else for (const u of this.queue.splice(0)) this.settle(u, toRpcError(e));
      return;
    }
    this.retryDelay = 1;
    const failed = new Map<Unit, unknown>();
    for (let i = 0; i < units.length; i++) {
      const u = units[i];
      this.sql.savepoint.run();
      try {
        u.result = this.applyUnit(u.work);
        this.sql.release.run();
      } catch (e) {
        if (this.writer.db.inTransaction) {
          this.sql.rollbackTo.run();
          this.sql.release.run();
          failed.set(u, e);
        } else {
          // The error rolled back the whole transaction (ON CONFLICT ROLLBACK, RAISE(ROLLBACK)):
          // nothing here was committed or acknowledged, so the other units simply run again.
          this.settle(u, toRpcError(e));
          const rest = units.filter((x) => x !== u && !failed.has(x));
          for (const [fu, fe] of failed) this.settle(fu, toRpcError(fe));
          this.queue.unshift(...rest);
          this.scheduleFlush();
          return;
        }
      }
    }
    try {
      this.sql.commit.run();
    } catch (e) {
      if (this.writer.db.inTransaction) this.sql.rollback.run();
      const err = toRpcError(e);
      for (const u of units) this.settle(u, failed.has(u) ? toRpcError(failed.get(u)) : err);
      return;
    }
    this.groupCommits++;
    this.groupUnits += units.length;
    if (units.length > this.groupMax) this.groupMax = units.length;
    for (const u of units) {
      if (failed.has(u)) this.settle(u, toRpcError(failed.get(u)));
      else this.settle(u, null);
    }
    if (this.queue.length > 0) this.scheduleFlush();
  }

  private settle(u: Unit, err: RpcError | null): void {
    if (u.timer) clearTimeout(u.timer);
    if (err) u.reject(err);
    else u.resolve(u.result);
  }

  // ---- cursors, stats, shutdown --------------------------------------------------------

  stats(): EngineStats {
    return {
      path: this.path,
      readers: this.pool?.size ?? 0,
      readers_busy: this.pool?.busy() ?? 0,
      reader_respawns: this.pool?.respawns ?? 0,
      sessions: this.sessions.size,
      writer_owner: this.owner?.id ?? null,
      writer_waiters: this.waiters.length,
      queued_writes: this.queue.length,
      group_commits: this.groupCommits,
      group_units: this.groupUnits,
      group_max_units: this.groupMax,
      busy_retries: this.busyRetries,
      inline_reads: this.inlineReads,
      worker_reads: this.workerReads,
      statement_cache: { writer: this.writer.cache.counters(), inline: this.inline.counters() },
    };
  }

  /** Test hook: make reader worker `slot` exit mid-flight. */
  crashReader(): Promise<unknown> {
    if (!this.pool) return Promise.resolve(null);
    return this.pool.send(this.pool.pick(), { t: 'crash' }).catch((e) => e);
  }

  removeSession(s: Session): void {
    if (this.owner === s) this.abortTransaction(s, 'session closed');
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i].session === s) {
        const [w] = this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.reject(new RpcError('SessionNotFound', 'the session was closed'));
      }
    }
    this.sessions.delete(s);
  }

  /** Finish queued writes, roll back open transactions, close every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.owner) this.abortTransaction(this.owner, 'server shutting down');
    this.flush();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const u of this.queue.splice(0)) this.settle(u, new RpcError('ShuttingDown', 'the server shut down before this write could be committed; it was not applied'));
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new RpcError('ShuttingDown', 'the server is shutting down'));
    }
    await this.pool?.close();
    this.inlineDb.close();
    this.writer.drain();
    this.writer.db.close();
  }
}
