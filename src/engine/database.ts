// One database file: one writer connection on the main thread, one read-only connection
// on the main thread for statements known to be fast, and a pool of reader workers.
//
// The writer keeps an outer transaction (BEGIN IMMEDIATE) open while there is work.
// Writes outside a transaction run in it, each in its own SAVEPOINT; a session's
// transaction is a SAVEPOINT in it too and owns the writer until it commits or rolls
// back. The outer COMMIT runs when the writer is free at the end of an event-loop turn, so
// everything finished meanwhile shares one fsync, and every reply that needs durability
// waits for that COMMIT. Details where the writer section starts, below.
import type { Database, Statement } from 'better-sqlite3';
import { openConnection, type SynchronousMode } from './connection';
import { DirectConnection, execResult, OpenIterator } from './direct';
import { ReaderPool } from './readerPool';
import { readPage, shapeOf } from './reads';
import { StatementCache } from './statementCache';
import { classify, isBlank, savepointName, type BeginMode, type StatementKind } from './sqlText';
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
  /** Replies (units and session commits) that may share one outer COMMIT, at most. */
  maxGroupUnits: number;
  /** How long the oldest waiting reply may be held while the next session transaction joins the same COMMIT. */
  commitDelayMs: number;
  /** Give every session transaction its own BEGIN/COMMIT (set with --foreign-keys: deferred checks run at COMMIT). */
  realTransactions: boolean;
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
  /** Consecutive fast, single-page worker runs of a statement that was moved off the main thread. */
  fastStreak: number;
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
  kind: 'tx' | 'direct';
  resolve: () => void;
  reject: (e: unknown) => void;
  timer?: NodeJS.Timeout;
}

/** A reply that may only be sent once the outer transaction is durably committed. */
interface Ack {
  since: number;
  /** The autocommit unit, which can be re-run if the outer transaction is lost. */
  unit: Unit | null;
  settle: (err: RpcError | null) => void;
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
  private readonly sql: Record<
    'beginImmediate' | 'commit' | 'rollback' | 'unitSavepoint' | 'unitRelease' | 'unitRollbackTo' | 'txSavepoint' | 'txRelease' | 'txRollbackTo',
    Statement
  >;

  private owner: Session | null = null;
  private ownerMode: 'savepoint' | 'real' | 'direct' | null = null;
  private readonly waiters: Waiter[] = [];
  private queue: Unit[] = [];
  /** Our BEGIN IMMEDIATE is open on the writer. */
  private outer = false;
  private acks: Ack[] = [];
  private pumpScheduled = false;
  private commitScheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelay = 1;
  private closed = false;
  readonly sessions = new Set<Session>();

  private groupCommits = 0;
  private groupUnits = 0;
  private groupMax = 0;
  private busyRetries = 0;
  private inlineReads = 0;
  /** Main-thread reads in the current tick, and whether they share one read transaction (see inlineSnapshot). */
  private inlineTickReads = 0;
  private inlineTx = false;
  private inlineBegin: Statement | null = null;
  private inlineCommit: Statement | null = null;
  private workerReads = 0;

