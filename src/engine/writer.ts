// The writer of one database file: its queue of autocommit units, the sessions waiting to
// own it, the outer transaction and its COMMIT, the acks that wait for that COMMIT to be
// durable (the flusher hand-off, flusher.ts), and the backoff while another process holds
// the write lock. What a statement does on the writer is the engine's (database.ts:
// applyUnit); the session-facing BEGIN/COMMIT/ROLLBACK are in transactions.ts.
//
// The writer keeps one "outer" transaction (BEGIN IMMEDIATE) open while there is work.
// Autocommit units run in it, each inside SAVEPOINT sqlite_rpc_unit. A session's
// transaction is SAVEPOINT sqlite_rpc_tx inside it: COMMIT releases the savepoint and the
// reply waits (an "ack") for the outer COMMIT; ROLLBACK rolls back to the savepoint.
// The outer COMMIT runs when the writer is free at the end of an event-loop turn, so
// every unit finished in the meantime shares it. Before the writer goes to the next
// session waiting to begin, the outer commits: at synchronous FULL in WAL that COMMIT
// does not fsync (writerSync), the acks go to the flusher, and the next transaction runs
// while their fsync is in flight (early lock release); each fsync covers every commit
// made during the previous one. No session waits for another session's client, and
// transactions of different sessions share fsyncs.
// Statements that must run outside any transaction (scripts, PRAGMA, VACUUM, ATTACH)
// take the writer in "solo" mode after the outer commits; a script that leaves a
// transaction open gives the session a "real" (plain BEGIN/COMMIT) transaction.
import type { Statement } from 'better-sqlite3';
import type { MainThreadConnection } from './mainThreadConnection';
import { Flusher } from './flusher';
import { Savepoint } from './savepoint';
import type { SynchronousMode } from './openConnection';
import type { BoundParams } from './values';
import type { Session } from './session';
import type { ExecOptions, LogFn } from './types';
import { RpcError, sqliteError, toRpcError } from '../protocol/errors';
import type { AuditLog } from '../ops/audit';
import type { DbMetrics } from '../ops/metrics';

export type UnitWork =
  | { t: 'exec'; sql: string; bound: BoundParams; opts: ExecOptions }
  | { t: 'many'; sql: string; boundList: BoundParams[] }
  | { t: 'batch'; items: Array<[string, BoundParams]> };

interface Unit {
  session: Session;
  work: UnitWork;
  deadline: number;
  /** performance.now() when queued: the writer wait. */
  queuedAt: number;
  resolve: (r: unknown) => void;
  reject: (e: unknown) => void;
  timer?: NodeJS.Timeout;
  result?: unknown;
}

interface Waiter {
  session: Session;
  kind: 'tx' | 'solo';
  since: number;
  resolve: () => void;
  reject: (e: unknown) => void;
  timer?: NodeJS.Timeout;
}

/** A reply that may only be sent once the outer transaction is durably committed. */
interface Ack {
  /** The autocommit unit, which can be re-run if the outer transaction is lost. */
  unit: Unit | null;
  settle: (err: RpcError | null) => void;
}

export function locked(): RpcError {
  return sqliteError('SQLITE_BUSY', 'database is locked');
}

export function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

export function touch(s: Session): void {
  s.lastActivity = Date.now();
}

export interface WriterOptions {
  synchronous: SynchronousMode;
  readOnly: boolean;
  /** Autocommit units that may share one outer COMMIT, at most. */
  maxGroupUnits: number;
  /** Give every session transaction its own BEGIN/COMMIT (set with --foreign-keys: deferred checks run at COMMIT). */
  realTransactions: boolean;
}

/** What the writer asks of the engine that owns it. */
export interface WriterHost {
  /** Before a write: a new file goes to WAL (false: not yet, a reader holds it; retried). */
  walForWrite(): boolean;
  /** The writer may write: query_only and the like are off for the server's own work. */
  writerMayWrite(): void;
  /** The session's settings on the writer (settings.ts). */
  useSettings(s: Session): void;
  /** One autocommit unit, inside its savepoint: a throw rolls back just this unit. */
  applyUnit(s: Session, work: UnitWork): unknown;
  auditUndone(from: number, reason: string, session: number | null): void;
  auditFailure(s: Session, sql: string, err: RpcError): void;
  /** The file is in WAL, and stays there: the flusher can make commits durable. */
  walKept(): boolean;
  sessionCount(): number;
  /** After a COMMIT: how long to leave the write lock free before the next transaction (ms; 0: none). */
  pauseAfterCommit(): number;
}

export class Writer {
  readonly sql: Record<'beginImmediate' | 'commit' | 'rollback', Statement>;
  /** A session's transaction, and an autocommit unit, on the writer (savepoint.ts). */
  readonly txSp: Savepoint;
  readonly unitSp: Savepoint;
  /** Makes commits durable off the event loop (--synchronous full or extra); null: SQLite's COMMIT does, or nothing does (off). */
  readonly flusher: Flusher | null;
  /** The writer runs at synchronous=NORMAL now and its commits go to the flusher (writerSync). */
  lazy = false;
  /** A session ran PRAGMA synchronous on the shared writer (outside a transaction: SQLite refuses it inside one); undone at release. */
  syncDirty = false;

  owner: Session | null = null;
  ownerMode: 'savepoint' | 'real' | 'solo' | null = null;
  readonly waiters: Waiter[] = [];
  queue: Unit[] = [];
  /** Our BEGIN IMMEDIATE is open on the writer. */
  outer = false;
  acks: Ack[] = [];
  private pumpScheduled = false;
  private commitScheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelay = 1;
  closed = false;
  /** Audit records written since the writer's outer transaction began (undone if it is lost). */
  private auditMark = 0;

  groupCommits = 0;
  groupUnits = 0;
  groupMax = 0;
  busyRetries = 0;
  /** When the writer last found another process holding the write lock. */
  private lastBusyAt = 0;
  commitsSinceCheckpoint = 0;
  lastCommitAt = 0;

  constructor(
    readonly conn: MainThreadConnection,
    private readonly o: WriterOptions,
    private readonly host: WriterHost,
    private readonly audit: AuditLog | null,
    private readonly m: DbMetrics,
    private readonly path: string,
    private readonly log: LogFn,
  ) {
    const p = (s: string) => conn.db.prepare(s);
    // Savepoint names starting with sqlite_rpc_ are reserved (PROTOCOL.md).
    this.sql = {
      beginImmediate: p('BEGIN IMMEDIATE'),
      commit: p('COMMIT'),
      rollback: p('ROLLBACK'),
    };
    this.txSp = Savepoint.prepared(conn.db, 'sqlite_rpc_tx');
    this.unitSp = Savepoint.prepared(conn.db, 'sqlite_rpc_unit');
    this.flusher = !o.readOnly && (o.synchronous === 'full' || o.synchronous === 'extra') ? new Flusher(path, log) : null;
    this.writerSync(true);
  }

  /**
   * FULL (or EXTRA) configured and the file in WAL: the writer commits at synchronous=NORMAL
   * and the flusher makes its commits durable (lazy). Otherwise the writer syncs at COMMIT
   * itself, at the configured level: outside WAL (rollback mode at NORMAL is not durable,
   * whoever fsyncs after), and while a session holds it outside any transaction (solo
   * mode: PRAGMA, VACUUM, ATTACH, scripts; rare, and their replies are built synchronously).
   * A session's PRAGMA synchronous lasts for its own statements (solo mode) and never
   * reaches another session's COMMIT: the writer is shared, and at OFF its checkpoints would
   * not sync the file before the WAL is reused (releaseOwner sets the level again).
   */
  writerSync(lazy: boolean, force = false): void {
    const want = lazy && this.flusher !== null && this.host.walKept();
    if (want === this.lazy && !force) return;
    this.syncDirty = false;
    this.conn.drain();
    // exec, not a prepared statement: SQLite applies PRAGMA synchronous when it compiles it.
    this.conn.db.exec(`PRAGMA synchronous = ${want ? 'NORMAL' : this.o.synchronous.toUpperCase()}`);
    this.lazy = want;
  }