  constructor(readonly path: string, private readonly o: EngineOptions, private readonly cursors: CursorTable, private readonly log: LogFn) {
    const writerDb = openConnection(path, {
      readonly: o.readOnly,
      create: !o.readOnly,
      synchronous: o.synchronous,
      busyTimeoutMs: 0, // never block the event loop inside SQLite: busy is retried by pump()
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
    // Savepoint names starting with sqlite_rpc_ are reserved (PROTOCOL.md).
    this.sql = {
      beginImmediate: p('BEGIN IMMEDIATE'),
      commit: p('COMMIT'),
      rollback: p('ROLLBACK'),
      unitSavepoint: p('SAVEPOINT sqlite_rpc_unit'),
      unitRelease: p('RELEASE sqlite_rpc_unit'),
      unitRollbackTo: p('ROLLBACK TO sqlite_rpc_unit'),
      txSavepoint: p('SAVEPOINT sqlite_rpc_tx'),
      txRelease: p('RELEASE sqlite_rpc_tx'),
      txRollbackTo: p('ROLLBACK TO sqlite_rpc_tx'),
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
    i = { kind, route, inline: INLINE_UNKNOWN, workerSamples: 0, slowStreak: 0, fastStreak: 0, maxRows: 0 };
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
      if (o.begin !== null && info.route === 'write') s.inTx = true; // sqlite3 begins, then the write fails
      return this.read(s, sql, bound, o, info.route === 'read' ? info : null);
    }
    if (info.route === 'tx') return this.txStatement(s, sql, info.kind);
    if (this.owner === s) return this.onWriter(s, sql, bound, o);
    if (o.begin !== null && info.route === 'write') return this.acquire(s, 'tx').then(() => this.onWriter(s, sql, bound, o));
    if (info.route === 'read') return this.read(s, sql, bound, o, info);
    if (info.route === 'direct') return this.direct(s, () => this.onWriter(s, sql, bound, o));
    return this.enqueue(s, { t: 'exec', sql, bound, opts: o }) as Promise<ExecResult>;
  }

  executeMany(s: Session, sql: string, boundList: BoundParams[], begin: BeginMode | null): WriteSummary | Promise<WriteSummary> {
    const inTx = () => {
      this.touch(s);
      try {
        return { ...this.writer.many(sql, boundList), in_transaction: true };
      } finally {
        this.afterStatement(s);
      }
    };
    if (this.owner === s) return inTx();
    if (begin !== null) {
      // sqlite3 compiles the statement before its implicit BEGIN: a bad one opens no transaction.
      if (this.writer.prepare(sql).reader) throw new RpcError('SqliteError', 'executemany() can only execute DML statements.', { dbapi: 'ProgrammingError' });
      return this.acquire(s, 'tx').then(inTx);
    }
    return this.enqueue(s, { t: 'many', sql, boundList }) as Promise<WriteSummary>;
  }

  batch(s: Session, items: Array<[string, BoundParams]>, begin: BeginMode | null): unknown {
    const inTx = () => {
      this.touch(s);
      this.sql.unitSavepoint.run();
      try {
        const out = this.applyBatch(items);
        this.sql.unitRelease.run();
        return { results: out, in_transaction: s.inTx };
      } catch (e) {
        if (this.writer.db.inTransaction) {
          this.sql.unitRollbackTo.run();
          this.sql.unitRelease.run();
        }
        throw e;
      } finally {
        this.afterStatement(s);
      }
    };
    if (this.owner === s) return inTx();
    if (begin !== null) return this.acquire(s, 'tx').then(inTx);
    return this.enqueue(s, { t: 'batch', items });
  }

  script(s: Session, sql: string): Promise<WriteSummary> | WriteSummary {
    return this.direct(s, (): WriteSummary => {
      this.touch(s);
      let counts;
      try {
        counts = this.writer.exec(sql);
      } finally {
        this.afterStatement(s);
      }
      return { ...counts, in_transaction: s.inTx };
    });
  }

  private emptyResult(s: Session): ExecResult {
    return { columns: null, rows: new SqlRows([]), cursor: null, changes: 0, lastrowid: null, in_transaction: s.inTx };
  }


  // ---- reads outside a transaction -----------------------------------------------------

  private read(s: Session, sql: string, bound: BoundParams, o: ExecOptions, info: StmtInfo | null): ExecResult | Promise<ExecResult> {
    if (this.pool === null || (info !== null && info.inline === INLINE_YES)) {
      const r = this.readInline(s, sql, bound, o, info);
      if (r !== null) return r;
    } else if (info !== null && info.inline === INLINE_UNKNOWN && !this.pool.anyOnline()) {
      // Perf fix (cold start, bench/README.md): right after open no reader worker has booted
      // yet (50-100 ms here), and the first query (`SELECT 1`) used to wait for one. While
      // none is up, a read of unknown cost runs on the main thread (paged: a result larger
      // than a page still moves to a worker), and its timing is recorded as usual.
      const r = this.readInline(s, sql, bound, o, info);
      if (r !== null) return r;
    }
    return this.readOnWorker(s, sql, bound, o, info);
  }

  /**
   * Perf fix (pipelined reads, bench/README.md): every autocommit read on the main-thread
   * connection starts and ends its own WAL read transaction (two fcntl locks and an fstat,
   * about 5 us here). Reads dispatched in the same tick (one chunk of pipelined requests)
   * share one snapshot instead: from the second such read on, a read transaction is held
   * until the tick ends (process.nextTick). Replies of a chunk leave only at its end, so a
   * write committed inside the same tick (pump() may commit synchronously) is not yet
   * acknowledged to anyone: the reads are concurrent with it and may see the state before
   * it. A session's read behind its own pending write waits for that commit (Registry.inOrder).
   */
  private inlineSnapshot(): void {
    if (this.inlineTx) return;
    if (++this.inlineTickReads === 1) {
      process.nextTick(this.endInlineTick);
      return;
    }
    (this.inlineBegin ??= this.inlineDb.prepare('BEGIN')).run();
    this.inlineTx = true;
  }

  private readonly endInlineTick = (): void => {
    this.inlineTickReads = 0;
    if (!this.inlineTx) return;
    this.inlineTx = false;
    if (this.inlineDb.open && this.inlineDb.inTransaction) (this.inlineCommit ??= this.inlineDb.prepare('COMMIT')).run();
  };

  /**
   * A read on the main thread. Returns null when it must move to a worker (the result is
   * larger than a page, and a cursor must not pin the main-thread connection).
   */
  private readInline(s: Session, sql: string, bound: BoundParams, o: ExecOptions, info: StmtInfo | null): ExecResult | null {
    this.inlineSnapshot();
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
      // First page by rows and bytes (page_bytes was ignored here), the rest behind a cursor.
      const first = readPage(rows[Symbol.iterator](), o.pageRows, o.pageBytes).rows.length;
      if (rows.length > first) {
        const it = this.bufferedCursor(rows.splice(first));
        cursor = this.cursors.add({ kind: 'direct', session: s.id, it, lastUsed: Date.now() });
        s.cursors.add(cursor);
      }
    } else if (info !== null && info.inline === INLINE_YES && info.maxRows <= SMALL_RESULT && o.pageRows >= SMALL_RESULT) {
      // Known-small results: all() is cheaper than stepping an iterator.
      rows = stmt.all(...args) as unknown[][];
      if (rows.length > SMALL_RESULT) info.maxRows = rows.length;
      // The result outgrew what was learnt (the table grew): it used to be returned whole,
      // ignoring page_rows. Re-run it on a worker, which pages it (re-running a read is harmless).
      if (rows.length > o.pageRows) return null;
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
    const rep = await pool.send(slot, { t: 'query', sql, params: bound, pageRows: o.pageRows, pageBytes: o.pageBytes, types: o.decltypes });
    if (rep.error) throw new RpcError(rep.error.kind as never, rep.error.message, rep.error.data);
    this.workerReads++;
    if (info !== null && info.inline !== INLINE_YES) {
      const fast = rep.cursor === 0 && (rep.micros ?? Infinity) <= this.o.inlineReadMicros;
      if (info.inline === INLINE_UNKNOWN) {
        if (fast) {
          info.inline = INLINE_YES;
          info.maxRows = rep.count ?? 0;
        } else if (++info.workerSamples >= 3) info.inline = INLINE_NO;
      } else if (!fast) {
        info.fastStreak = 0;
      } else if (++info.fastStreak >= 16) {
        // Perf fix (bench/README.md): the inline/worker verdict is taken on wall-clock time, so
        // on a busy machine one preemption or GC pause (or a cold first worker run) used to move
        // a point query to the workers for good, costing ~150 us per read. A statement that the
        // worker keeps finding fast and single-page comes back to the main thread.
        info.inline = INLINE_YES;
        info.slowStreak = 0;
        info.fastStreak = 0;
        info.maxRows = Math.max(info.maxRows, rep.count ?? 0);
      }
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

  // ---- the writer ----------------------------------------------------------------------
  //
  // The writer keeps one "outer" transaction (BEGIN IMMEDIATE) open while there is work.
  // Autocommit units run in it, each inside SAVEPOINT sqlite_rpc_unit. A session's
  // transaction is SAVEPOINT sqlite_rpc_tx inside it: COMMIT releases the savepoint and the
  // reply waits (an "ack") for the outer COMMIT; ROLLBACK rolls back to the savepoint.
  // The outer COMMIT runs when the writer is free at the end of an event-loop turn, so
  // every unit and session transaction finished in the meantime shares one fsync. A
  // session waiting to begin is chained into the open outer transaction only while the
  // oldest ack is younger than --commit-delay-ms; otherwise the outer commits first.
  // Statements that must run outside any transaction (scripts, PRAGMA, VACUUM, ATTACH)
  // take the writer in "direct" mode after the outer commits; a script that leaves a
  // transaction open gives the session a "real" (plain BEGIN/COMMIT) transaction.

  private touch(s: Session): void {
    s.lastActivity = Date.now();
  }

  /** Keeps session and engine state in step with SQLite after a statement on the writer. */
  private afterStatement(s: Session): void {
    const inTx = this.writer.db.inTransaction;
    if (this.owner !== s) return;
    switch (this.ownerMode) {
      case 'savepoint':
        // A statement with ON CONFLICT ROLLBACK or RAISE(ROLLBACK) ended the outer transaction.
        if (!inTx) this.outerLost('a statement used ON CONFLICT ROLLBACK or RAISE(ROLLBACK)');
        break;
      case 'real':
        if (!inTx) this.releaseOwner(s);
        break;
      case 'direct':
        if (inTx) {
          this.ownerMode = 'real';
          s.inTx = true;
        }
        break;
    }
  }

  private onWriter(s: Session, sql: string, bound: BoundParams, o: ExecOptions): ExecResult {
    this.touch(s);
    let r;
    try {
      r = this.writer.run(sql, bound, o);
    } finally {
      this.afterStatement(s);
    }
    return execResult(r, s, this.cursors, o);
  }

  /** Run fn holding the writer outside any transaction (PRAGMA, VACUUM, ATTACH, scripts). */
  private direct<T>(s: Session, fn: () => T): T | Promise<T> {
    const run = (): T => {
      try {
        return fn();
      } finally {
        if (this.owner === s && this.ownerMode === 'direct') this.releaseOwner(s);
      }
    };
    if (this.owner === s) return run(); // already holding it (inside a transaction)
    return this.acquire(s, 'direct').then(run);
  }

  private txStatement(s: Session, sql: string, kind: StatementKind): ExecResult | Promise<ExecResult> {
    const o: ExecOptions = { pageRows: 1, pageBytes: 1, decltypes: false, begin: null };
    if (s.readonly) {
      // A read-only session never touches the writer; BEGIN/COMMIT only track the flag.
      if (kind === 'begin') s.inTx = true;
      else if (kind === 'commit' || kind === 'rollback') s.inTx = false;
      return this.emptyResult(s);
    }
    if (this.owner === s && this.ownerMode === 'real') return this.onWriter(s, sql, [], o);
    if (this.owner === s && s.inTx) {
      switch (kind) {
        case 'begin':
          throw sqliteError('SQLITE_ERROR', 'cannot start a transaction within a transaction');
        case 'commit': {
          const c = this.commit(s);
          return c instanceof Promise ? c.then(() => this.emptyResult(s)) : this.emptyResult(s);
        }
        case 'rollback':
          this.rollback(s);
          return this.emptyResult(s);
        case 'release': {
          const r = this.onWriter(s, sql, [], o);
          // Releasing the savepoint that opened the transaction commits it, as in SQLite.
          if (s.userSavepoint !== null && savepointName(sql) === s.userSavepoint) {
            const c = this.commit(s);
            return c instanceof Promise ? c.then(() => this.emptyResult(s)) : this.emptyResult(s);
          }
          return r;
        }
        default:
          return this.onWriter(s, sql, [], o);
      }
    }
    switch (kind) {
      case 'begin':
        return this.acquire(s, 'tx').then(() => this.emptyResult(s));
      case 'commit':
        throw sqliteError('SQLITE_ERROR', 'cannot commit - no transaction is active');
      case 'rollback':
        throw sqliteError('SQLITE_ERROR', 'cannot rollback - no transaction is active');
      case 'savepoint':
        return this.acquire(s, 'tx').then(() => {
          s.userSavepoint = savepointName(sql);
          return this.onWriter(s, sql, [], o);
        });
      default:
        throw sqliteError('SQLITE_ERROR', `no such savepoint: ${savepointName(sql)}`);
    }
  }

  begin(s: Session, _mode: BeginMode): Promise<void> | void {
    if (s.readonly) {
      s.inTx = true;
      return;
    }
    if (s.inTx) throw sqliteError('SQLITE_ERROR', 'cannot start a transaction within a transaction');
    return this.acquire(s, 'tx');
  }

  /** Commit the session's transaction; resolves once it is durable. No-op without one. */
  commit(s: Session): Promise<void> | void {
    if (!s.inTx) return;
    if (s.readonly) {
      s.inTx = false;
      return;
    }
    this.touch(s);
    this.writer.drain();
    if (this.ownerMode === 'real') {
      try {
        this.sql.commit.run();
      } finally {
        this.afterStatement(s);
      }
      return;
    }
    this.sql.txRelease.run();
    this.releaseOwner(s);
    return new Promise<void>((resolve, reject) => {
      this.acks.push({ since: Date.now(), unit: null, settle: (e) => (e ? reject(e) : resolve()) });
    });
  }

  rollback(s: Session): void {
    if (!s.inTx) return;
    if (s.readonly) {
      s.inTx = false;
      return;
    }
    this.writer.drain();
    try {
      if (this.ownerMode === 'real') {
        if (this.writer.db.inTransaction) this.sql.rollback.run();
      } else if (this.writer.db.inTransaction) {
        this.sql.txRollbackTo.run();
        this.sql.txRelease.run();
      }
    } finally {
      this.releaseOwner(s);
    }
  }

  /** Wait for the writer: 'tx' begins a session transaction, 'direct' holds it outside one. */
  private acquire(s: Session, kind: 'tx' | 'direct'): Promise<void> {
    if (this.closed) return Promise.reject(new RpcError('ShuttingDown', 'the database is closing'));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { session: s, kind, resolve, reject };
      this.waiters.push(w);
      w.timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(locked());
        }
      }, s.timeoutMs);
      this.pump();
    });
  }

  private releaseOwner(s: Session): void {
    if (this.owner !== s) return;
    this.owner = null;
    this.ownerMode = null;
    s.inTx = false;
    s.userSavepoint = null;
    this.writer.drain();
    this.schedulePump();
  }

  /** Roll back a transaction whose session went idle or away, and free the writer. */
  abortTransaction(s: Session, reason: string): void {
    if (this.owner !== s) return;
    try {
      this.writer.drain();
      if (this.writer.db.inTransaction) {
        if (this.ownerMode === 'savepoint') {
          this.sql.txRollbackTo.run();
          this.sql.txRelease.run();
        } else if (this.ownerMode === 'real') {
          this.sql.rollback.run();
        }
      }
    } catch (e) {
      this.log('rollback_failed', { path: this.path, session: s.id, error: String(e) });
    }
    if (s.inTx) {
      s.abortedReason = reason;
      this.log('transaction_aborted', { path: this.path, session: s.id, reason });
    }
    this.releaseOwner(s);
  }

  /** The session whose transaction has been idle longer than the limit, if any. */
  idleOwner(now: number): Session | null {
    const s = this.owner;
    if (s !== null && s.inTx && now - s.lastActivity > this.o.idleTxMs) return s;
    return null;
  }

  // ---- scheduling ----------------------------------------------------------------------

  private enqueue(s: Session, work: UnitWork): Promise<unknown> {
    if (this.closed) return Promise.reject(new RpcError('ShuttingDown', 'the database is closing'));
    return new Promise((resolve, reject) => {
      const u: Unit = { session: s, work, deadline: Date.now() + s.timeoutMs, resolve, reject };
      this.queue.push(u);
      if (this.owner !== null || this.retryTimer !== null) this.armExpiry(u);
      this.pump();
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

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Open the outer transaction if needed; false (and a retry scheduled) when another process holds the lock. */
  private ensureOuter(): boolean {
    if (this.outer) return true;
    if (this.retryTimer !== null) return false;
    try {
      this.sql.beginImmediate.run();
    } catch (e) {
      if (!isBusy(e)) throw e;
      this.scheduleRetry();
      return false;
    }
    this.outer = true;
    this.retryDelay = 1;
    return true;
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
      this.pump();
    }, delay);
  }

  /**
   * Does whatever work the writer can do now: runs queued autocommit units, hands the
   * writer to the next waiting session, and arranges the outer COMMIT. Synchronous except
   * for the COMMIT, which waits for the end of the turn so that more work can join it.
   */
  private pump(): void {
    if (this.closed && this.owner === null && this.queue.length === 0 && this.waiters.length === 0) {
      this.commitOuter();
      return;
    }
    try {
      while (this.owner === null) {
        if (this.queue.length > 0) {
          if (!this.ensureOuter()) return;
          this.runUnits();
          continue;
        }
        if (this.waiters.length === 0) break;
        const w = this.waiters[0];
        const chain = this.acks.length === 0 || (Date.now() - this.acks[0].since < this.o.commitDelayMs && this.acks.length < this.o.maxGroupUnits);
        if (w.kind === 'direct' || this.o.realTransactions || !chain) {
          if (this.outer) {
            this.commitOuter();
            continue;
          }
        }
        if (w.kind === 'direct') {
          this.grant(w, 'direct');
        } else if (this.o.realTransactions) {
          if (this.retryTimer !== null) return;
          try {
            this.sql.beginImmediate.run();
          } catch (e) {
            if (!isBusy(e)) throw e;
            this.scheduleRetry();
            return;
          }
          this.grant(w, 'real');
        } else {
          if (!this.ensureOuter()) return;
          this.sql.txSavepoint.run();
          this.grant(w, 'savepoint');
        }
        return;
      }
    } catch (e) {
      // An unexpected failure of BEGIN/SAVEPOINT/COMMIT: fail what was waiting, keep serving.
      const err = toRpcError(e);
      this.log('writer_error', { path: this.path, error: err.message }, );
      if (this.outer && !this.writer.db.inTransaction) this.outerLost(err.message);
      const w = this.waiters.shift();
      if (w) {
        clearTimeout(w.timer);
        w.reject(err);
      }
      if (this.waiters.length > 0 || this.queue.length > 0) this.schedulePump();
      return;
    }
    if (this.owner === null && this.outer && !this.commitScheduled) {
      this.commitScheduled = true;
      setImmediate(() => {
        this.commitScheduled = false;
        if (this.owner === null) this.commitOuter();
        if (this.queue.length > 0 || this.waiters.length > 0) this.pump();
      });
    }
  }

  private grant(w: Waiter, mode: 'savepoint' | 'real' | 'direct'): void {
    this.waiters.shift();
    clearTimeout(w.timer);
    this.owner = w.session;
    this.ownerMode = mode;
    w.session.inTx = mode !== 'direct';
    this.touch(w.session);
    w.resolve();
  }

  /** The durable COMMIT of the outer transaction; answers every ack. */
  private commitOuter(): void {
    if (!this.outer) return;
    const acks = this.acks;
    this.acks = [];
    this.outer = false;
    try {
      this.sql.commit.run();
    } catch (e) {
      if (this.writer.db.inTransaction) this.sql.rollback.run();
      const err = toRpcError(e);
      for (const a of acks) a.settle(err);
      return;
    }
    this.groupCommits++;
    this.groupUnits += acks.length;
    if (acks.length > this.groupMax) this.groupMax = acks.length;
    for (const a of acks) a.settle(null);
  }

  /** The outer transaction was rolled back under us: re-run its units, fail its session commits. */
  private outerLost(why: string): void {
    this.outer = false;
    const acks = this.acks;
    this.acks = [];
    const rerun: Unit[] = [];
    for (const a of acks) {
      if (a.unit) rerun.push(a.unit);
      else a.settle(new RpcError('TransactionAborted', `the commit did not take: ${why} in a transaction committed together with this one; nothing of it was saved, retry it`));
    }
    this.queue.unshift(...rerun);
    if (this.owner !== null) {
      const s = this.owner;
      this.owner = null;
      this.ownerMode = null;
      s.inTx = false;
      s.userSavepoint = null;
    }
    this.schedulePump();
  }

  private applyUnit(work: UnitWork): unknown {
    switch (work.t) {
      case 'exec': {
        const r = this.writer.run(work.sql, work.bound, work.opts);
        // A write never leaves an iterator open here: RETURNING runs to completion in run().
        const res: ExecResult = { columns: r.names, rows: new SqlRows(r.rows), cursor: null, changes: r.changes, lastrowid: r.lastrowid, total_changes: r.total_changes, in_transaction: false };
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
      return { changes: r.changes, lastrowid: r.lastrowid, total_changes: r.total_changes };
    });
  }

  /** Queued autocommit units, each in its own savepoint inside the open outer transaction. */
  private runUnits(): void {
    const units = this.queue.splice(0, this.o.maxGroupUnits);
    for (let i = 0; i < units.length; i++) {
      const u = units[i];
      this.sql.unitSavepoint.run();
      try {
        u.result = this.applyUnit(u.work);
        this.sql.unitRelease.run();
      } catch (e) {
        if (this.writer.db.inTransaction) {
          this.sql.unitRollbackTo.run();
          this.sql.unitRelease.run();
          this.settle(u, toRpcError(e)); // a failure needs no fsync: answer now
          continue;
        }
        // The unit rolled back the whole outer transaction: nothing in it was acknowledged.
        this.settle(u, toRpcError(e));
        this.queue.unshift(...units.slice(i + 1));
        this.outerLost('a statement used ON CONFLICT ROLLBACK or RAISE(ROLLBACK)');
        return;
      }
      if (u.timer) clearTimeout(u.timer);
      this.acks.push({ since: Date.now(), unit: u, settle: (err) => this.settle(u, err) });
    }
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

  /** Since when the database has had no session (null while it has one). */
  get idleSince(): number | null {
    return this.sessions.size === 0 && this.owner === null && this.queue.length === 0 && !this.outer ? this.lastSessionAt : null;
  }
  private lastSessionAt = Date.now();

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
    this.lastSessionAt = Date.now();
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
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new RpcError('ShuttingDown', 'the server is shutting down'));
    }
    // Accepted autocommit writes get one last chance (no waiting for another process's lock).
    try {
      while (this.queue.length > 0) {
        if (!this.outer) {
          this.sql.beginImmediate.run();
          this.outer = true;
        }
        this.runUnits();
      }
    } catch (e) {
      this.log('shutdown_write_failed', { path: this.path, error: String(e) });
    }
    this.commitOuter();
    for (const u of this.queue.splice(0)) this.settle(u, new RpcError('ShuttingDown', 'the server shut down before this write could be committed; it was not applied'));
    await this.pool?.close();
    this.inlineDb.close();
    this.writer.drain();
    this.writer.db.close();
  }

}