  /** Resolves once the commit the writer just made (lazy) is durable. */
  flushed(): Promise<void> {
    return new Promise((resolve, reject) => this.flusher!.afterCommit([{ settle: (e) => (e ? reject(e) : resolve()) }]));
  }

  /** Keeps session and engine state in step with SQLite after a statement on the writer. */
  afterStatement(s: Session): void {
    const inTx = this.conn.db.inTransaction;
    if (this.owner !== s) return;
    switch (this.ownerMode) {
      case 'savepoint':
        // A statement with ON CONFLICT ROLLBACK or RAISE(ROLLBACK) ended the outer transaction.
        if (!inTx) this.outerLost('a statement used ON CONFLICT ROLLBACK or RAISE(ROLLBACK)');
        break;
      case 'real':
        if (!inTx) this.releaseOwner(s);
        break;
      case 'solo':
        if (inTx) {
          this.ownerMode = 'real';
          s.inTx = true;
        }
        break;
    }
  }

  /** Wait for the writer: 'tx' begins a session transaction, 'solo' holds it outside one. */
  acquire(s: Session, kind: 'tx' | 'solo'): Promise<void> {
    if (this.closed) return Promise.reject(new RpcError('ShuttingDown', 'the database is closing'));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { session: s, kind, since: performance.now(), resolve, reject };
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

  releaseOwner(s: Session): void {
    if (this.owner !== s) return;
    s.audited = 0;
    this.owner = null;
    this.ownerMode = null;
    s.inTx = false;
    s.userSavepoint = null;
    this.conn.drain();
    this.conn.transactionEnded(); // committed, or rolled back (a rolled-back ALTER TABLE gives the old columns back)
    if (!this.conn.db.inTransaction) this.writerSync(true, this.syncDirty);
    this.schedulePump();
  }

  enqueue(s: Session, work: UnitWork): Promise<unknown> {
    if (this.closed) return Promise.reject(new RpcError('ShuttingDown', 'the database is closing'));
    return new Promise((resolve, reject) => {
      const u: Unit = { session: s, work, deadline: Date.now() + s.timeoutMs, queuedAt: performance.now(), resolve, reject };
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

  schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /**
   * While another process has wanted the write lock lately, every 8th COMMIT leaves it a
   * moment (1-2 ms) to take the lock before ours is taken again; waiting processes poll
   * every 1-8 ms (scheduleRetry). SQLite's file locks have no queue: a busy server
   * re-locking at once could starve another past its timeout (4 processes on one file met
   * "database is locked" after 5 s, once in a 60 s run). Yielding after every COMMIT
   * halved their combined throughput; every 8th costs much less (bench/RELIABILITY.md).
   */
  private yieldUntil = 0;
  private commitsSinceYield = 0;
  private yieldTimer: NodeJS.Timeout | null = null;

  private yielding(): boolean {
    const wait = this.yieldUntil - performance.now();
    if (wait <= 0) return false;
    this.yieldTimer ??= setTimeout(() => {
      this.yieldTimer = null;
      this.pump();
    }, wait);
    return true;
  }

  /** BEGIN IMMEDIATE on the writer; false while backing off, or (a retry scheduled) when another process holds the lock. */
  private beginImmediate(): boolean {
    if (this.retryTimer !== null || this.yielding()) return false;
    if (!this.host.walForWrite()) return false;
    this.host.writerMayWrite();
    try {
      this.sql.beginImmediate.run();
    } catch (e) {
      if (!isBusy(e)) throw e;
      this.scheduleRetry();
      return false;
    }
    return true;
  }

  /** Open the outer transaction if needed; false (and a retry scheduled) when another process holds the lock. */
  private ensureOuter(): boolean {
    if (this.outer) return true;
    if (!this.beginImmediate()) return false;
    this.outer = true;
    this.retryDelay = 1;
    this.auditMark = this.audit?.records ?? 0;
    this.checkSchemaVersion();
    return true;
  }

  /** The schema cookie as the writer last read it (-1: not yet): another process's DDL moves it. */
  private schemaVersion = -1;
  private schemaVersionStmt: Statement | null = null;

  /**
   * Another process changed the schema (ALTER TABLE ... RENAME COLUMN): cached result shapes
   * are read again (reads.ts knownShape). A change of the number of columns is seen in the
   * rows themselves; a rename is seen here, when the writer begins (cheap inside its
   * transaction) and between writes (pollSchema).
   */
  private checkSchemaVersion(): void {
    try {
      const v = Number((this.schemaVersionStmt ??= this.conn.db.prepare('PRAGMA schema_version').pluck()).get());
      if (v !== this.schemaVersion) {
        if (this.schemaVersion !== -1) this.conn.schemaChanged();
        this.schemaVersion = v;
      }
    } catch {
      // busy or closing: the next look will do
    }
  }

  /** Looks for another process's schema change while the writer is idle (Registry.sweep, every 250 ms at most). */
  pollSchema(): void {
    if (this.closed || this.owner !== null || this.outer || this.queue.length > 0 || this.host.sessionCount() === 0) return;
    this.checkSchemaVersion();
  }

  scheduleRetry(): void {
    if (this.retryTimer !== null) return;
    this.busyRetries++;
    this.lastBusyAt = Date.now();
    for (const u of this.queue) this.armExpiry(u);
    // Exponential backoff with jitter, capped: another process holds the write lock.
    const delay = this.retryDelay * (0.5 + Math.random());
    this.retryDelay = Math.min(this.retryDelay * 2, 8);
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
  pump(): void {
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
        // A session's transaction starts in an outer transaction of its own: the commits
        // before it are made (not waited for: the flusher makes them durable), so it never
        // holds up their replies.
        if (this.outer && (w.kind === 'solo' || this.o.realTransactions || this.acks.length > 0)) {
          this.commitOuter();
          continue;
        }
        if (w.kind === 'solo') {
          this.grant(w, 'solo');
        } else if (this.o.realTransactions) {
          if (!this.beginImmediate()) return;
          this.checkSchemaVersion();
          this.grant(w, 'real');
        } else {
          if (!this.ensureOuter()) return;
          this.txSp.open();
          this.grant(w, 'savepoint');
        }
        return;
      }
    } catch (e) {
      // An unexpected failure of BEGIN/SAVEPOINT/COMMIT: fail what was waiting, keep serving.
      const err = toRpcError(e);
      this.log('writer_error', { path: this.path, error: err.message }, );
      if (this.outer && !this.conn.db.inTransaction) this.outerLost(err.message);
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

  private grant(w: Waiter, mode: 'savepoint' | 'real' | 'solo'): void {
    this.waiters.shift();
    clearTimeout(w.timer);
    if (mode === 'solo') this.writerSync(false);
    this.m.writerWait((performance.now() - w.since) / 1000);
    this.owner = w.session;
    this.ownerMode = mode;
    w.session.inTx = mode !== 'solo';
    touch(w.session);
    // The holder's settings: the server's own work (a closed session's TEMP objects dropped,
    // a restore) runs with the defaults, never with a leftover query_only.
    this.host.useSettings(w.session);
    w.resolve();
  }

  /** The COMMIT of the outer transaction; answers every ack once it is durable (at once, or through the flusher). */
  commitOuter(): void {
    if (!this.outer) return;
    const acks = this.acks;
    this.acks = [];
    this.outer = false;
    const t0 = performance.now();
    try {
      // The audit records of what this COMMIT makes durable are on disk first: before its
      // WAL frames are even written (the kernel may write them back before any fsync).
      this.audit?.sync();
      this.sql.commit.run();
    } catch (e) {
      if (this.conn.db.inTransaction) this.sql.rollback.run();
      this.conn.transactionEnded();
      const err = toRpcError(e);
      this.host.auditUndone(this.auditMark, `the COMMIT failed: ${err.message}`, null);
      for (const a of acks) a.settle(err);
      return;
    }
    this.conn.transactionEnded();
    this.m.groupCommit(acks.length, (performance.now() - t0) / 1000);
    const pause = this.host.pauseAfterCommit();
    if (pause > 0) {
      this.yieldUntil = performance.now() + pause;
    } else if (Date.now() - this.lastBusyAt < 1000 && ++this.commitsSinceYield >= 8) {
      this.commitsSinceYield = 0;
      this.yieldUntil = performance.now() + 1 + Math.random();
    }
    this.commitsSinceCheckpoint++;
    this.lastCommitAt = Date.now();
    this.groupCommits++;
    this.groupUnits += acks.length;
    if (acks.length > this.groupMax) this.groupMax = acks.length;
    if (this.lazy) this.flusher!.afterCommit(acks);
    else for (const a of acks) a.settle(null);
  }

  /** The outer transaction was rolled back under us: re-run its units, fail its session commits. */
  outerLost(why: string): void {
    this.host.auditUndone(this.auditMark, `the group transaction was rolled back: ${why}; its writes are re-run and recorded again`, null);
    this.outer = false;
    this.conn.transactionEnded();
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

  /** Queued autocommit units, each in its own savepoint inside the open outer transaction. */
  runUnits(): void {
    const units = this.queue.splice(0, this.o.maxGroupUnits);
    const now = performance.now();
    for (let i = 0; i < units.length; i++) {
      const u = units[i];
      this.m.writerWait((now - u.queuedAt) / 1000);
      const mark = this.audit?.records ?? 0;
      this.unitSp.open();
      try {
        u.result = this.host.applyUnit(u.session, u.work);
        this.unitSp.release();
      } catch (e) {
        // Not withSavepoint: a failing ROLLBACK TO must reach pump() as it is, not settle this unit.
        if (this.unitSp.undo()) {
          this.conn.transactionEnded();
          const err = toRpcError(e);
          this.host.auditUndone(mark, `the ${u.work.t === 'batch' ? 'batch' : 'write'} failed and was rolled back: ${err.message}`, u.session.id);
          if (u.work.t !== 'batch' && err.data.kind !== 'AuditFailed') this.host.auditFailure(u.session, u.work.sql, err);
          this.settle(u, err); // a failure needs no fsync: answer now
          continue;
        }
        // The unit rolled back the whole outer transaction: nothing in it was acknowledged.
        this.settle(u, toRpcError(e));
        this.queue.unshift(...units.slice(i + 1));
        this.outerLost('a statement used ON CONFLICT ROLLBACK or RAISE(ROLLBACK)');
        return;
      }
      if (u.timer) clearTimeout(u.timer);
      this.acks.push({ unit: u, settle: (err) => this.settle(u, err) });
    }
  }

  settle(u: Unit, err: RpcError | null): void {
    if (u.timer) clearTimeout(u.timer);
    if (err) u.reject(err);
    else u.resolve(u.result);
  }

  /** Finish queued writes, roll back the open transaction (abort), fail the waiters; resolves once every commit is durable and answered. */
  async close(abort: (s: Session) => void): Promise<void> {
    this.closed = true;
    if (this.yieldTimer) clearTimeout(this.yieldTimer);
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.owner) abort(this.owner);
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new RpcError('ShuttingDown', 'the server is shutting down'));
    }
    // Accepted autocommit writes get one last chance (no waiting for another process's lock).
    try {
      while (this.queue.length > 0) {
        if (!this.outer) {
          this.host.writerMayWrite();
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
    await this.flusher?.close(); // every commit durable and answered before the file is let go
  }
}
